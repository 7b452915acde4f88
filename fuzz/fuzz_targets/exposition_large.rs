//! Fuzzes the metrics exposition parser with scrapes of up to 4 MiB built from a
//! small input (`depprobe_fuzz::amplify`: a prefix, a unit repeated and numbered,
//! a suffix), so that hostile sizes (tens of thousands of distinct labels on one
//! sample, a million lines) are explored. A parse that is not linear in its input
//! shows as a libFuzzer timeout, which fails the run like a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    depprobe_fuzz::check_exposition(&depprobe_fuzz::amplify(data));
});
