//! A MySQL 8.0 server for the tests, of our own: no MySQL server can be installed
//! where the tests run (Debian ships MariaDB only, which has no
//! `caching_sha2_password`), so this one speaks MySQL 8.0's protocol, as MySQL 8.0
//! speaks it, for what a probe does: the greeting, the SSL request and a real
//! rustls handshake with a certificate of the case, the login with
//! `caching_sha2_password` (fast path from the cache, full path with the password in
//! cleartext over TLS or RSA-OAEP encrypted under the server's key over plaintext,
//! an auth switch from `mysql_native_password`), access denied (1045, MySQL's exact
//! message), and the statements of the probe's role facts and query (`sql`).
//!
//! Packets are `mysql_common`'s wherever it can write them (greeting, auth switch,
//! AuthMoreData, ERR, column definitions) and read them (SSL request, handshake
//! response); OK, EOF and text rows are written here and read back with its readers
//! in the unit tests. Client packets out of sequence, or otherwise against the
//! protocol, are recorded as violations: a test that logs in asserts there are none.
//!
//! It binds `127.0.0.1:0`, is ready when [`Mysql8::start`] returns, and stops (with
//! every session) when dropped. It records each login's path and each statement, so a
//! test proves which path the client took, not only that it got in. [`Hostile`]
//! makes it misbehave at the login, for the probe's bounds.

#![deny(missing_docs, clippy::unwrap_used, clippy::expect_used)]

pub mod auth;
pub mod sql;
pub mod wire;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use mysql_common::constants::CapabilityFlags;
use mysql_common::io::ParseBuf;
use mysql_common::packets::{
    AuthMoreData, AuthPlugin, AuthSwitchRequest, HandshakePacket, HandshakeResponse, SslRequest,
};
use rustls::ServerConfig;
use rustls::server::NoServerSessionStorage;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::certs::Identity;
use crate::servers::Task;
use auth::RsaKey;
pub use sql::{Facts, ReplicaStatus};
use wire::{Io, SessionError, Wire};

/// The most logins, statements and violations kept (a test needs a handful).
const MAX_RECORDS: usize = 1000;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum Mysql8Error {
    /// Binding the port.
    #[error("binding: {0}")]
    Io(#[from] std::io::Error),
    /// The TLS configuration was refused.
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// The RSA key pair could not be made.
    #[error("{0}")]
    Key(#[from] auth::KeyError),
}

/// The plugin the greeting names (MySQL's `default_authentication_plugin`); the
/// account itself always uses `caching_sha2_password`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefaultPlugin {
    /// MySQL 8.0's default: no auth switch.
    CachingSha2Password,
    /// As a server configured for older clients: the login switches to
    /// `caching_sha2_password` (with a new nonce) after the client's first answer.
    MysqlNativePassword,
}

impl DefaultPlugin {
    fn name(self) -> &'static [u8] {
        match self {
            DefaultPlugin::CachingSha2Password => b"caching_sha2_password",
            DefaultPlugin::MysqlNativePassword => b"mysql_native_password",
        }
    }
}

/// A login that misbehaves, to test the client's bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hostile {
    /// Answers every client packet of the login with AuthMoreData "perform full
    /// authentication" (0x04), forever.
    AuthMoreDataForever,
    /// Answers every client packet of the login with an auth switch request to
    /// `caching_sha2_password` with a new nonce, forever.
    AuthSwitchForever,
    /// Answers the handshake response with a packet header announcing 16 MiB - 1
    /// bytes, and nothing after it.
    HugePacket,
    /// Reads the handshake response and answers nothing.
    Silent,
    /// Answers the public-key request with a PEM `PUBLIC KEY` whose DER stops after
    /// one byte.
    TruncatedKey,
    /// Answers the public-key request with a well-formed RSA key whose exponent is
    /// 16 KiB long (encrypting with it costs 131,072 modular squarings).
    HugeExponentKey,
    /// Switches the login to `mysql_clear_password`, which asks for the password as
    /// it is, whether or not the session is encrypted; a password that comes back is
    /// recorded ([`AuthPath::ClearPasswordSent`]) and denied (1045).
    ClearPassword,
}

