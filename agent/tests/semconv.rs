//! What the agent really exports over OTLP, checked against the OpenTelemetry
//! semantic conventions: our compact table of the registry
//! (`tests/semconv/registry.json`, made by `scripts/semconv-refresh` from
//! open-telemetry/semantic-conventions `model/`) and the metric table of
//! `docs/telemetry.md`.
//!
//! One agent probes a real server of each kind the tests start cheaply (tls,
//! http, metrics, postgres, mysql (MariaDB), redis, mongodb, grpc, otlp,
//! credential) and exports to the tests' OTLP receiver. Then every attribute of
//! every span, event, data point and the resource must be either a semconv attribute of the table, with its type
//! and one of its values, or in the project's namespace (`probe.*`,
//! `depprobe.*`); a name inside a semconv namespace that the table does not hold
//! (`tls.cert.subject`) fails. Every span's name and kind, the required attributes
//! of the semconv span rule it follows, and every metric's name, instrument and
//! unit are checked too. When `DEPPROBE_SEMCONV_MODEL` names a checkout of the
//! registry (or `../shared/semconv/<version>/model` exists), the table is also
//! checked to be what the refresh script makes of it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step is a failed test

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use common::{World, entry, wait_status};
use depprobe_tests::brokers::grpc::{GrpcHealthOptions, GrpcHealthServer};
use depprobe_tests::harness::{jwt, unix_in};
use depprobe_tests::mongo::ReplicaSet;
use depprobe_tests::otlp::{OtlpReceiver, Received};
use depprobe_tests::{
    Cluster, ClusterSpec, HttpServer, MariaDb, MariaDbSpec, RedisServer, RedisSpec, Reply, Validity,
};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value::Value};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use serde_json::Value as Json;

const WAIT: Duration = Duration::from_secs(60);
const REGISTRY: &str = include_str!("../../tests/semconv/registry.json");
const TELEMETRY_DOC: &str = include_str!("../../docs/telemetry.md");
/// A secret in a probed URL's query: it must never reach `url.full`.
const QUERY_SECRET: &str = "q-s3cr3t-4f9a";
const PG_PASSWORD: &str = "pg-pw-semconv-71";
const MARIADB_PASSWORD: &str = "maria-pw-semconv-52";

/// The probes, each against its own server.
const PROBES: &[&str] = &[
    "healthy-api",
    "expired-tls",
    "keyed-api",
    "scrape",
    "orders-db",
    "accounts-db",
    "cache",
    "sessions",
    "payments",
    "collector",
    "token",
];

