//! Debian's RabbitMQ (`rabbitmq-server`), one private node per test binary: its own
//! node name, distribution port, `epmd` port, data and log directories, and a
//! configuration written for the tests (never the shared node on 5672).
//!
//! The node listens for AMQP on a plaintext port and for AMQPS on a TLS port. Its
//! default certificate is for `localhost`; through Erlang's `sni_hosts`, a client
//! asking for `expired.localhost` or `expiring.localhost` gets a certificate that
//! expired yesterday or expires in 5 days, so every certificate case runs on one
//! node (RabbitMQ takes seconds to boot). Users, vhosts and permissions come from a
//! definitions file loaded at boot: user `probe` may open vhost `orders` but not
//! `billing`.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use tokio::sync::OnceCell;

use super::process::{BrokerError, BrokerProcess, with_retries};
use crate::certs::{Ca, Validity, write};

/// The RabbitMQ start script that runs the node in the foreground as the caller.
const PROGRAM: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
/// RabbitMQ boots in about 10 seconds on an idle machine; CI machines are not idle.
const READY_WITHIN: Duration = Duration::from_secs(120);
/// Attempts at finding ports the node can bind.
const ATTEMPTS: usize = 3;

/// The user the probe logs in as.
pub const USER: &str = "probe";
/// Its password.
pub const PASSWORD: &str = "probe-secret-1";
/// A vhost the user may open.
pub const VHOST: &str = "orders";
/// A vhost that exists but the user may not open.
pub const FORBIDDEN_VHOST: &str = "billing";
/// The TLS name answered with an expired certificate.
pub const EXPIRED_NAME: &str = "expired.localhost";
/// The TLS name answered with a certificate that expires in 5 days.
pub const EXPIRING_NAME: &str = "expiring.localhost";

/// A private RabbitMQ node.
pub struct RabbitMq {
    /// The AMQP (plaintext) port.
    pub amqp_port: u16,
    /// The AMQPS (TLS) port.
    pub amqps_port: u16,
    /// The PEM file of the CA that issued its certificates.
    pub ca_file: PathBuf,
    process: BrokerProcess,
}

static SHARED: OnceCell<RabbitMq> = OnceCell::const_new();

/// RabbitMQ's `rabbit_password_hashing_sha256`: base64(salt ++ sha256(salt ++ password)).
fn password_hash(password: &str) -> String {
    let salt: [u8; 4] = rand_salt();
    let mut input = salt.to_vec();
    input.extend_from_slice(password.as_bytes());
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &input);
    let mut out = salt.to_vec();
    out.extend_from_slice(digest.as_ref());
    base64::engine::general_purpose::STANDARD.encode(out)
}

fn rand_salt() -> [u8; 4] {
    let mut salt = [0u8; 4];
    let _ = aws_lc_rs::rand::fill(&mut salt);
    salt
}

fn definitions() -> String {
    format!(
        r#"{{"users":[{{"name":"{USER}","password_hash":"{}","hashing_algorithm":"rabbit_password_hashing_sha256","tags":""}}],
"vhosts":[{{"name":"/"}},{{"name":"{VHOST}"}},{{"name":"{FORBIDDEN_VHOST}"}}],
"permissions":[{{"user":"{USER}","vhost":"{VHOST}","configure":".*","write":".*","read":".*"}}]}}"#,
        password_hash(PASSWORD)
    )
}

/// Erlang's string syntax for a path.
fn erl(path: &std::path::Path) -> String {
    format!(
        "\"{}\"",
        path.display()
            .to_string()
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
    )
}

