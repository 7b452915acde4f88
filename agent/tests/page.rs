//! The status page in a real browser: a `depprobe run` process probes local HTTPS
//! servers (certificates generated per case), Debian's headless Chromium loads `/`
//! and `/targets/NAME`, and the tests read the DOM it built: the rows and their
//! order, the classes, the certificate colours at the warning and critical windows,
//! the chain and the history, the filters, and hostile text shown as text.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step is a failed test

mod browser;
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use browser::{cell, dump_dom, row, sel, text};
use common::{FAST_AGENT, bin, entry, wait_status};
use depprobe_tests::agent_process::AgentProcess;
use depprobe_tests::{Ca, HttpServer, Reply, Scratch, Validity};
use scraper::{ElementRef, Html};

const WAIT: Duration = Duration::from_secs(60);
const HOSTILE_CN: &str = r#"<script>alert("subject")</script>"#;
const HOSTILE_BODY: &str = r#"<img src=x onerror=alert(1)><b id="injected">bold</b>"#;
const HOSTILE_NAME: &str = r#"<i id="evil-name">evil</i> & "q"/x?y#z"#;
const TOKEN: &str = "tok-PG19-sekrit-bearer";
const PASSWORD: &str = "pw-PG19-sekrit-basic";

/// Local dependencies, one per thing the page must show, and the agent probing them.
struct World {
    scratch: Scratch,
    _servers: Vec<HttpServer>,
    agent: AgentProcess,
}

async fn https(
    identity: &depprobe_tests::Identity,
    reply: fn(&depprobe_tests::Req) -> Reply,
) -> HttpServer {
    HttpServer::builder()
        .tls(identity)
        .respond(reply)
        .start()
        .await
        .unwrap()
}

impl World {
    async fn start() -> World {
        let ca = Ca::root("Page Test CA").unwrap();
        let ok = |_: &depprobe_tests::Req| Reply::ok("{\"status\":\"ok\"}");
        let leaf = |v| ca.leaf(&["localhost"], v).unwrap();
        let hostile_ca = ca.intermediate(HOSTILE_CN, Validity::current()).unwrap();
        let flips = Arc::new(AtomicU64::new(0));
        let flapping = HttpServer::builder()
            .tls(&leaf(Validity::current()))
            .respond(move |_| {
                if flips.fetch_add(1, Ordering::Relaxed).is_multiple_of(2) {
                    Reply::ok("fine")
                } else {
                    Reply::new(503, "busy")
                }
            })
            .start()
            .await
            .unwrap();
        let servers = vec![
            https(&leaf(Validity::current()), ok).await,
            https(&leaf(Validity::expiring_in(10)), ok).await,
            https(&leaf(Validity::expiring_in(2)), ok).await,
            https(&leaf(Validity::expired()), ok).await,
            https(
                &hostile_ca
                    .leaf(&["localhost"], Validity::current())
                    .unwrap(),
                ok,
            )
            .await,
            https(&leaf(Validity::current()), |_| {
                Reply::new(500, HOSTILE_BODY)
            })
            .await,
            // A careless server that echoes the credentials it got.
            https(&leaf(Validity::current()), |req| {
                Reply::new(
                    401,
                    format!(
                        "invalid token: {}",
                        req.header("authorization").unwrap_or("none")
                    ),
                )
            })
            .await,
            flapping,
        ];
        let scratch = Scratch::new().unwrap();
        let ca_file = scratch.ca(&ca).unwrap();
        let token_file = scratch.write("token", TOKEN).unwrap();
        let port = |i: usize| servers[i].port();
        let probes = format!(
            "probes:\n\
             - {{name: healthy-api, kind: http, url: 'https://localhost:{}/'}}\n\
             - {{name: warning-api, kind: http, url: 'https://localhost:{}/'}}\n\
             - {{name: critical-api, kind: http, url: 'https://localhost:{}/'}}\n\
             - {{name: expired-tls, kind: tls, address: 'localhost:{}'}}\n\
             - {{name: hostile-chain, kind: http, url: 'https://localhost:{}/'}}\n\
             - {{name: '{}', kind: http, url: 'https://localhost:{}/'}}\n\
             - {{name: echo-bearer, kind: http, url: 'https://localhost:{}/', bearer_token_file: '{}'}}\n\
             - {{name: echo-basic, kind: http, url: 'https://localhost:{}/', basic_auth: {{username: probe, password: '${{BASIC_PASSWORD}}'}}}}\n\
             - {{name: flapping-api, kind: http, url: 'https://localhost:{}/'}}\n",
            port(0),
            port(1),
            port(2),
            port(3),
            port(4),
            HOSTILE_NAME,
            port(5),
            port(6),
            token_file.display(),
            port(6),
            port(7),
        );
        let text = format!(
            "{FAST_AGENT}defaults:\n  tls:\n    ca_file: {}\n{probes}",
            ca_file.display()
        );
        let config = scratch.write("page.yaml", &text).unwrap();
        let agent = AgentProcess::start(
            &bin(),
            &config,
            &scratch.path("agent.log"),
            &[("BASIC_PASSWORD", PASSWORD)],
        )
        .await
        .unwrap();
        wait_status(&agent, WAIT, |s| s.as_array().is_some_and(|a| a.len() == 9)).await;
        World {
            scratch,
            _servers: servers,
            agent,
        }
    }

