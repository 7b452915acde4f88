//! `depprobe demo`: local dependencies that fail in every way the incidents did,
//! probed and shown, with nothing to set up.

use depprobe_demo::Demo;
use depprobe_probes::ProbeEnv;

use crate::check::{self, EXIT_CONFIG};
use crate::{setup, table};

/// Runs the demo; returns the exit code.
pub async fn run(once: bool, json: bool, listen: &str, print_config: bool) -> u8 {
    if !once && !print_config {
        announce_page(listen, json);
    }
    let demo = match Demo::start(listen).await {
        Ok(d) => d,
        Err(e) => {
            eprintln!("depprobe demo: cannot start the demo servers: {e}");
            return EXIT_CONFIG;
        }
    };
    if print_config {
        table::out(&demo.config_yaml);
        return 0;
    }
    let env = match ProbeEnv::system() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("depprobe demo: {e}");
            return EXIT_CONFIG;
        }
    };
    let (cfg, probes) = match setup::load_and_build(&demo.config_path, &env) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("depprobe demo: {e}");
            return EXIT_CONFIG;
        }
    };
    let outcomes = check::run_all(&probes, cfg.agent.concurrency).await;
    if json {
        table::out(&format!("{}\n", check::to_json(&outcomes)));
    } else {
        table::out(&format!(
            "depprobe demo: {} local dependencies, each broken the way a real one was.\n\n",
            demo.cases.len()
        ));
        table::out(&table::render(&outcomes));
        table::out(&format!("\n{}\n", check::summary(&outcomes)));
        table::out(&not_in_the_demo(&cfg));
    }
    if once {
        return 0;
    }
    table::out(&format!(
        "\nServing the status page, /metrics and /status on http://{listen}/; the probes keep running. Ctrl-C to stop.\n"
    ));
    crate::agent::run_config(cfg, probes, env, None, None).await
}

/// The kinds the demo cannot start a server for, and how to try them.
fn not_in_the_demo(cfg: &depprobe_config::Config) -> String {
    let shown: Vec<&str> = cfg.probes.iter().map(|p| p.spec.kind().as_str()).collect();
    let others: Vec<&str> = depprobe_probes::kinds::KINDS
        .iter()
        .map(|k| k.entry.kind.as_str())
        .filter(|k| !shown.contains(k))
        .collect();
    if others.is_empty() {
        return String::new();
    }
    format!(
        "\nNot in the demo (they need a real server): {}. Point a probe's url at yours (README, one section per kind) and run `depprobe check -c your.yaml`.\n",
        others.join(", ")
    )
}

/// The first line the demo prints: where its status page is (on standard error
/// with `--json`, whose standard output is the JSON alone).
fn announce_page(listen: &str, json: bool) {
    let free_port = listen
        .parse::<std::net::SocketAddr>()
        .is_ok_and(|a| a.port() == 0);
    let line = if free_port {
        "depprobe demo: the status page will be on a free port, named in the log line \"serving ... on http://...\"\n".to_owned()
    } else {
        format!("depprobe demo: open http://{listen}/ for the status page\n\n")
    };
    if json {
        eprint!("{line}");
    } else {
        table::out(&line);
    }
}
