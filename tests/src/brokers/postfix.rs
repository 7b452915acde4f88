//! Debian's Postfix, one instance per test: its own configuration, queue and data
//! directories in a temporary directory, its `master` run in the foreground, and
//! three SMTP listeners: STARTTLS offered (`submission`), TLS from the first byte
//! (`smtps`), and plaintext without STARTTLS. Logins go through Cyrus SASL with a
//! `sasldb` written by `saslpasswd2`, and are only accepted over TLS.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::process::{BrokerError, BrokerProcess, with_retries};
use crate::certs::{Identity, write};

/// Postfix's master daemon.
const PROGRAM: &str = "/usr/lib/postfix/sbin/master";
/// Postfix starts in a second; this is for a loaded CI machine.
const READY_WITHIN: Duration = Duration::from_secs(30);
/// Attempts at finding ports Postfix can bind.
const ATTEMPTS: usize = 3;
/// The services `smtpd` needs besides its listeners.
const SERVICES: &str = "anvil unix - - n - 1 anvil
postlog unix-dgram n - n - 1 postlogd
proxymap unix - - n - - proxymap
rewrite unix - - n - - trivial-rewrite
cleanup unix n - n - 0 cleanup
tlsmgr unix - - n 1000? 1 tlsmgr
";

/// A running Postfix; stopped when dropped.
pub struct Postfix {
    /// The listener that offers STARTTLS.
    pub starttls_port: u16,
    /// The listener that speaks TLS from the first byte.
    pub smtps_port: u16,
    /// The listener without TLS.
    pub plain_port: u16,
    /// One more STARTTLS listener per extra identity, in order
    /// ([`Postfix::start_presenting`]).
    pub extra_ports: Vec<u16>,
    process: BrokerProcess,
}

fn run(cmd: &mut Command, input: Option<&str>) -> Result<(), BrokerError> {
    let program = format!("{:?}", cmd.get_program());
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|_| BrokerError::Missing {
            program: program.clone(),
        })?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(text.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(BrokerError::Io(std::io::Error::other(format!(
            "{program} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ))));
    }
    Ok(())
}

fn main_cf(d: &Path, cert: &Path, key: &Path) -> String {
    let d = d.display();
    format!(
        "compatibility_level = 3.6
queue_directory = {d}/queue
data_directory = {d}/data
mail_owner = postfix
myhostname = localhost
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
maillog_file = /dev/stdout
smtpd_tls_cert_file = {}
smtpd_tls_key_file = {}
smtpd_tls_security_level = may
smtpd_tls_auth_only = yes
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = cyrus
smtpd_sasl_path = smtpd
smtpd_sasl_local_domain = localhost
cyrus_sasl_config_path = {d}/sasl
",
        cert.display(),
        key.display()
    )
}

impl Postfix {
    /// Starts an instance presenting `identity`, with the user `user` and its
    /// password.
    pub async fn start(
        identity: &Identity,
        user: &str,
        password: &str,
    ) -> Result<Postfix, BrokerError> {
        with_retries(ATTEMPTS, || {
            Postfix::try_start(identity, &[], user, password)
        })
        .await
    }

    /// Starts one instance with a STARTTLS listener per identity of `each`
    /// (`extra_ports`, in order) besides the usual three (which present the first),
    /// so that a matrix of certificates costs one Postfix.
    pub async fn start_presenting(each: &[Identity]) -> Result<Postfix, BrokerError> {
        let Some(first) = each.first() else {
            return Err(BrokerError::Io(std::io::Error::other("no identity given")));
        };
        with_retries(ATTEMPTS, || {
            Postfix::try_start(first, each, "probe", "unused")
        })
        .await
    }

    async fn try_start(
        identity: &Identity,
        extra: &[Identity],
        user: &str,
        password: &str,
    ) -> Result<Postfix, BrokerError> {
        if !Path::new(PROGRAM).is_file() {
            return Err(BrokerError::Missing {
                program: PROGRAM.into(),
            });
        }
        let dir = tempfile::tempdir()?;
        let d = dir.path().to_owned();
        // Postfix's daemons run as `postfix` and must reach the SASL database.
        run(Command::new("chmod").arg("755").arg(&d), None)?;
        for sub in ["queue/pid", "queue/private", "queue/public", "data", "sasl"] {
            std::fs::create_dir_all(d.join(sub))?;
        }
        for owned in ["queue/private", "queue/public", "data"] {
            run(
                Command::new("chown").arg("postfix").arg(d.join(owned)),
                None,
            )?;
        }
        let (cert, key) = identity.write(&d, "server")?;
        let sasldb = d.join("sasldb2");
        write(
            &d.join("sasl/smtpd.conf"),
            &format!(
                "pwcheck_method: auxprop\nauxprop_plugin: sasldb\nmech_list: PLAIN LOGIN\nsasldb_path: {}\n",
                sasldb.display()
            ),
        )?;
        run(
            Command::new("saslpasswd2")
                .args(["-p", "-c", "-u", "localhost", "-f"])
                .arg(&sasldb)
                .arg(user),
            Some(password),
        )?;
        run(Command::new("chown").arg("postfix").arg(&sasldb), None)?;
        write(&d.join("main.cf"), &main_cf(&d, &cert, &key))?;
        let ports = [
            crate::free_port()?,
            crate::free_port()?,
            crate::free_port()?,
        ];
        let [starttls_port, smtps_port, plain_port] = ports;
        let mut listeners = String::new();
        let mut extra_ports = Vec::new();
        for (i, each) in extra.iter().enumerate() {
            let (cert, key) = each.write(&d, &format!("cell{i}"))?;
            let port = crate::free_port()?;
            listeners.push_str(&format!(
                "127.0.0.1:{port} inet n - n - - smtpd -o smtpd_tls_cert_file={} -o smtpd_tls_key_file={}\n",
                cert.display(),
                key.display()
            ));
            extra_ports.push(port);
        }
        write(
            &d.join("master.cf"),
            &format!(
                "127.0.0.1:{starttls_port} inet n - n - - smtpd\n127.0.0.1:{smtps_port} inet n - n - - smtpd -o smtpd_tls_wrappermode=yes\n127.0.0.1:{plain_port} inet n - n - - smtpd -o smtpd_tls_security_level=none -o smtpd_sasl_auth_enable=no\n{listeners}{SERVICES}"
            ),
        )?;
        let args = vec!["-c".to_owned(), d.display().to_string(), "-d".to_owned()];
        let mut process = BrokerProcess::spawn(PROGRAM, &args, &[], dir, "")?;
        let all: Vec<u16> = ports.iter().chain(&extra_ports).copied().collect();
        process.wait_ports(&all, READY_WITHIN).await?;
        Ok(Postfix {
            starttls_port,
            smtps_port,
            plain_port,
            extra_ports,
            process,
        })
    }

    /// The end of its log, for a failing test's message.
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }
}