/// How a server behaves.
#[derive(Clone)]
pub struct Mysql8Spec {
    /// The version string of the greeting (`8.0.36`).
    pub version: String,
    /// The certificate chain and key; `None` is a server without TLS
    /// (`have_ssl=DISABLED`: no `CLIENT_SSL` in the greeting).
    pub tls: Option<Identity>,
    /// The plugin the greeting names.
    pub default_plugin: DefaultPlugin,
    /// The one account's user name.
    pub user: String,
    /// Its password.
    pub password: String,
    /// Whether the account is in the `caching_sha2_password` cache from the start
    /// (the fast path); a successful full login puts it there, as in MySQL.
    pub cached: bool,
    /// The role facts.
    pub facts: Facts,
    /// Misbehaviour at the login, if any.
    pub hostile: Option<Hostile>,
}

impl Default for Mysql8Spec {
    /// MySQL 8.0.36 without TLS, `caching_sha2_password`, user `probe` with an
    /// empty password, not cached, a writable primary.
    fn default() -> Self {
        Mysql8Spec {
            version: "8.0.36".into(),
            tls: None,
            default_plugin: DefaultPlugin::CachingSha2Password,
            user: "probe".into(),
            password: String::new(),
            cached: false,
            facts: Facts::default(),
            hostile: None,
        }
    }
}

/// How a login went, as the server saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthPath {
    /// The scramble matched the cache: AuthMoreData 0x03, then OK.
    Fast,
    /// Full authentication, the password in cleartext over TLS.
    FullOverTls,
    /// Full authentication over plaintext: the client asked for the public key
    /// (0x02) and sent the password RSA-encrypted.
    FullWithPublicKey,
    /// Access denied (error 1045).
    Denied,
    /// The client sent its password in answer to a switch to `mysql_clear_password`.
    ClearPasswordSent,
}

/// One login.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Login {
    /// The user the client named.
    pub user: String,
    /// Whether the session was encrypted.
    pub tls: bool,
    /// The plugin the client's handshake response named.
    pub client_plugin: String,
    /// Whether the server switched the client to another plugin.
    pub switched: bool,
    /// How it went.
    pub path: AuthPath,
}

#[derive(Default)]
struct Records {
    facts: Facts,
    cache: BTreeSet<String>,
    logins: Vec<Login>,
    statements: Vec<String>,
    violations: Vec<String>,
}

fn push<T>(list: &mut Vec<T>, item: T) {
    if list.len() < MAX_RECORDS {
        list.push(item);
    }
}

struct Shared {
    version: String,
    version_number: (u16, u16, u16),
    default_plugin: DefaultPlugin,
    user: String,
    stored: [u8; 32],
    hostile: Option<Hostile>,
    rsa: RsaKey,
    next_id: AtomicU32,
    records: Mutex<Records>,
}

impl Shared {
    fn records(&self) -> MutexGuard<'_, Records> {
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running server; stopped, with every session, when dropped.
pub struct Mysql8 {
    addr: SocketAddr,
    shared: Arc<Shared>,
    _task: Task,
}

impl Mysql8 {
    /// Binds `127.0.0.1:0` and serves `spec` until dropped.
    pub async fn start(spec: &Mysql8Spec) -> Result<Mysql8, Mysql8Error> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let acceptor = match &spec.tls {
            Some(identity) => Some(TlsAcceptor::from(Arc::new(tls_config(identity)?))),
            None => None,
        };
        let mut cache = BTreeSet::new();
        if spec.cached {
            cache.insert(spec.user.clone());
        }
        let shared = Arc::new(Shared {
            version: spec.version.clone(),
            version_number: version_number(&spec.version),
            default_plugin: spec.default_plugin,
            user: spec.user.clone(),
            stored: auth::stored(spec.password.as_bytes()),
            hostile: spec.hostile,
            rsa: RsaKey::generate()?,
            next_id: AtomicU32::new(8),
            records: Mutex::new(Records {
                facts: spec.facts.clone(),
                cache,
                ..Default::default()
            }),
        });
        let task = tokio::spawn(accept(listener, acceptor, shared.clone()));
        Ok(Mysql8 {
            addr,
            shared,
            _task: Task::new(task),
        })
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Every login so far, oldest first.
    pub fn logins(&self) -> Vec<Login> {
        self.shared.records().logins.clone()
    }

    /// Every statement run so far (`COM_QUERY` text), oldest first.
    pub fn statements(&self) -> Vec<String> {
        self.shared.records().statements.clone()
    }

    /// Every protocol violation a client committed so far.
    pub fn violations(&self) -> Vec<String> {
        self.shared.records().violations.clone()
    }