/// Why an attribute does not conform, or `None`.
fn attribute_problem(registry: &Json, key: &str, value: &Value) -> Option<String> {
    let Some((namespace, _)) = key.split_once('.') else {
        return Some(format!(
            "`{key}` has no namespace (semconv's or probe.* / depprobe.*)"
        ));
    };
    if namespace == "probe" || namespace == "depprobe" {
        return None;
    }
    let Some(def) = registry["attributes"].get(key) else {
        let squats = registry["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == namespace);
        return Some(if squats {
            format!("`{key}` is inside semconv's `{namespace}` namespace but not in the registry")
        } else {
            format!("`{key}` is in `{namespace}`, neither a semconv namespace nor the project's")
        });
    };
    let text = match value {
        Value::StringValue(s) => Some(s.as_str()),
        _ => None,
    };
    let typed = match def["type"].as_str().unwrap() {
        "string" | "enum" => text.is_some(),
        "int" => matches!(value, Value::IntValue(_)),
        "double" => matches!(value, Value::DoubleValue(_)),
        "boolean" => matches!(value, Value::BoolValue(_)),
        other => return Some(format!("`{key}`: type {other} not handled by the test")),
    };
    if !typed {
        return Some(format!(
            "`{key}` should be {} but is {value:?}",
            def["type"]
        ));
    }
    if let (Some(values), Some(v)) = (def.get("values").and_then(Json::as_array), text) {
        let listed = values.iter().any(|x| x == v);
        let custom = match def.get("custom_values") {
            Some(Json::String(s)) => s == "*",
            Some(Json::Array(list)) => list.iter().any(|x| x == v),
            _ => false,
        };
        if !listed && !custom {
            return Some(format!("`{key}`=`{v}` is not a value the registry lists"));
        }
    }
    None
}

fn text(kv: &KeyValue) -> String {
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn get<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a KeyValue> {
    attrs.iter().find(|kv| kv.key == key)
}

/// Every problem of `attrs` (where they were seen: `at`).
fn check_attributes(
    registry: &Json,
    at: &str,
    attrs: &[KeyValue],
    problems: &mut BTreeSet<String>,
) {
    for kv in attrs {
        let Some(value) = kv.value.as_ref().and_then(|v| v.value.as_ref()) else {
            problems.insert(format!("{at}: `{}` has no value", kv.key));
            continue;
        };
        if let Some(p) = attribute_problem(registry, &kv.key, value) {
            problems.insert(format!("{at}: {p}"));
        }
        if [QUERY_SECRET, PG_PASSWORD, MARIADB_PASSWORD]
            .iter()
            .any(|secret| text(kv).contains(secret))
        {
            problems.insert(format!("{at}: `{}` carries a secret", kv.key));
        }
    }
}

/// The semconv span rule a CLIENT span follows, by the attribute that marks it.
fn rule_of<'a>(registry: &'a Json, attrs: &[KeyValue]) -> Option<(&'a str, &'a Json)> {
    registry["spans"]
        .as_object()
        .unwrap()
        .iter()
        .find_map(|(id, rule)| {
            let marker = rule["marker"].as_str().unwrap();
            let hit = match marker.split_once('=') {
                Some((k, v)) => get(attrs, k).is_some_and(|kv| text(kv) == v),
                None => get(attrs, marker).is_some(),
            };
            hit.then_some((id.as_str(), rule))
        })
}

/// The name semconv gives a client span with `attrs` (HTTP: the method; RPC: the
/// full method; database: `{db.operation.name} {db.namespace}`, no namespace for
/// Redis).
fn expected_call_name(attrs: &[KeyValue]) -> Option<String> {
    let t = |k: &str| get(attrs, k).map(text);
    if let Some(m) = t("http.request.method") {
        return Some(if m == "_OTHER" { "HTTP".into() } else { m });
    }
    if let Some(m) = t("rpc.method") {
        return Some(m);
    }
    let op = t("db.operation.name")?;
    let ns = t("db.namespace").filter(|_| t("db.system.name").as_deref() != Some("redis"));
    Some(match ns {
        Some(ns) => format!("{op} {ns}"),
        None => op,
    })
}

/// The metric table of docs/telemetry.md: OTLP name -> (instrument, unit).
fn documented_metrics() -> BTreeMap<String, (String, String)> {
    let section = TELEMETRY_DOC
        .split("\n## Metrics")
        .nth(1)
        .expect("docs/telemetry.md has a `## Metrics` section");
    let section = section.split("\n## ").next().unwrap();
    section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<String> = l
                .split('|')
                .map(|c| c.trim().trim_matches('`').to_owned())
                .collect();
            (cells[1].clone(), (cells[2].clone(), cells[3].clone()))
        })
        .collect()
}

fn all_present(r: &Received) -> bool {
    let spans = r.spans();
    let roots = PROBES.iter().all(|p| {
        spans.iter().any(|s| {
            s.span.parent_span_id.is_empty() && s.attr("probe.name").as_deref() == Some(*p)
        })
    });
    let names: BTreeSet<String> = r.metrics().into_iter().map(|(m, _)| m.name).collect();
    roots && names.contains("probe.mongodb.members") && names.contains("probe.credential.time_left")
}

