//! Debian's NATS server (`nats-server`), one per test on a free loopback port, with
//! TLS from a certificate made for the case and a user with a password.

use std::time::Duration;

use super::process::{BrokerError, BrokerProcess, with_retries};
use crate::certs::Identity;

/// The server program.
const PROGRAM: &str = "/usr/sbin/nats-server";
/// NATS starts in milliseconds; this is for a loaded CI machine.
const READY_WITHIN: Duration = Duration::from_secs(30);
/// Attempts at finding a port the server can bind.
const ATTEMPTS: usize = 3;

/// How a [`NatsServer`] is set up.
#[derive(Default)]
pub struct NatsOptions {
    /// Require TLS with this certificate (none: plaintext only).
    pub identity: Option<Identity>,
    /// Require this user and password.
    pub user: Option<(String, String)>,
}

/// A running `nats-server`; stopped when dropped.
pub struct NatsServer {
    /// Its client port on 127.0.0.1.
    pub port: u16,
    process: BrokerProcess,
}

impl NatsServer {
    /// Starts a server set up as `options` says.
    pub async fn start(options: &NatsOptions) -> Result<NatsServer, BrokerError> {
        with_retries(ATTEMPTS, || NatsServer::try_start(options)).await
    }

    async fn try_start(options: &NatsOptions) -> Result<NatsServer, BrokerError> {
        let dir = tempfile::tempdir()?;
        let port = crate::free_port()?;
        let mut args: Vec<String> = ["-a", "127.0.0.1", "-p", &port.to_string()]
            .iter()
            .map(|s| s.to_string())
            .collect();
        if let Some(id) = &options.identity {
            let (cert, key) = id.write(dir.path(), "server")?;
            args.extend([
                "--tls".into(),
                "--tlscert".into(),
                cert.display().to_string(),
                "--tlskey".into(),
                key.display().to_string(),
            ]);
        }
        if let Some((user, pass)) = &options.user {
            args.extend(["--user".into(), user.clone(), "--pass".into(), pass.clone()]);
        }
        let mut process = BrokerProcess::spawn(PROGRAM, &args, &[], dir, "")?;
        process.wait_ports(&[port], READY_WITHIN).await?;
        Ok(NatsServer { port, process })
    }

    /// The end of its log, for a failing test's message.
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }
}