    /// Replaces the role facts, from the next statement on.
    pub fn set_facts(&self, facts: Facts) {
        self.shared.records().facts = facts;
    }

    /// Empties the `caching_sha2_password` cache, as `FLUSH PRIVILEGES` does: the
    /// next login takes the full path.
    pub fn flush_cache(&self) {
        self.shared.records().cache.clear();
    }
}

fn tls_config(identity: &Identity) -> Result<ServerConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(identity.chain.clone(), identity.key())?;
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(config)
}

/// `(8, 0, 36)` from `8.0.36` (or `8.0.36-log`); `(8, 0, 0)` when unreadable.
fn version_number(version: &str) -> (u16, u16, u16) {
    let mut parts = version
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u16>().ok());
    match (parts.next(), parts.next(), parts.next()) {
        (Some(Some(a)), Some(Some(b)), Some(Some(c))) => (a, b, c),
        _ => (8, 0, 0),
    }
}

/// Accepts connections; each session runs in the set, dropped (aborted) with it.
async fn accept(listener: TcpListener, acceptor: Option<TlsAcceptor>, shared: Arc<Shared>) {
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else { continue };
                let (acceptor, shared) = (acceptor.clone(), shared.clone());
                sessions.spawn(async move {
                    if let Err(SessionError::Protocol(what)) = session(tcp, acceptor, &shared).await {
                        push(&mut shared.records().violations, what);
                    }
                });
            }
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
}

/// The capabilities MySQL 8.0 announces, less those this server does not implement
/// (compression, optional result-set metadata, query attributes); `CLIENT_SSL` when
/// it has a certificate.
fn capabilities(tls: bool) -> CapabilityFlags {
    let mut c = CapabilityFlags::CLIENT_LONG_PASSWORD
        | CapabilityFlags::CLIENT_FOUND_ROWS
        | CapabilityFlags::CLIENT_LONG_FLAG
        | CapabilityFlags::CLIENT_CONNECT_WITH_DB
        | CapabilityFlags::CLIENT_NO_SCHEMA
        | CapabilityFlags::CLIENT_ODBC
        | CapabilityFlags::CLIENT_IGNORE_SPACE
        | CapabilityFlags::CLIENT_PROTOCOL_41
        | CapabilityFlags::CLIENT_INTERACTIVE
        | CapabilityFlags::CLIENT_IGNORE_SIGPIPE
        | CapabilityFlags::CLIENT_TRANSACTIONS
        | CapabilityFlags::CLIENT_RESERVED
        | CapabilityFlags::CLIENT_SECURE_CONNECTION
        | CapabilityFlags::CLIENT_MULTI_STATEMENTS
        | CapabilityFlags::CLIENT_MULTI_RESULTS
        | CapabilityFlags::CLIENT_PS_MULTI_RESULTS
        | CapabilityFlags::CLIENT_PLUGIN_AUTH
        | CapabilityFlags::CLIENT_CONNECT_ATTRS
        | CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
        | CapabilityFlags::CLIENT_CAN_HANDLE_EXPIRED_PASSWORDS
        | CapabilityFlags::CLIENT_SESSION_TRACK
        | CapabilityFlags::CLIENT_DEPRECATE_EOF
        | CapabilityFlags::CLIENT_REMEMBER_OPTIONS;
    if tls {
        c |= CapabilityFlags::CLIENT_SSL;
    }
    c
}