#[tokio::test]
async fn the_otlp_export_of_every_kind_conforms_to_the_semantic_conventions() {
    let registry: Json = serde_json::from_str(REGISTRY).unwrap();
    cross_check_with_the_model(&registry).await;

    let world = World::new().await;
    let leaf = || world.ca.leaf(&["localhost"], Validity::current()).unwrap();
    let scrape = HttpServer::builder()
        .tls(&leaf())
        .respond(|_| {
            Reply::ok("# TYPE up gauge\nup 1\n").header("content-type", "text/plain; version=0.0.4")
        })
        .start()
        .await
        .unwrap();
    let pg_leaf = leaf();
    let cluster = tokio::task::spawn_blocking(move || {
        Cluster::start(&ClusterSpec {
            name: "semconv".into(),
            tls: Some(pg_leaf),
            client_ca: None,
            hba: vec!["host all all 127.0.0.1/32 scram-sha-256".into()],
            setup_sql: vec![format!("CREATE ROLE probe LOGIN PASSWORD '{PG_PASSWORD}'")],
        })
    })
    .await
    .unwrap()
    .unwrap();
    let maria_leaf = leaf();
    let mariadb = tokio::task::spawn_blocking(move || {
        MariaDb::start(&MariaDbSpec {
            tls: Some(maria_leaf),
            setup_sql: vec![format!(
                "CREATE USER probe@'%' IDENTIFIED BY '{MARIADB_PASSWORD}'"
            )],
            ..Default::default()
        })
    })
    .await
    .unwrap()
    .unwrap();
    let redis = tokio::task::spawn_blocking(|| RedisServer::start(&RedisSpec::default()))
        .await
        .unwrap()
        .unwrap();
    let mongo = ReplicaSet::builder()
        .user("probe", "s3cret")
        .start()
        .await
        .unwrap();
    let grpc = GrpcHealthServer::start(GrpcHealthOptions {
        identity: Some(leaf()),
        token: None,
    })
    .await
    .unwrap();
    let collector = OtlpReceiver::start().await.unwrap();
    let receiver = OtlpReceiver::start().await.unwrap();
    let token = world
        .scratch
        .write(
            "token",
            &jwt(&format!(r#"{{"exp":{}}}"#, unix_in(30 * 86_400))),
        )
        .unwrap();

    let yaml = format!(
        "{agent}telemetry:\n  otlp:\n    endpoint: {otlp}\n    protocol: grpc\n    metrics_interval: 500ms\n    timeout: 2s\n  resource:\n    deployment.environment.name: test\ndefaults:\n  tls:\n    ca_file: {ca}\n{probes}\
\x20 - name: keyed-api\n    kind: http\n    url: https://localhost:{healthy}/health?api_key={QUERY_SECRET}\n\
\x20 - name: scrape\n    kind: metrics\n    url: https://localhost:{scrape}/metrics\n\
\x20 - name: orders-db\n    kind: postgres\n    url: postgres://probe@localhost:{pg}/postgres?sslmode=verify-full\n    password: {PG_PASSWORD}\n\
\x20 - name: accounts-db\n    kind: mysql\n    url: mysql://probe@localhost:{maria}/information_schema?ssl-mode=VERIFY_IDENTITY\n    password: {MARIADB_PASSWORD}\n\
\x20 - name: cache\n    kind: redis\n    url: redis://localhost:{redis}/0\n\
\x20 - name: sessions\n    kind: mongodb\n    url: mongodb://probe@{mongo}/?replicaSet=rs0\n    password: s3cret\n    heartbeat_frequency: 500ms\n\
\x20 - name: payments\n    kind: grpc\n    url: {grpc}\n\
\x20 - name: collector\n    kind: otlp\n    endpoint: {collector}\n    protocol: grpc\n\
\x20 - name: token\n    kind: credential\n    file: {token}\n",
        agent = common::FAST_AGENT,
        otlp = receiver.grpc_endpoint(),
        ca = world.ca_file.display(),
        probes = world.probes(),
        healthy = world.healthy.port(),
        scrape = scrape.port(),
        pg = cluster.port(),
        redis = redis.port(),
        maria = mariadb.port(),
        mongo = mongo.seed_list(),
        grpc = grpc.url(),
        collector = collector.grpc_endpoint(),
        token = token.display(),
    );
    let config = world.scratch.write("semconv.yaml", &yaml).unwrap();
    let agent = world.start(&config, "semconv.log").await;
    wait_status(&agent, WAIT, |s| {
        PROBES.iter().all(|n| entry(s, n).is_some())
    })
    .await;
    let got = receiver.received();
    assert!(
        got.wait_for(WAIT, all_present).await,
        "not every probe exported; log:\n{}",
        agent.log_text()
    );
    let status = agent.status().await.unwrap();
    for p in PROBES.iter().filter(|p| **p != "expired-tls") {
        assert_ne!(
            entry(&status, p).unwrap()["status"],
            "down",
            "{p} should work: {:#}",
            entry(&status, p).unwrap()
        );
    }

    let mut problems = BTreeSet::new();
    let spans = got.spans();
    let mut calls: BTreeMap<String, String> = BTreeMap::new();
    for s in &spans {
        let attrs = &s.span.attributes;
        let at = format!("span `{}`", s.span.name);
        check_attributes(&registry, &at, attrs, &mut problems);
        for e in &s.span.events {
            check_attributes(
                &registry,
                &format!("{at} event `{}`", e.name),
                &e.attributes,
                &mut problems,
            );
        }
        let kind = s.span.kind;
        if s.span.parent_span_id.is_empty() {
            let probe_kind = get(attrs, "probe.kind").map(text).unwrap_or_default();
            if s.span.name != format!("probe {probe_kind}") {
                problems.insert(format!("{at}: a root is named `probe <kind>`"));
            }
            let local = get(attrs, "file.path").is_some();
            let want = if local {
                SpanKind::Internal
            } else {
                SpanKind::Client
            };
            if kind != want as i32 {
                problems.insert(format!("{at}: root of kind {kind}, want {want:?}"));
            }
            if local && get(attrs, "server.address").is_some() {
                problems.insert(format!("{at}: a local file is no server.address"));
            }
            continue;
        }
        if kind == SpanKind::Client as i32 {
            let Some((id, rule)) = rule_of(&registry, attrs) else {
                problems.insert(format!(
                    "{at}: a CLIENT span that follows no semconv span rule"
                ));
                continue;
            };
            assert_eq!(rule["span_kind"], "client");
            for req in rule["required"].as_array().unwrap() {
                let req = req.as_str().unwrap();
                if get(attrs, req).is_none() && rule["waived"].get(req).is_none() {
                    problems.insert(format!("{at} ({id}): required `{req}` missing"));
                }
            }
            if Some(&s.span.name) != expected_call_name(attrs).as_ref() {
                problems.insert(format!(
                    "{at} ({id}): should be named {:?}",
                    expected_call_name(attrs)
                ));
            }
            let probe = spans
                .iter()
                .find(|r| r.span.span_id == s.span.parent_span_id)
                .and_then(|r| r.attr("probe.name"))
                .unwrap_or_default();
            calls.insert(probe, s.span.name.clone());
        } else if kind != SpanKind::Internal as i32 {
            problems.insert(format!(
                "{at}: a phase is INTERNAL or the call's CLIENT span"
            ));
        }
    }
    // Every kind that makes a client call has its CLIENT span.
    for (probe, name) in [
        ("healthy-api", "GET"),
        ("keyed-api", "GET"),
        ("scrape", "GET"),
        ("orders-db", "SELECT postgres"),
        ("accounts-db", "SELECT information_schema"),
        ("cache", "PING"),
        ("sessions", "ping admin"),
        ("payments", "grpc.health.v1.Health/Check"),
        (
            "collector",
            "opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
        ),
    ] {
        assert_eq!(
            calls.get(probe).map(String::as_str),
            Some(name),
            "{calls:?}"
        );
    }
    let keyed = spans
        .iter()
        .find(|s| s.span.name == "GET" && s.attr("url.full").is_some_and(|u| u.contains("api_key")))
        .unwrap();
    assert_eq!(
        keyed.attr("url.full"),
        Some(format!(
            "https://localhost:{}/health?api_key=REDACTED",
            world.healthy.port()
        ))
    );
    let tls = spans
        .iter()
        .find(|s| {
            s.attr("probe.name").as_deref() == Some("healthy-api")
                && s.span.parent_span_id.is_empty()
        })
        .unwrap();
    assert!(
        tls.attr("tls.cipher").unwrap().starts_with("TLS_"),
        "an IANA name: {:?}",
        tls.attr("tls.cipher")
    );

    let documented = documented_metrics();
    let requests = got.metric_requests();
    for req in &requests {
        for rm in &req.resource_metrics {
            if let Some(r) = &rm.resource {
                check_attributes(&registry, "resource", &r.attributes, &mut problems);
            }
            for sm in &rm.scope_metrics {
                for m in &sm.metrics {
                    let at = format!("metric `{}`", m.name);
                    let (instrument, points) = match &m.data {
                        Some(Data::Gauge(g)) => (
                            "gauge",
                            g.data_points
                                .iter()
                                .map(|p| &p.attributes[..])
                                .collect::<Vec<_>>(),
                        ),
                        Some(Data::Sum(s)) if s.is_monotonic => (
                            "counter",
                            s.data_points.iter().map(|p| &p.attributes[..]).collect(),
                        ),
                        Some(Data::Histogram(h)) => (
                            "histogram",
                            h.data_points.iter().map(|p| &p.attributes[..]).collect(),
                        ),
                        other => {
                            problems.insert(format!("{at}: unexpected data {other:?}"));
                            continue;
                        }
                    };
                    for attrs in points {
                        check_attributes(&registry, &at, attrs, &mut problems);
                    }
                    if let Some(standard) = registry["metrics"].get(&m.name) {
                        if standard["instrument"] != instrument
                            || standard["unit"] != m.unit.as_str()
                        {
                            problems.insert(format!("{at}: semconv says {standard}"));
                        }
                        continue;
                    }
                    let namespace = m.name.split('.').next().unwrap_or_default();
                    if namespace != "probe" && namespace != "depprobe" {
                        problems.insert(format!("{at}: outside the project's namespace"));
                    }
                    match documented.get(&m.name) {
                        None => {
                            problems.insert(format!("{at}: not in docs/telemetry.md's table"));
                        }
                        Some((i, u)) if i != instrument || u != &m.unit => {
                            problems.insert(format!(
                                "{at}: exported as {instrument} `{}`, documented as {i} `{u}`",
                                m.unit
                            ));
                        }
                        Some(_) => {}
                    }
                    let ucum = m.unit == "1"
                        || m.unit == "s"
                        || m.unit == "By"
                        || (m.unit.starts_with('{') && m.unit.ends_with('}') && m.unit.len() > 2);
                    if !ucum {
                        problems
                            .insert(format!("{at}: unit `{}` is not UCUM as we use it", m.unit));
                    }
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.into_iter().collect::<Vec<_>>().join("\n")
    );
}

/// When a copy of the registry's model is at hand, the committed table must be
/// what `scripts/semconv-refresh` makes of it (CI passes without one).
async fn cross_check_with_the_model(registry: &Json) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let checkout = match std::env::var_os("DEPPROBE_SEMCONV_MODEL") {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            let commit = registry["source"]["commit"].as_str().unwrap_or_default();
            let version = registry["source"]["version"].as_str().unwrap_or_default();
            let name = format!(
                "{}-{}",
                version.replace("-unreleased", "-dev"),
                &commit[..7.min(commit.len())]
            );
            // `../shared` beside the repository (a worktree sits one level deeper).
            [root.join("../shared"), root.join("../../shared")]
                .into_iter()
                .map(|shared| shared.join("semconv").join(&name))
                .find(|dir| dir.join("model").is_dir())
        }
    };
    let Some(checkout) = checkout else { return };
    let has_yaml = tokio::process::Command::new("python3")
        .args(["-c", "import yaml"])
        .status()
        .await
        .is_ok_and(|s| s.success());
    if !has_yaml {
        eprintln!("python3 with PyYAML is not here: the table is not cross-checked");
        return;
    }
    eprintln!("cross-checking the table against {}", checkout.display());
    let out = std::env::temp_dir().join(format!("semconv-{}.json", std::process::id()));
    let status = tokio::process::Command::new("python3")
        .arg(root.join("scripts/semconv-refresh"))
        .arg(&checkout)
        .arg("--commit")
        .arg(registry["source"]["commit"].as_str().unwrap_or_default())
        .arg("--out")
        .arg(&out)
        .status()
        .await;
    let Ok(status) = status else { return };
    assert!(
        status.success(),
        "scripts/semconv-refresh {} failed",
        checkout.display()
    );
    let fresh: Json = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let _ = std::fs::remove_file(&out);
    assert_eq!(
        &fresh,
        registry,
        "tests/semconv/registry.json is not what scripts/semconv-refresh makes of {}",
        checkout.display()
    );
}
