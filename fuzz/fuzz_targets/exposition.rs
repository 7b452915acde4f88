//! Fuzzes the metrics exposition parser (Prometheus text 0.0.4 and OpenMetrics 1.0)
//! with arbitrary bytes: it must never panic, and what it reports must hold
//! together (see `depprobe_fuzz::check_exposition`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| depprobe_fuzz::check_exposition(data));
