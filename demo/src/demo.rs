//! The dependencies of `depprobe demo`: one local server per case, and the
//! configuration that probes them.
//!
//! Each server stands for a way a real dependency breaks (the incidents in the
//! design); the demo shows depprobe naming each one.

use std::path::PathBuf;

use crate::certs::{Ca, CertError, Validity};
use crate::mongo::ReplicaSet;
use crate::otlp::OtlpReceiver;
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
    /// The probe's keys after `name` (kind, url, ...), one per line.
    probe: String,
}

/// The running demo dependencies.
pub struct Demo {
    /// The cases, in probe order.
    pub cases: Vec<DemoCase>,
    /// The configuration file that probes them.
    pub config_path: PathBuf,
    /// The configuration text.
    pub config_yaml: String,
    _servers: Vec<HttpServer>,
    _receiver: OtlpReceiver,
    _set: ReplicaSet,
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
        let mut servers = Vec::new();
        let mut add = |name: &'static str, expect, story, server: HttpServer| {
            let probe = http_probe(name, &server, &token);
            servers.push(server);
            cases.push(DemoCase {
                name,
                expect,
                story,
                probe,
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

        let healthy_port = servers.first().map_or(0, HttpServer::port);
        cases.push(DemoCase {
            name: "api-tls",
            expect: "up",
            story: "the healthy API's TLS endpoint alone: the chain and its expiry",
            probe: format!("kind: tls\n    address: localhost:{healthy_port}\n"),
        });
        let receiver = OtlpReceiver::start().await?;
        cases.push(DemoCase {
            name: "otlp-collector",
            expect: "up",
            story: "the ingest path of the observability stack itself (an OTLP receiver)",
            probe: format!(
                "kind: otlp\n    endpoint: {}\n    protocol: grpc\n",
                receiver.grpc_endpoint()
            ),
        });
        let set = ReplicaSet::builder()
            .user("probe", "s3cret")
            .start()
            .await?;
        // Three elections in a row, the same host winning the last, at the probe's
        // first command: the storm of incident 04, counted by term.
        set.elect_on_next_ping(&[1, 2, 0]);
        cases.push(DemoCase {
            name: "sessions-mongodb",
            expect: "degraded",
            story: "a replica set in an election storm (incident 04; a wire-protocol server, not mongod)",
            probe: format!(
                "kind: mongodb\n    url: mongodb://probe:s3cret@{}/?replicaSet=rs0\n",
                set.seed_list()
            ),
        });
        let expired = scratch.write("service-account-token", &expired_jwt())?;
        cases.push(DemoCase {
            name: "sa-token",
            expect: "credential_expired",
            story: "a service-account token that expired and was never rotated (incident 05)",
            probe: format!("kind: credential\n    file: {}\n", expired.display()),
        });

        let mut yaml = format!(
            "# depprobe demo: every dependency below runs inside this process on loopback.\n# Kinds that need a real server (postgres, mongodb, mysql, redis, ...) are\n# described in the README: point a probe's url at yours.\nagent:\n  interval: 15s\n  timeout: 5s\n  listen: {listen}\ndefaults:\n  tls:\n    ca_file: {}\n    system_roots: false\nprobes:\n",
            ca_file.display()
        );
        for case in &cases {
            yaml.push_str(&format!(
                "  # {}\n  - name: {}\n    {}",
                case.story, case.name, case.probe
            ));
        }
        let config_path = scratch.write("depprobe-demo.yaml", &yaml)?;
        Ok(Demo {
            cases,
            config_path,
            config_yaml: yaml,
            _servers: servers,
            _receiver: receiver,
            _set: set,
            _scratch: scratch,
        })
    }
}

/// The keys of the `http` (or `metrics`) probe of HTTP case `name` served by `server`.
fn http_probe(name: &str, server: &HttpServer, token: &std::path::Path) -> String {
    // The plaintext server is probed as the HTTPS endpoint it should be.
    let url = match name {
        "plaintext-api" => format!("https://localhost:{}/health", server.port()),
        _ => server.url("localhost", path_for(name)),
    };
    let kind = if name == "metrics-endpoint" {
        "metrics"
    } else {
        "http"
    };
    let mut probe = format!("kind: {kind}\n    url: {url}\n");
    if name == "metrics-api-jwt" {
        probe.push_str(&format!("    bearer_token_file: {}\n", token.display()));
    }
    if name == "metrics-endpoint" {
        probe.push_str("    expect:\n      series:\n        - match: demo_up\n          min: 1\n");
    }
    probe
}

/// A JWT whose `exp` was a day ago (unsigned: the credential kind reads its times).
fn expired_jwt() -> String {
    use base64::Engine;
    let b = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let claims = format!(
        r#"{{"sub":"system:serviceaccount:monitoring:influxdb","iat":{},"exp":{}}}"#,
        now.saturating_sub(8 * 86_400),
        now.saturating_sub(86_400)
    );
    format!(
        "{}.{}.{}",
        b(r#"{"alg":"RS256","typ":"JWT"}"#),
        b(&claims),
        b("demo-signature")
    )
}

fn path_for(name: &str) -> &'static str {
    match name {
        "metrics-endpoint" | "metrics-api-jwt" => "/metrics",
        _ => "/health",
    }
}