    /// Polls `path` over plain HTTP until `ok` accepts its body.
    async fn wait_page(&self, path: &str, ok: impl Fn(&str) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (_, body) = self.agent.get(path).await.unwrap();
            if ok(&body) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{path} never got there:\n{body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.agent.api)
    }

    /// The DOM Chromium built from `path`.
    async fn dom(&self, path: &str) -> (Html, String) {
        let text = dump_dom(&self.scratch, &self.url(path)).await;
        (Html::parse_document(&text), text)
    }
}

/// The number of runs a target page says it kept (0 when it says none).
fn runs_kept(body: &str) -> usize {
    body.split("class=\"history-summary\">")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn the_overview_groups_targets_worst_first_with_classes_and_colours() {
    let w = World::start().await;
    let (doc, _) = w.dom("/").await;
    let groups: Vec<String> = doc
        .select(&sel("section.group"))
        .filter_map(|g| g.value().id().map(str::to_owned))
        .collect();
    assert_eq!(groups, ["down", "degraded", "up"]);
    let rows: Vec<ElementRef<'_>> = doc.select(&sel("tr.target")).collect();
    assert_eq!(rows.len(), 9);
    let rank = |r: &ElementRef<'_>| match r.value().attr("data-status") {
        Some("down") => 0,
        Some("degraded") => 1,
        _ => 2,
    };
    assert!(
        rows.windows(2).all(|p| rank(&p[0]) <= rank(&p[1])),
        "not worst first"
    );

    let expired = row(&doc, "expired-tls");
    assert_eq!(cell(expired, "status").0, "down");
    assert_eq!(cell(expired, "kind").0, "tls");
    assert_eq!(cell(expired, "class").0, "tls_cert_expired");
    assert_eq!(cell(expired, "phase").0, "tls");
    assert!(cell(expired, "cert").1.contains(&"cert-expired".to_owned()));
    assert!(cell(expired, "message").0.contains("expired"));

    let warning = row(&doc, "warning-api");
    assert_eq!(cell(warning, "status").0, "degraded");
    assert_eq!(cell(warning, "cert").0, "10d");
    assert!(cell(warning, "cert").1.contains(&"cert-warning".to_owned()));
    let finding = warning.select(&sel("li.finding")).next().unwrap();
    assert_eq!(finding.value().attr("data-type"), Some("cert_expiring"));
    assert!(finding.value().classes().any(|c| c == "severity-warning"));

    let critical = row(&doc, "critical-api");
    assert_eq!(cell(critical, "cert").0, "2d");
    assert!(
        cell(critical, "cert")
            .1
            .contains(&"cert-critical".to_owned())
    );

    let healthy = row(&doc, "healthy-api");
    assert_eq!(cell(healthy, "status").0, "up");
    assert_eq!(cell(healthy, "class").0, "-");
    assert!(cell(healthy, "cert").1.contains(&"cert-ok".to_owned()));
    assert!(cell(healthy, "latency").0.ends_with(" ms"));
    assert!(cell(healthy, "last-run").0.ends_with("ago"));
    assert_eq!(
        healthy
            .select(&sel("td.name a"))
            .next()
            .unwrap()
            .value()
            .attr("href"),
        Some("/targets/healthy-api")
    );

    // The same outcomes as /status: one row per entry, same status and class (but
    // for the target that flips at every run, read at two different moments).
    let status = w.agent.status().await.unwrap();
    for r in &rows {
        let name = text(r.select(&sel("td.name a")).next().unwrap());
        if name == "flapping-api" {
            continue;
        }
        let e = entry(&status, &name).unwrap_or_else(|| panic!("{name} not in /status"));
        assert_eq!(
            r.value().attr("data-status"),
            e["status"].as_str(),
            "{name}"
        );
        assert_eq!(
            cell(*r, "class").0,
            e["error_type"].as_str().unwrap_or("-"),
            "{name}"
        );
    }
}

