//! The dependencies of `depprobe demo`: one local server per case, and the
//! configuration that probes them.
//!
//! Each server stands for a way a real dependency breaks (the incidents in the
//! design); the demo shows depprobe naming each one.

use std::path::PathBuf;

use crate::certs::{Ca, CertError, Validity};
use crate::scratch::Scratch;
use crate::servers::{HttpServer, Reply, ServerError};

/// Why the demo could not start.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A certificate could not be made.
    #[error(transparent)]
    Cert(#[from] CertError),
    /// A server could not start.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// The scratch directory could not be made.
    #[error("demo directory: {0}")]
    Io(#[from] std::io::Error),
}

/// One demo case: its probe name, what depprobe should say, and its server.
pub struct DemoCase {
    /// The probe's name.
    pub name: &'static str,
    /// The status and class depprobe should report (`up`, `degraded`, or the class).
    pub expect: &'static str,
    /// What the case stands for.
    pub story: &'static str,
    server: HttpServer,
}

/// The running demo dependencies.
pub struct Demo {
    /// The cases, in probe order.
    pub cases: Vec<DemoCase>,
    /// The configuration file that probes them.
    pub config_path: PathBuf,
    /// The configuration text.
    pub config_yaml: String,
    _scratch: Scratch,
}

const JWT_BODY: &str = r#"{"message":"Failed to validate JWT."}"#;
const METRICS_BODY: &str = "# HELP demo_requests_total Requests served.\n# TYPE demo_requests_total counter\ndemo_requests_total{code=\"200\"} 1027\n# HELP demo_up Whether the demo service is up.\n# TYPE demo_up gauge\ndemo_up 1\n";

impl Demo {
    /// Starts every demo server on loopback and writes the configuration. `listen`
    /// is the agent's address for `/metrics` and `/status`.
    pub async fn start(listen: &str) -> Result<Demo, DemoError> {
        let scratch = Scratch::new()?;
        let ca = Ca::root("depprobe demo CA")?;
        let rogue = Ca::root("internal fallback CA")?;
        let ca_file = scratch.ca(&ca)?;
        let token = scratch.write("demo-token", "demo.jwt.token")?;

        let healthy = ca.leaf(&["localhost"], Validity::current())?;
        let mut cases = Vec::new();
        let mut add = |name, expect, story, server| {
            cases.push(DemoCase {
                name,
                expect,
                story,
                server,
            })
        };
        add(
            "healthy-api",
            "up",
            "a healthy HTTPS API",
            HttpServer::builder()
                .tls(&healthy)
                .respond(|_| Reply::ok(r#"{"status":"ok"}"#))
                .start()
                .await?,
        );
        add(
            "expiring-api",
            "degraded",
            "its certificate expires in 10 days (incident 02: renewal due)",
            HttpServer::builder()
                .tls(&ca.leaf(&["localhost"], Validity::expiring_in(10))?)
                .start()
                .await?,
        );
        add(
            "expired-db-proxy",
            "tls_cert_expired",
            "its certificate expired yesterday (incident 03)",
            HttpServer::builder()
                .tls(&ca.leaf(&["localhost"], Validity::expired())?)
                .start()
                .await?,
        );
        add(
            "untrusted-api",
            "tls_unknown_issuer",
            "renewal fell back to an internal CA (incident 02)",
            HttpServer::builder()
                .tls(&rogue.leaf(&["localhost"], Validity::current())?)
                .start()
                .await?,
        );
        add(
            "wrong-name-api",
            "tls_hostname_mismatch",
            "its certificate is for another name",
            HttpServer::builder()
                .tls(&ca.leaf(&["api.other.example"], Validity::current())?)
                .start()
                .await?,
        );
        add(
            "plaintext-api",
            "tls_not_offered",
            "it does not speak TLS on its port",
            HttpServer::builder().start().await?,
        );
        add(
            "metrics-api-jwt",
            "jwt_rejected",
            "its service key was not rotated with its certificate (incident 01)",
            HttpServer::builder()
                .tls(&healthy)
                .respond(|_| Reply::new(401, JWT_BODY).header("content-type", "application/json"))
                .start()
                .await?,
        );
        add(
            "console-behind-cdn",
            "upstream_tls_error",
            "the CDN cannot verify its origin (HTTP 526, incident 02)",
            HttpServer::builder()
                .tls(&healthy)
                .respond(|_| Reply::new(526, "invalid SSL certificate"))
                .start()
                .await?,
        );
        add(
            "metrics-endpoint",
            "up",
            "a Prometheus metrics endpoint",
            HttpServer::builder()
                .tls(&healthy)
                .respond(|_| {
                    Reply::ok(METRICS_BODY).header("content-type", "text/plain; version=0.0.4")
                })
                .start()
                .await?,
        );

        let mut yaml = format!(
            "# depprobe demo: every dependency below runs inside this process on loopback.\nagent:\n  interval: 15s\n  timeout: 5s\n  listen: {listen}\ndefaults:\n  tls:\n    ca_file: {}\n    system_roots: false\nprobes:\n",
            ca_file.display()
        );
        for case in &cases {
            // The plaintext server is probed as the HTTPS endpoint it should be.
            let url = match case.name {
                "plaintext-api" => format!("https://localhost:{}/health", case.server.port()),
                _ => case.server.url("localhost", path_for(case.name)),
            };
            let kind = if case.name == "metrics-endpoint" {
                "metrics"
            } else {
                "http"
            };
            yaml.push_str(&format!(
                "  # {}\n  - name: {}\n    kind: {kind}\n    url: {url}\n",
                case.story, case.name
            ));
            if case.name == "metrics-api-jwt" {
                yaml.push_str(&format!("    bearer_token_file: {}\n", token.display()));
            }
            if case.name == "metrics-endpoint" {
                yaml.push_str(
                    "    expect:\n      series:\n        - match: demo_up\n          min: 1\n",
                );
            }
        }
        let config_path = scratch.write("depprobe-demo.yaml", &yaml)?;
        Ok(Demo {
            cases,
            config_path,
            config_yaml: yaml,
            _scratch: scratch,
        })
    }
}

fn path_for(name: &str) -> &'static str {
    match name {
        "metrics-endpoint" | "metrics-api-jwt" => "/metrics",
        _ => "/health",
    }
}