/// One connection: greeting, maybe TLS, login, then statements until the client
/// quits or hangs up.
async fn session(
    tcp: TcpStream,
    acceptor: Option<TlsAcceptor>,
    shared: &Shared,
) -> Result<(), SessionError> {
    let nonce = auth::nonce();
    let mut wire = Wire::new(tcp);
    let mut scramble_2 = nonce[8..].to_vec();
    scramble_2.push(0);
    let mut scramble_1 = [0u8; 8];
    scramble_1.copy_from_slice(&nonce[..8]);
    let greeting = HandshakePacket::new(
        10,
        shared.version.as_bytes(),
        shared.next_id.fetch_add(1, Ordering::Relaxed),
        scramble_1,
        Some(scramble_2),
        capabilities(acceptor.is_some()),
        255, // utf8mb4_0900_ai_ci
        wire::STATUS,
        Some(shared.default_plugin.name()),
    );
    wire.send(&greeting).await?;

    let first = wire.read().await?;
    let asks_tls = first.len() == 32
        && ParseBuf(&first)
            .parse::<SslRequest>(())
            .is_ok_and(|r| r.capabilities().contains(CapabilityFlags::CLIENT_SSL));
    let (mut wire, tls, response): (Wire<Box<dyn Io>>, bool, Vec<u8>) = if asks_tls {
        let Some(acceptor) = acceptor else {
            return Err(SessionError::Protocol(
                "an SSL request to a server whose greeting offers no TLS".into(),
            ));
        };
        let (tcp, seq) = wire.into_parts();
        let stream = acceptor.accept(tcp).await.map_err(SessionError::Tls)?;
        let mut wire = Wire::resume(Box::new(stream) as Box<dyn Io>, seq);
        let response = wire.read().await?;
        (wire, true, response)
    } else {
        let (tcp, seq) = wire.into_parts();
        (Wire::resume(Box::new(tcp), seq), false, first)
    };
    let response: HandshakeResponse<'_> = ParseBuf(&response)
        .parse(())
        .map_err(|e| SessionError::Protocol(format!("unreadable handshake response: {e}")))?;
    let client = response.capabilities();
    if tls != client.contains(CapabilityFlags::CLIENT_SSL) {
        return Err(SessionError::Protocol(format!(
            "CLIENT_SSL is {} in the handshake response of a session {} TLS",
            client.contains(CapabilityFlags::CLIENT_SSL),
            if tls { "over" } else { "without" }
        )));
    }
    if !login(&mut wire, shared, &response, &nonce, tls).await? {
        return Ok(());
    }
    wire.write(&wire::ok(0x00, client)).await?;
    commands(&mut wire, shared, client).await
}

/// The login; `Ok(true)` when it succeeded (the OK is the caller's to send).
async fn login<S: Io>(
    wire: &mut Wire<S>,
    shared: &Shared,
    response: &HandshakeResponse<'_>,
    greeting_nonce: &[u8],
    tls: bool,
) -> Result<bool, SessionError> {
    let user = String::from_utf8_lossy(response.user()).into_owned();
    let client_plugin = response
        .auth_plugin()
        .map(|p| String::from_utf8_lossy(p.as_bytes()).into_owned())
        .unwrap_or_default();
    let mut record = Login {
        user: user.clone(),
        tls,
        client_plugin,
        switched: false,
        path: AuthPath::Denied,
    };
    if let Some(ended) = hostile_login(wire, shared, &mut record).await? {
        return Ok(ended);
    }
    let mut nonce = greeting_nonce.to_vec();
    let mut answer = response.scramble_buf().to_vec();
    if response.auth_plugin() != Some(&AuthPlugin::CachingSha2Password) {
        nonce = auth::nonce().to_vec();
        wire.send(&switch_request(&nonce)).await?;
        record.switched = true;
        answer = wire.read().await?;
    }
    let using_password = !answer.is_empty();
    let known = user == shared.user;
    let cached = shared.records().cache.contains(&user);
    let fast = known && cached && auth::scramble_matches(&shared.stored, &nonce, &answer);
    let granted = if fast {
        wire.send(&AuthMoreData::new(&[0x03][..])).await?;
        record.path = AuthPath::Fast;
        true
    } else {
        wire.send(&AuthMoreData::new(&[0x04][..])).await?;
        let password = full_login(wire, shared, &nonce, tls, &mut record).await?;
        let granted = known && password.is_some_and(|p| auth::password_matches(&shared.stored, &p));
        if granted {
            shared.records().cache.insert(user.clone());
        }
        granted
    };
    if !granted {
        record.path = AuthPath::Denied;
        let using = if using_password { "YES" } else { "NO" };
        wire.error(
            1045,
            b"28000",
            &format!("Access denied for user '{user}'@'localhost' (using password: {using})"),
        )
        .await?;
    }
    push(&mut shared.records().logins, record);
    Ok(granted)
}