#[tokio::test]
async fn the_filters_narrow_by_kind_and_status() {
    let w = World::start().await;
    let (doc, _) = w.dom("/?status=down&kind=http").await;
    let rows: Vec<ElementRef<'_>> = doc.select(&sel("tr.target")).collect();
    let names: Vec<String> = doc.select(&sel("tr.target td.name a")).map(text).collect();
    assert!(names.iter().any(|n| n == "echo-bearer"), "{names:?}");
    assert!(names.iter().any(|n| n == HOSTILE_NAME), "{names:?}");
    for r in &rows {
        assert_eq!(r.value().attr("data-status"), Some("down"));
        assert_eq!(r.value().attr("data-kind"), Some("http"));
    }
    let active: Vec<String> = doc.select(&sel("nav.filters a.active")).map(text).collect();
    // The counts of the status links are over every kind (the flapping target
    // makes the number of down ones move).
    assert_eq!(active.len(), 2, "{active:?}");
    assert!(active[0].starts_with("down ("), "{active:?}");
    assert_eq!(active[1], "http");

    let (doc, _) = w.dom("/?kind=tls").await;
    let names: Vec<String> = doc.select(&sel("tr.target td.name a")).map(text).collect();
    assert_eq!(names, ["expired-tls"]);

    let (doc, _) = w.dom("/?status=up&kind=tls").await;
    assert_eq!(doc.select(&sel("tr.target")).count(), 0);
    assert_eq!(
        doc.select(&sel("p.empty")).next().map(text).as_deref(),
        Some("No target matches this filter.")
    );
}

