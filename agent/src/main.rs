//! The `depprobe` binary.

fn main() -> std::process::ExitCode {
    depprobe_agent::cli::main()
}
