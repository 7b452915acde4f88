//! Debian's Mosquitto (`mosquitto -c`), one per test: a TLS listener with a
//! certificate made for the case (when given), a plaintext listener, and a password
//! file written with `mosquitto_passwd`.

use std::process::Command;
use std::time::Duration;

use super::process::{BrokerError, BrokerProcess, with_retries};
use crate::certs::{Identity, write};

/// The broker program.
const PROGRAM: &str = "/usr/sbin/mosquitto";
/// Mosquitto starts in milliseconds; this is for a loaded CI machine.
const READY_WITHIN: Duration = Duration::from_secs(30);
/// Attempts at finding ports the broker can bind.
const ATTEMPTS: usize = 3;

/// How a [`Mosquitto`] is set up.
#[derive(Default)]
pub struct MosquittoOptions {
    /// A TLS listener with this certificate.
    pub identity: Option<Identity>,
    /// Require this user and password (none: anonymous clients are accepted).
    pub user: Option<(String, String)>,
    /// Refuse clients that send an empty client id.
    pub refuse_empty_client_id: bool,
}

/// A running Mosquitto; stopped when dropped.
pub struct Mosquitto {
    /// The TLS listener's port (0 without a certificate).
    pub tls_port: u16,
    /// The plaintext listener's port.
    pub plain_port: u16,
    process: BrokerProcess,
}

impl Mosquitto {
    /// Starts a broker set up as `options` says.
    pub async fn start(options: &MosquittoOptions) -> Result<Mosquitto, BrokerError> {
        with_retries(ATTEMPTS, || Mosquitto::try_start(options)).await
    }

    async fn try_start(options: &MosquittoOptions) -> Result<Mosquitto, BrokerError> {
        let dir = tempfile::tempdir()?;
        let d = dir.path().to_owned();
        // Run as root (CI containers), Mosquitto would switch to its own user, which
        // cannot read the test's files.
        let mut conf = String::from("user root\nper_listener_settings false\n");
        match &options.user {
            Some((user, pass)) => {
                let file = d.join("passwd");
                let out = Command::new("mosquitto_passwd")
                    .args(["-b", "-c"])
                    .arg(&file)
                    .args([user, pass])
                    .output()
                    .map_err(|_| BrokerError::Missing {
                        program: "mosquitto_passwd".into(),
                    })?;
                if !out.status.success() {
                    return Err(BrokerError::Io(std::io::Error::other(format!(
                        "mosquitto_passwd failed: {}",
                        String::from_utf8_lossy(&out.stderr)
                    ))));
                }
                conf.push_str(&format!(
                    "allow_anonymous false\npassword_file {}\n",
                    file.display()
                ));
            }
            None => conf.push_str("allow_anonymous true\n"),
        }
        if options.refuse_empty_client_id {
            conf.push_str("allow_zero_length_clientid false\n");
        }
        let plain_port = crate::free_port()?;
        let mut tls_port = 0;
        let mut ports = vec![plain_port];
        if let Some(id) = &options.identity {
            tls_port = crate::free_port()?;
            ports.push(tls_port);
            let (cert, key) = id.write(&d, "server")?;
            conf.push_str(&format!(
                "listener {tls_port} 127.0.0.1\ncertfile {}\nkeyfile {}\n",
                cert.display(),
                key.display()
            ));
        }
        conf.push_str(&format!("listener {plain_port} 127.0.0.1\n"));
        let conf_file = d.join("mosquitto.conf");
        write(&conf_file, &conf)?;
        let args = vec!["-c".to_owned(), conf_file.display().to_string()];
        let mut process = BrokerProcess::spawn(PROGRAM, &args, &[], dir, "")?;
        process.wait_ports(&ports, READY_WITHIN).await?;
        Ok(Mosquitto {
            tls_port,
            plain_port,
            process,
        })
    }

    /// The end of its log, for a failing test's message.
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }
}