impl RabbitMq {
    /// The node shared by every test of this binary, started on first use; it stops
    /// when the test process exits.
    pub async fn shared() -> Result<&'static RabbitMq, BrokerError> {
        SHARED.get_or_try_init(RabbitMq::start).await
    }

    /// Starts a new node on free ports.
    pub async fn start() -> Result<RabbitMq, BrokerError> {
        with_retries(ATTEMPTS, RabbitMq::try_start).await
    }

    async fn try_start() -> Result<RabbitMq, BrokerError> {
        let dir = tempfile::tempdir()?;
        let d = dir.path().to_owned();
        let ca = Ca::root("RabbitMQ Test Root")?;
        let ca_file = d.join("ca.pem");
        write(&ca_file, &ca.pem)?;
        let mut certs = Vec::new();
        for (stem, name, validity) in [
            ("server", "localhost", Validity::current()),
            ("expired", EXPIRED_NAME, Validity::expired()),
            ("expiring", EXPIRING_NAME, Validity::expiring_in(5)),
        ] {
            certs.push(ca.leaf(&[name], validity)?.write(&d, stem)?);
        }
        let [amqp_port, amqps_port, dist_port, epmd_port] = [
            crate::free_port()?,
            crate::free_port()?,
            crate::free_port()?,
            crate::free_port()?,
        ];
        write(
            &d.join("rabbitmq.conf"),
            &format!(
                "listeners.tcp.default = 127.0.0.1:{amqp_port}\nlisteners.ssl.default = 127.0.0.1:{amqps_port}\nloopback_users = none\nload_definitions = {}\n",
                d.join("definitions.json").display()
            ),
        )?;
        write(&d.join("definitions.json"), &definitions())?;
        let sni = |name: &str, (cert, key): &(PathBuf, PathBuf)| {
            format!(
                "{{\"{name}\", [{{certfile, {}}}, {{keyfile, {}}}]}}",
                erl(cert),
                erl(key)
            )
        };
        write(
            &d.join("advanced.config"),
            &format!(
                "[{{rabbit, [{{ssl_options, [{{certfile, {}}}, {{keyfile, {}}}, {{verify, verify_none}}, {{fail_if_no_peer_cert, false}}, {{sni_hosts, [{}, {}]}}]}}]}}].\n",
                erl(&certs[0].0),
                erl(&certs[0].1),
                sni(EXPIRED_NAME, &certs[1]),
                sni(EXPIRING_NAME, &certs[2]),
            ),
        )?;
        write(&d.join("enabled_plugins"), "[].\n")?;
        write(&d.join("rabbitmq-env.conf"), "")?;
        let path = |p: &str| d.join(p).display().to_string();
        let node = format!("depprobe-{}-{amqp_port}@localhost", std::process::id());
        let env = [
            ("HOME", path("")),
            ("RABBITMQ_CONF_ENV_FILE", path("rabbitmq-env.conf")),
            ("RABBITMQ_NODENAME", node),
            ("RABBITMQ_NODE_PORT", amqp_port.to_string()),
            ("RABBITMQ_DIST_PORT", dist_port.to_string()),
            ("ERL_EPMD_PORT", epmd_port.to_string()),
            ("ERL_EPMD_ADDRESS", "127.0.0.1".to_owned()),
            ("RABBITMQ_MNESIA_BASE", path("mnesia")),
            ("RABBITMQ_LOG_BASE", path("logs")),
            ("RABBITMQ_LOGS", "-".to_owned()),
            ("RABBITMQ_CONFIG_FILE", path("rabbitmq.conf")),
            ("RABBITMQ_ADVANCED_CONFIG_FILE", path("advanced.config")),
            ("RABBITMQ_ENABLED_PLUGINS_FILE", path("enabled_plugins")),
        ];
        let cleanup = format!("epmd -port {epmd_port} -kill >/dev/null 2>&1");
        let mut process = BrokerProcess::spawn(PROGRAM, &[], &env, dir, &cleanup)?;
        process
            .wait_ports(&[amqp_port, amqps_port], READY_WITHIN)
            .await?;
        Ok(RabbitMq {
            amqp_port,
            amqps_port,
            ca_file,
            process,
        })
    }

    /// The end of the node's log, for a failing test's message.
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }
}
