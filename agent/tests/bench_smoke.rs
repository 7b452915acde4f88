//! The benchmark's machinery at a tiny size, so that `scripts/bench` keeps working:
//! nginx starts, the floor loop handshakes, the real agent probes and reports its
//! schedule, a real MariaDB and a real Redis serve the `mysql` and `redis` phases,
//! blackbox_exporter answers, and the report holds every figure and ratio.
//! The figures of a debug build on a busy CI machine mean nothing; only their
//! presence and consistency are checked here. `docs/benchmarks.md` holds real ones.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step is a failed test

use std::path::PathBuf;
use std::time::Duration;

use depprobe_bench::{Kind, Options, run};

#[tokio::test(flavor = "current_thread")]
async fn a_tiny_benchmark_measures_every_process_and_kind_and_writes_every_figure() {
    let opts = Options {
        depprobe: PathBuf::from(env!("CARGO_BIN_EXE_depprobe")),
        rate: 20.0,
        targets: 10,
        window: Duration::from_secs(2),
        scale_targets: 40,
        scale_interval: Duration::from_secs(2),
        scale_window: Duration::from_secs(2),
        ports: 2,
        scrape_every: Some(Duration::from_secs(1)),
        otlp: true,
        kinds: Kind::ALL.to_vec(),
        ..Options::default()
    };
    assert!(
        opts.blackbox.is_some(),
        "prometheus-blackbox-exporter is not installed: run scripts/deps"
    );
    let report = run(&opts)
        .await
        .unwrap_or_else(|e| panic!("benchmark: {e}"));

    let floor = report.floor.as_ref().expect("floor measured");
    assert!(floor.handshakes > 0 && floor.failures == 0, "{floor:?}");
    assert_eq!(report.floor_runs_ms.len(), 2, "the floor runs twice");
    assert_eq!(floor.version, "TLSv1_3");
    assert!(!floor.kx_group.is_empty());

    for (name, r) in [
        ("http", &report.depprobe_http),
        ("tls", &report.depprobe_tls),
        ("mysql", &report.depprobe_mysql),
        ("redis", &report.depprobe_redis),
        ("scale", &report.scale),
        ("scale with OTLP", &report.scale_otlp),
    ] {
        let r = r.as_ref().unwrap_or_else(|| panic!("{name} not measured"));
        assert!(r.probes > 0, "{name}: no runs in the window: {r:?}");
        assert_eq!(r.up, r.targets, "{name}: not every target is up: {r:?}");
        assert_eq!(r.failures, 0, "{name}: runs failed: {r:?}");
        assert!(
            r.server_cpu_ms_per_probe > 0.0,
            "{name}: the server's CPU is measured: {r:?}"
        );
        assert!(
            r.cpu_seconds > 0.0 && r.cpu_ms_per_probe > 0.0,
            "{name}: {r:?}"
        );
        assert!(
            r.rss_mib > 0.0 && r.peak_rss_mib >= r.rss_mib,
            "{name}: {r:?}"
        );
        assert!(r.lateness.runs > 0, "{name}: no lateness recorded: {r:?}");
        assert!(
            r.lateness.p50_ms <= r.lateness.p99_ms && r.lateness.p99_ms <= r.lateness.max_ms,
            "{name}: {r:?}"
        );
        // Like with like: the agent negotiates the floor's TLS version and key
        // exchange, with nginx and with the databases.
        assert_eq!(r.kx_group, floor.kx_group, "{name}");
        assert_eq!(r.tls_version, "1.3", "{name}: {r:?}");
        assert!(!r.cipher.is_empty(), "{name}: {r:?}");
    }
    // The kinds ran against the servers they name, which the probes saw.
    let mysql = report.depprobe_mysql.as_ref().expect("mysql measured");
    assert_eq!(mysql.server, "MariaDB");
    // MariaDB's greeting carries the `5.5.5-` prefix old clients expect.
    assert!(mysql.server_version.contains("10.11"), "{mysql:?}");
    let redis = report.depprobe_redis.as_ref().expect("redis measured");
    assert_eq!(redis.server, "Redis");
    assert!(redis.server_version.starts_with('7'), "{redis:?}");
    for r in [&report.depprobe_http, &report.depprobe_tls, &report.scale] {
        assert_eq!(r.as_ref().map(|r| r.server.as_str()), Some("nginx"));
    }

    let scale = report.scale.as_ref().expect("scale measured");
    assert!(scale.scrapes > 0 && scale.metrics_bytes > 0, "{scale:?}");
    assert_eq!(scale.otlp_spans, 0, "no OTLP in the plain scale phase");
    let otlp = report
        .scale_otlp
        .as_ref()
        .expect("scale with OTLP measured");
    // Spans are flushed every 2 s: the first round's, one root per target, are in.
    assert!(
        otlp.otlp_spans >= otlp.targets,
        "the first round's spans reached the receiver: {otlp:?}"
    );

    let bb = report
        .blackbox
        .as_ref()
        .expect("blackbox_exporter measured");
    assert!(bb.probes > 0 && bb.successes == bb.probes, "{bb:?}");
    assert!(bb.cpu_ms_per_probe > 0.0, "{bb:?}");

    let r = &report.ratios;
    for v in [
        r.http_vs_floor,
        r.tls_vs_floor,
        r.http_vs_blackbox,
        r.blackbox_vs_floor,
        r.mysql_vs_floor,
        r.redis_vs_floor,
    ] {
        assert!(v.is_some_and(|v| v > 0.0), "{r:?}");
    }
    // CPU per probe / floor for http, mysql and redis; at scale: steady RSS, peak
    // / steady, /metrics size, p99 lateness (figures, never judged here).
    assert_eq!(report.targets.len(), 7, "{:?}", report.targets);
    assert!(report.binary_bytes > 0, "binary size reported");
    assert!(
        scale.metrics_ms_max > 0.0,
        "render time reported: {scale:?}"
    );

    let table = report.table();
    for row in [
        "floor: rustls handshake loop",
        "depprobe `http`",
        "depprobe `tls`",
        "depprobe `mysql` (10 targets; MariaDB ",
        "depprobe `redis` (10 targets; Redis 7.",
        "blackbox_exporter `http`",
        "Scale: 40 `http` targets",
        "Scale with OTLP export: 40 `http` targets",
        "OTLP receiver: ",
        "Binary: ",
    ] {
        assert!(table.contains(row), "{row} missing from\n{table}");
    }
    let json = serde_json::to_value(&report).expect("report serialises");
    assert!(json["ratios"]["http_vs_floor"].is_f64(), "{json}");
    for kind in ["mysql", "redis"] {
        assert!(
            json["ratios"][format!("{kind}_vs_floor")].is_f64(),
            "{json}"
        );
        let r = &json[format!("depprobe_{kind}")];
        for figure in [
            "probes",
            "cpu_ms_per_probe",
            "server_cpu_ms_per_probe",
            "rss_mib",
        ] {
            assert!(r[figure].is_number(), "{kind}: {figure} missing: {json}");
        }
    }
}