/// The full path after "perform full authentication": the password, in cleartext
/// over TLS, or RSA-encrypted over plaintext (after sending the public key when the
/// client asks for it). `None` when the answer holds no password.
async fn full_login<S: Io>(
    wire: &mut Wire<S>,
    shared: &Shared,
    nonce: &[u8],
    tls: bool,
    record: &mut Login,
) -> Result<Option<Vec<u8>>, SessionError> {
    let mut answer = wire.read().await?;
    if tls {
        record.path = AuthPath::FullOverTls;
        return Ok(auth::cleartext(&answer).map(<[u8]>::to_vec));
    }
    if answer == [0x02] {
        let pem = match shared.hostile {
            Some(Hostile::TruncatedKey) => auth::truncated_key_pem(),
            Some(Hostile::HugeExponentKey) => auth::huge_exponent_key_pem(16 * 1024),
            _ => shared.rsa.public_pem().to_owned(),
        };
        wire.send(&AuthMoreData::new(pem.as_bytes())).await?;
        answer = wire.read().await?;
    }
    record.path = AuthPath::FullWithPublicKey;
    Ok(shared.rsa.decrypt_password(nonce, &answer))
}

fn switch_request(nonce: &[u8]) -> AuthSwitchRequest<'static> {
    let mut data = nonce.to_vec();
    data.push(0);
    AuthSwitchRequest::new(&b"caching_sha2_password"[..], data)
}

/// The misbehaving logins; `Some(ended)` when one ran (`ended` is whether the client
/// got in, which it never does).
async fn hostile_login<S: Io>(
    wire: &mut Wire<S>,
    shared: &Shared,
    record: &mut Login,
) -> Result<Option<bool>, SessionError> {
    match shared.hostile {
        Some(Hostile::AuthMoreDataForever) => loop {
            wire.send(&AuthMoreData::new(&[0x04][..])).await?;
            wire.read().await?;
        },
        Some(Hostile::AuthSwitchForever) => loop {
            wire.send(&switch_request(&auth::nonce())).await?;
            wire.read().await?;
        },
        Some(Hostile::HugePacket) => {
            wire.write_header_only(0xff_ffff).await?;
            wire.read().await?;
            Ok(Some(false))
        }
        Some(Hostile::Silent) => {
            wire.read().await?;
            Ok(Some(false))
        }
        Some(Hostile::ClearPassword) => {
            wire.send(&AuthSwitchRequest::new(
                &b"mysql_clear_password"[..],
                &[][..],
            ))
            .await?;
            let answer = wire.read().await?;
            if !answer.is_empty() {
                record.switched = true;
                record.path = AuthPath::ClearPasswordSent;
                push(&mut shared.records().logins, record.clone());
            }
            wire.error(1045, b"28000", "Access denied").await?;
            Ok(Some(false))
        }
        Some(Hostile::TruncatedKey | Hostile::HugeExponentKey) | None => Ok(None),
    }
}

/// Statements until `COM_QUIT` or a hang-up.
async fn commands<S: Io>(
    wire: &mut Wire<S>,
    shared: &Shared,
    client: CapabilityFlags,
) -> Result<(), SessionError> {
    let deprecate_eof = client.contains(CapabilityFlags::CLIENT_DEPRECATE_EOF);
    loop {
        let packet = match wire.read_command().await {
            Ok(p) => p,
            Err(SessionError::Io(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        match packet.split_first() {
            Some((0x01, _)) => return Ok(()),
            Some((0x0e, _)) => wire.write(&wire::ok(0x00, client)).await?,
            Some((0x03, sql)) => {
                let sql = String::from_utf8_lossy(sql).into_owned();
                let answer = {
                    let mut records = shared.records();
                    push(&mut records.statements, sql.clone());
                    sql::answer(&sql, &shared.version, shared.version_number, &records.facts)
                };
                match answer {
                    sql::Answer::Rows { columns, rows } => {
                        wire.write(&wire::column_count(columns.len())).await?;
                        for c in &columns {
                            wire.write(&wire::column_definition(c)).await?;
                        }
                        if !deprecate_eof {
                            wire.write(&wire::eof()).await?;
                        }
                        for r in &rows {
                            wire.write(&wire::text_row(r)).await?;
                        }
                        if deprecate_eof {
                            wire.write(&wire::ok(0xfe, client)).await?;
                        } else {
                            wire.write(&wire::eof()).await?;
                        }
                    }
                    sql::Answer::Error {
                        code,
                        state,
                        message,
                    } => wire.error(code, state, &message).await?,
                }
            }
            _ => wire.error(1047, b"08S01", "Unknown command").await?,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_read_with_or_without_a_suffix() {
        assert_eq!(version_number("8.0.36"), (8, 0, 36));
        assert_eq!(version_number("8.0.21-log"), (8, 0, 21));
        assert_eq!(version_number("eight"), (8, 0, 0));
    }
}