#[tokio::test]
async fn the_target_page_shows_the_chain_phases_and_history() {
    let w = World::start().await;
    // A few runs of the flapping target first (readiness, polled over HTTP).
    w.wait_page("/targets/flapping-api", |body| runs_kept(body) >= 4)
        .await;
    let (doc, _) = w.dom("/targets/flapping-api").await;
    let strip: Vec<ElementRef<'_>> = doc.select(&sel("svg.strip rect.run")).collect();
    assert!(strip.len() >= 4, "{} runs", strip.len());
    let has = |class: &str| {
        strip
            .iter()
            .any(|r| r.value().classes().any(|c| c == class))
    };
    assert!(
        has("run-up") && has("run-down"),
        "the strip shows the flapping"
    );
    assert!(
        doc.select(&sel("svg.sparkline polyline.latency"))
            .next()
            .is_some()
    );
    let summary = text(doc.select(&sel("p.history-summary")).next().unwrap());
    assert!(summary.contains("status changes"), "{summary}");

    let (doc, _) = w.dom("/targets/critical-api").await;
    let heading = text(doc.select(&sel("h1 .badge")).next().unwrap());
    assert_eq!(heading, "degraded");
    let certs: Vec<ElementRef<'_>> = doc.select(&sel("section.cert")).collect();
    assert_eq!(certs.len(), 1, "the leaf, issued by the root directly");
    let leaf = certs[0];
    assert!(leaf.value().classes().any(|c| c == "cert-critical"));
    let dd = |class: &str| text(leaf.select(&sel(&format!("dd.{class}"))).next().unwrap());
    assert!(dd("subject").contains("CN=localhost"));
    assert!(dd("issuer").contains("CN=Page Test CA"));
    assert_eq!(dd("sans"), "localhost");
    assert_eq!(dd("days-left"), "2 days");
    let phases: Vec<String> = doc
        .select(&sel("table.phases td:first-child"))
        .map(text)
        .collect();
    assert_eq!(phases, ["dns", "connect", "tls", "request", "total"]);
    let finding = doc.select(&sel("li.finding")).next().unwrap();
    assert!(finding.value().classes().any(|c| c == "severity-critical"));

    // The chain of a two-level CA: both presented, leaf first.
    let (doc, _) = w.dom("/targets/hostile-chain").await;
    assert_eq!(doc.select(&sel("section.cert")).count(), 2);

    let (missing, _) = w.dom("/targets/no-such-target").await;
    assert!(missing.select(&sel("p.missing")).next().is_some());
    let (code, _) = w.agent.get("/targets/no-such-target").await.unwrap();
    assert_eq!(code, 404);
}

#[tokio::test]
async fn hostile_subjects_messages_and_names_render_as_text() {
    let w = World::start().await;
    let (doc, raw) = w.dom("/").await;
    assert_eq!(
        doc.select(&sel("script")).count(),
        0,
        "no script on the page, injected or not"
    );
    assert_eq!(doc.select(&sel("img")).count(), 0);
    assert!(doc.select(&sel("#injected, #evil-name")).next().is_none());
    // The hostile body reached the message, as text.
    let hostile = row(&doc, HOSTILE_NAME);
    assert_eq!(cell(hostile, "class").0, "http_status");
    assert!(
        cell(hostile, "message").0.contains(HOSTILE_BODY),
        "{:?}",
        cell(hostile, "message")
    );
    assert!(raw.contains("&lt;img src=x onerror=alert(1)&gt;"));
    // The hostile name links to its own page, percent-encoded in one segment.
    let href = hostile
        .select(&sel("td.name a"))
        .next()
        .unwrap()
        .value()
        .attr("href")
        .unwrap()
        .to_owned();
    assert_eq!(
        href,
        "/targets/%3Ci%20id%3D%22evil-name%22%3Eevil%3C%2Fi%3E%20%26%20%22q%22%2Fx%3Fy%23z"
    );
    let (page, _) = w.dom(&href).await;
    assert_eq!(
        text(page.select(&sel("h1 .name")).next().unwrap()),
        HOSTILE_NAME
    );
    assert!(
        page.select(&sel("#evil-name, #injected, img, script"))
            .next()
            .is_none()
    );

    // A hostile filter is a filter that matches nothing, not markup.
    let (doc, raw) = w
        .dom("/?kind=%3Cscript%3Ealert(2)%3C%2Fscript%3E&status=%3Cb%3E")
        .await;
    assert_eq!(doc.select(&sel("script, b")).count(), 0);
    assert!(doc.select(&sel("p.empty")).next().is_some());
    assert!(!raw.contains("alert(2)</script>"));

    // A certificate whose subject is markup: the intermediate, and the leaf's issuer.
    let (doc, raw) = w.dom("/targets/hostile-chain").await;
    assert_eq!(doc.select(&sel("script")).count(), 0);
    let subjects: Vec<String> = doc
        .select(&sel("section.cert dd.subject"))
        .map(text)
        .collect();
    assert!(subjects[1].contains(HOSTILE_CN), "{subjects:?}");
    let issuer = text(doc.select(&sel("section.cert dd.issuer")).next().unwrap());
    assert!(issuer.contains(HOSTILE_CN), "{issuer}");
    assert!(raw.contains("&lt;script&gt;alert(\"subject\")&lt;/script&gt;"));
}

