//! The driver client: its options from the URL and the probe's settings, TLS
//! files as the driver wants them, and the watch as its SDAM event handler.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mongodb::Client;
use mongodb::event::EventHandler;
use mongodb::options::{ClientOptions, Tls, TlsOptions};

use depprobe_config::Secret;
use super::spec::MongoUrl;

use super::classify::driver_error;
use super::phase_for;
use super::watch::ReplicaSetWatch;
use crate::run::ProbeError;
use crate::taxonomy::{ErrorType, Phase};

/// How the probe's driver client is made.
pub(super) struct DriverSettings {
    /// The connection string (with its password, if written there).
    pub url: MongoUrl,
    /// A user name that overrides the URL's.
    pub username: Option<String>,
    /// TLS files, when the URL turns TLS on.
    pub tls: Option<DriverTls>,
    /// `serverSelectionTimeoutMS`.
    pub server_selection_timeout: Duration,
    /// `connectTimeoutMS`: connect, TLS and `hello` to one member.
    pub connect_timeout: Duration,
    /// `heartbeatFrequencyMS`.
    pub heartbeat_frequency: Duration,
    /// `maxIdleTimeMS`: short, so that each run logs in afresh.
    pub pool_idle: Duration,
}

/// The driver's TLS files.
pub(super) struct DriverTls {
    /// The roots the probe trusts.
    pub trust: Trust,
    /// The client certificate and key.
    pub client: Option<ClientCert>,
}

/// What the driver is made to trust: what depprobe's own dial trusts. The driver
/// takes one CA file and trusts only it (Mozilla's roots when there is none), so
/// the system's roots and the configured CA file are written into one bundle for it.
pub(super) enum Trust {
    /// `tls.system_roots: false`: this file only.
    Only(PathBuf),
    /// The system's roots, and this file when set.
    System(Option<PathBuf>),
}

/// The client certificate, as the driver wants it: one PEM file with both.
pub(super) enum ClientCert {
    /// Certificate and key in one file already.
    OneFile(PathBuf),
    /// Separate files, joined into a private temporary file while the client is built.
    Pair {
        /// Certificate chain (PEM).
        cert: PathBuf,
        /// Private key (PEM).
        key: PathBuf,
    },
}

impl DriverSettings {
    /// A new client reporting to `watch`, logging in with `password`.
    pub async fn connect(
        &self,
        password: Option<&Secret>,
        watch: Arc<ReplicaSetWatch>,
    ) -> Result<Client, ProbeError> {
        let setup = |e: mongodb::error::Error| {
            let (class, message) = match e.kind.as_ref() {
                mongodb::error::ErrorKind::InvalidTlsConfig { message, .. } => (
                    ErrorType::CredentialInvalid,
                    format!("the TLS files cannot be used: {message}"),
                ),
                _ => driver_error(&e).unwrap_or((
                    ErrorType::UnexpectedResponse,
                    format!("driver setup: {}", e.kind),
                )),
            };
            ProbeError::new(class, phase_for(class, Phase::Auth), message)
        };
        let mut opts = ClientOptions::parse(self.url.expose())
            .await
            .map_err(setup)?;
        opts.app_name.get_or_insert_with(|| "depprobe".to_owned());
        opts.connect_timeout = Some(self.connect_timeout);
        opts.server_selection_timeout = Some(self.server_selection_timeout);
        opts.heartbeat_freq = Some(self.heartbeat_frequency);
        opts.max_idle_time = Some(self.pool_idle);
        if self.username.is_some() || password.is_some() {
            let mut cred = opts.credential.take().unwrap_or_default();
            if let Some(u) = &self.username {
                cred.username = Some(u.clone());
            }
            if let Some(p) = password {
                cred.password = Some(p.expose().to_owned());
            }
            opts.credential = Some(cred);
        }
        // The joined files only need to exist while the client is built: the driver
        // reads them then.
        let mut _joined: Option<tempfile::NamedTempFile> = None;
        let mut _bundle: Option<tempfile::NamedTempFile> = None;
        if let Some(t) = &self.tls {
            let mut o = TlsOptions::default();
            o.ca_file_path = match &t.trust {
                Trust::Only(file) => Some(file.clone()),
                Trust::System(extra) => match roots_bundle(extra.as_deref())? {
                    Some(file) => {
                        let path = file.path().to_owned();
                        _bundle = Some(file);
                        Some(path)
                    }
                    None => extra.clone(),
                },
            };
            o.cert_key_file_path = match &t.client {
                None => None,
                Some(ClientCert::OneFile(p)) => Some(p.clone()),
                Some(ClientCert::Pair { cert, key }) => {
                    let file = join_pem(cert, key)?;
                    let path = file.path().to_owned();
                    _joined = Some(file);
                    Some(path)
                }
            };
            opts.tls = Some(Tls::Enabled(o));
        }
        opts.sdam_event_handler = Some(EventHandler::callback(move |event| watch.handle(event)));
        Client::with_options(opts).map_err(setup)
    }
}

/// Joins a certificate file and a key file into one private temporary file.
fn join_pem(cert: &Path, key: &Path) -> Result<tempfile::NamedTempFile, ProbeError> {
    use std::io::Write;
    let fail = |what: String| ProbeError::new(ErrorType::CredentialInvalid, Phase::Tls, what);
    let mut pem =
        std::fs::read(cert).map_err(|e| fail(format!("cannot read {}: {e}", cert.display())))?;
    pem.push(b'\n');
    pem.extend(
        std::fs::read(key).map_err(|e| fail(format!("cannot read {}: {e}", key.display())))?,
    );
    let mut file = tempfile::NamedTempFile::new()
        .map_err(|e| fail(format!("cannot write a temporary file: {e}")))?;
    file.write_all(&pem)
        .map_err(|e| fail(format!("cannot write a temporary file: {e}")))?;
    Ok(file)
}

/// The system's roots and the certificates of `extra`, in one temporary PEM file;
/// `None` when the system has no roots (the driver's own Mozilla roots then stand in
/// for them, as they do in depprobe's dial).
fn roots_bundle(extra: Option<&Path>) -> Result<Option<tempfile::NamedTempFile>, ProbeError> {
    use base64::Engine;
    use std::io::Write;
    let system = rustls_native_certs::load_native_certs().certs;
    if system.is_empty() {
        return Ok(None);
    }
    let fail = |what: String| ProbeError::new(ErrorType::CredentialInvalid, Phase::Tls, what);
    let mut pem = String::new();
    for cert in &system {
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        let b64 = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    if let Some(path) = extra {
        let text = std::fs::read_to_string(path)
            .map_err(|e| fail(format!("cannot read {}: {e}", path.display())))?;
        pem.push_str(&text);
        pem.push('\n');
    }
    let mut file = tempfile::NamedTempFile::new()
        .map_err(|e| fail(format!("cannot write a temporary file: {e}")))?;
    file.write_all(pem.as_bytes())
        .map_err(|e| fail(format!("cannot write a temporary file: {e}")))?;
    Ok(Some(file))
}