#[tokio::test]
async fn no_configured_secret_reaches_the_pages() {
    let w = World::start().await;
    let status = wait_status(&w.agent, WAIT, |s| {
        entry(s, "echo-bearer").is_some() && entry(s, "echo-basic").is_some()
    })
    .await;
    assert_eq!(
        entry(&status, "echo-bearer").unwrap()["error_type"],
        "jwt_rejected"
    );
    let basic = "cHJvYmU6cHctUEcxOS1zZWtyaXQtYmFzaWM="; // base64("probe:" + PASSWORD)
    let mut pages = vec![
        "/".to_owned(),
        "/?status=down".to_owned(),
        "/targets/echo-bearer".to_owned(),
        "/targets/echo-basic".to_owned(),
    ];
    pages.extend(["healthy-api", "warning-api", "expired-tls"].map(|n| format!("/targets/{n}")));
    for path in &pages {
        let (code, body) = w.agent.get(path).await.unwrap();
        assert_eq!(code, 200, "{path}");
        let (_, dom) = w.dom(path).await;
        for secret in [TOKEN, PASSWORD, basic] {
            assert!(
                !body.contains(secret),
                "{secret} leaked into {path}:\n{body}"
            );
            assert!(
                !dom.contains(secret),
                "{secret} leaked into the DOM of {path}"
            );
        }
    }
    // The echoed body did reach the page, scrubbed.
    let (doc, _) = w.dom("/targets/echo-bearer").await;
    let message = text(doc.select(&sel("dd.message")).next().unwrap());
    assert!(message.contains("invalid token: Bearer ***"), "{message}");
}

#[tokio::test]
async fn the_demo_prints_its_page_first_and_shows_every_case() {
    use tokio::io::AsyncBufReadExt;
    let port = depprobe_tests::free_port().unwrap();
    let listen = format!("127.0.0.1:{port}");
    let mut demo = tokio::process::Command::new(bin())
        .args(["demo", "--listen", &listen])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(demo.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("the demo printed nothing")
        .unwrap();
    assert_eq!(
        first.as_deref(),
        Some(format!("depprobe demo: open http://{listen}/ for the status page").as_str())
    );
    // Keep reading its table, so that it never waits on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let addr: std::net::SocketAddr = listen.parse().unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    let status = loop {
        if let Ok((200, body)) = depprobe_tests::agent_process::http_get(addr, "/status").await
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(&body)
            && v.as_array().is_some_and(|a| a.len() == 13)
        {
            break v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the demo never served 13 outcomes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let scratch = Scratch::new().unwrap();
    let doc = Html::parse_document(&dump_dom(&scratch, &format!("http://{listen}/")).await);
    let cases = status.as_array().unwrap();
    assert_eq!(doc.select(&sel("tr.target")).count(), cases.len());
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let r = row(&doc, name);
        assert_eq!(
            r.value().attr("data-status"),
            case["status"].as_str(),
            "{name}"
        );
    }
    assert_eq!(
        row(&doc, "expired-db-proxy").value().attr("data-status"),
        Some("down")
    );
    assert!(
        cell(row(&doc, "expiring-api"), "cert")
            .1
            .contains(&"cert-warning".to_owned())
    );
}
