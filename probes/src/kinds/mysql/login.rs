//! The MySQL login: the server's greeting, the SSL request, the handshake response
//! and the authentication exchange, with `mysql_common`'s packets and its plugins for
//! the scrambles (`caching_sha2_password` fast and full paths, the RSA public key
//! request in plaintext, `mysql_native_password`, MariaDB's `client_ed25519`) and
//! the auth-switch requests a server may send.
//!
//! Two things are not left to the plugins: the public key the server sends when asked
//! is read and used by [`super::server_key`] (bounded, never a panic), and a switch
//! to `mysql_clear_password` on an unencrypted session is refused, so that the
//! password never crosses the network in the clear.

use mysql_common::auth::plugins::{AuthProc, ChallengeResponsePlugin, Context, Response};
use mysql_common::collations::CollationId;
use mysql_common::constants::CapabilityFlags;
use mysql_common::io::ParseBuf;
use mysql_common::packets::{
    AuthPlugin, AuthSwitchRequest, HandshakePacket, HandshakeResponse, SslRequest,
};

use super::server_key;
use super::wire::{Io, ServerError, Wire, server_error, snippet};
use crate::run::ProbeError;
use crate::taxonomy::{ErrorType, Phase};

/// The largest packet the probe says it accepts.
const MAX_PACKET: u32 = 1 << 24;

/// The most packets an authentication exchange may take (a switch, a key request).
const MAX_AUTH_STEPS: usize = 8;

/// What the server's greeting said.
#[derive(Clone, Debug)]
pub struct Greeting {
    /// The version string (`8.0.36`, `10.11.6-MariaDB-0+deb12u1`: without the
    /// `5.5.5-` MariaDB puts in front of it for old clients).
    pub version: String,
    /// `(major, minor, patch)` of the real server (MariaDB's, not its 5.5.5 prefix).
    pub parsed: (u16, u16, u16),
    /// Whether it is a MariaDB server.
    pub mariadb: bool,
    /// Whether the server offers TLS.
    pub tls: bool,
    /// The server's capabilities.
    pub capabilities: CapabilityFlags,
    /// The scramble.
    pub nonce: Vec<u8>,
    /// The plugin the server starts with (`caching_sha2_password` when unnamed).
    pub plugin: AuthPlugin<'static>,
}

/// Reads the greeting; an ERR packet instead (host not allowed, too many
/// connections) is that error.
pub async fn greeting<S: Io>(wire: &mut Wire<S>) -> Result<Greeting, ProbeError> {
    let payload = wire.read(Phase::Connect).await?;
    match payload.first() {
        Some(0xff) => return Err(refused(&server_error(&payload))),
        Some(10) => {}
        other => {
            return Err(ProbeError::new(
                ErrorType::UnexpectedResponse,
                Phase::Connect,
                format!(
                    "the server's first packet is not a MySQL greeting (protocol byte {other:?}): is this a MySQL port?"
                ),
            ));
        }
    }
    let hello: HandshakePacket<'_> = ParseBuf(&payload).parse(()).map_err(|e| {
        ProbeError::new(
            ErrorType::UnexpectedResponse,
            Phase::Connect,
            format!("the server's greeting could not be read: {e}"),
        )
    })?;
    let mariadb = hello.server_version_str().contains("MariaDB");
    let parsed = if mariadb {
        hello.maria_db_server_version_parsed()
    } else {
        hello.server_version_parsed()
    };
    Ok(Greeting {
        version: snippet(
            hello
                .server_version_str()
                .strip_prefix("5.5.5-")
                .filter(|_| mariadb)
                .unwrap_or(&hello.server_version_str()),
        ),
        parsed: parsed.unwrap_or((5, 7, 0)),
        mariadb,
        tls: hello.capabilities().contains(CapabilityFlags::CLIENT_SSL),
        capabilities: hello.capabilities(),
        nonce: hello.nonce(),
        plugin: hello
            .auth_plugin()
            .map(AuthPlugin::into_owned)
            .unwrap_or(AuthPlugin::CachingSha2Password),
    })
}

/// What the client asks for: protocol 4.1, plugin auth, secure connection; TLS when
/// it will follow; a default database when one is named (the server keeps what the
/// SSL request said). The server's own capabilities bound it.
fn capabilities(hello: &Greeting, tls: bool, with_db: bool) -> CapabilityFlags {
    let mut caps = CapabilityFlags::CLIENT_PROTOCOL_41
        | CapabilityFlags::CLIENT_SECURE_CONNECTION
        | CapabilityFlags::CLIENT_PLUGIN_AUTH
        | CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
        | CapabilityFlags::CLIENT_LONG_PASSWORD
        | CapabilityFlags::CLIENT_TRANSACTIONS
        | CapabilityFlags::CLIENT_MULTI_RESULTS;
    if tls {
        caps |= CapabilityFlags::CLIENT_SSL;
    }
    if with_db {
        caps |= CapabilityFlags::CLIENT_CONNECT_WITH_DB;
    }
    caps & hello.capabilities
}

/// Sends the SSL request: the TLS handshake follows on the same stream.
pub async fn ssl_request<S: Io>(
    wire: &mut Wire<S>,
    hello: &Greeting,
    with_db: bool,
) -> Result<(), ProbeError> {
    let request = SslRequest::new(
        capabilities(hello, true, with_db),
        MAX_PACKET,
        CollationId::UTF8MB4_GENERAL_CI as u8,
    );
    wire.send(&request, Phase::Tls).await
}

/// The login's inputs.
pub struct Login<'a> {
    /// The user.
    pub user: &'a str,
    /// The password (empty when none is configured).
    pub password: &'a [u8],
    /// The default database.
    pub database: Option<&'a str>,
    /// Whether the session is encrypted (the full path then sends the password as
    /// it is, as the MySQL client does).
    pub tls: bool,
    /// Whether the probe may ask for the server's RSA key on a session without TLS
    /// (`get-server-public-key=true`).
    pub get_server_public_key: bool,
}

struct AuthContext<'a> {
    login: &'a Login<'a>,
    nonce: &'a [u8],
}

impl Context for &AuthContext<'_> {
    fn pass(&self) -> &[u8] {
        self.login.password
    }
    fn is_ipc_transport(&self) -> bool {
        false
    }
    fn is_tls_transport(&self) -> bool {
        self.login.tls
    }
    fn scramble(&self) -> &[u8] {
        self.nonce
    }
    fn server_key_pem(&self) -> Option<&[u8]> {
        None
    }
}

/// What the server's next AuthMoreData packet is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Next {
    /// The plugin's next challenge.
    Challenge,
    /// The RSA public key the probe asked for.
    PublicKey,
    /// Nothing: the encrypted password is sent, only OK or an error may follow.
    Verdict,
}

/// Whether `sent`, the probe's last packet for `plugin`, asks for the server's RSA
/// public key (`caching_sha2_password` asks with 0x02 on its full path,
/// `sha256_password` with 0x01 at once).
fn next_after(plugin: &AuthPlugin<'_>, sent: &[u8]) -> Next {
    match plugin {
        AuthPlugin::CachingSha2Password if sent == [0x02] => Next::PublicKey,
        AuthPlugin::Sha256Password if sent == [0x01] => Next::PublicKey,
        _ => Next::Challenge,
    }
}

/// Sends the handshake response and follows the exchange to the server's OK.
/// Returns the name of the plugin that logged in.
pub async fn login<S: Io>(
    wire: &mut Wire<S>,
    hello: &Greeting,
    login: &Login<'_>,
) -> Result<String, ProbeError> {
    let mut plugin = hello.plugin.clone();
    let mut nonce = hello.nonce.clone();
    let mut proc = start(&plugin, login.tls)?;
    let first = step(&mut proc, login, &nonce, &nonce)?;
    let mut next = next_after(&plugin, first.data().unwrap_or_default());
    may_ask_for_key(next, login)?;
    let response = HandshakeResponse::new(
        first.data().map(<[u8]>::to_vec),
        hello.parsed,
        Some(login.user.as_bytes().to_vec()),
        login.database.map(|d| d.as_bytes().to_vec()),
        Some(plugin.clone()),
        capabilities(hello, login.tls, login.database.is_some()),
        None,
        MAX_PACKET,
    );
    wire.send(&response, Phase::Auth).await?;
    for _ in 0..MAX_AUTH_STEPS {
        let payload = wire.read(Phase::Auth).await?;
        match payload.first() {
            Some(0x00) => return Ok(String::from_utf8_lossy(plugin.as_bytes()).into_owned()),
            Some(0xff) => return Err(refused(&server_error(&payload))),
            Some(0xfe) => {
                let switch: AuthSwitchRequest<'_> = ParseBuf(&payload)
                    .parse(())
                    .map_err(|e| unreadable("auth switch", &e))?;
                plugin = switch.auth_plugin().into_owned();
                nonce = switch.plugin_data().to_vec();
                proc = start(&plugin, login.tls)?;
                let answer = step(&mut proc, login, &nonce, &nonce)?;
                let data = answer.data().unwrap_or_default();
                next = next_after(&plugin, data);
                may_ask_for_key(next, login)?;
                wire.write(data, Phase::Auth).await?;
            }
            Some(0x01) => match next {
                Next::PublicKey => {
                    let sealed =
                        server_key::encrypt_password(login.password, &nonce, &payload[1..])?;
                    wire.write(&sealed, Phase::Auth).await?;
                    next = Next::Verdict;
                }
                Next::Verdict => {
                    return Err(ProbeError::new(
                        ErrorType::UnexpectedResponse,
                        Phase::Auth,
                        "the server asked for more authentication data after the encrypted password",
                    ));
                }
                Next::Challenge => {
                    let answer = step(&mut proc, login, &payload[1..], &nonce)?;
                    if let Some(data) = answer.data() {
                        next = next_after(&plugin, data);
                        may_ask_for_key(next, login)?;
                        wire.write(data, Phase::Auth).await?;
                    }
                }
            },
            other => {
                return Err(ProbeError::new(
                    ErrorType::UnexpectedResponse,
                    Phase::Auth,
                    format!("the server answered the login with packet type {other:?}"),
                ));
            }
        }
    }
    Err(ProbeError::new(
        ErrorType::UnexpectedResponse,
        Phase::Auth,
        format!("the login did not end after {MAX_AUTH_STEPS} exchanges"),
    ))
}

/// Refuses to ask for the server's RSA key unless the URL allows it: on a session
/// without TLS, whoever sits between the probe and the server could answer with his
/// own key and read the password. The MySQL client refuses the same way (error
/// 2061) unless told `--get-server-public-key`.
fn may_ask_for_key(next: Next, login: &Login<'_>) -> Result<(), ProbeError> {
    if next != Next::PublicKey || login.get_server_public_key {
        return Ok(());
    }
    Err(ProbeError::new(
        ErrorType::AuthRejected,
        Phase::Auth,
        "the server wants the whole password (caching_sha2_password full authentication, or sha256_password) on a session without TLS: depprobe does not ask for the server's RSA key unless the URL says get-server-public-key=true, since over plaintext anyone in between could hand over his own key and read the password (the MySQL client refuses the same way, error 2061); offer TLS on the server, or allow the key request",
    ))
}

/// The plugin's state machine, or the plugin the probe does not speak. The
/// password goes in the clear (`mysql_clear_password`) over TLS only: the MySQL
/// client itself sends it only when told to (`--enable-cleartext-plugin`), and
/// depprobe never lets a password cross the network unencrypted.
fn start(plugin: &AuthPlugin<'_>, tls: bool) -> Result<AuthProc, ProbeError> {
    if *plugin == AuthPlugin::MysqlOldPassword {
        // The pre-4.1 scramble is broken: whoever records it can recover what it
        // protects. MySQL's own client refuses it since 5.7 (error 2059).
        return Err(ProbeError::new(
            ErrorType::AuthRejected,
            Phase::Auth,
            "the server asks for mysql_old_password, the pre-4.1 scramble that anyone who records it can break: depprobe does not answer it (nor does the MySQL client since 5.7); give the account mysql_native_password or caching_sha2_password",
        ));
    }
    if *plugin == AuthPlugin::MysqlClearPassword && !tls {
        return Err(ProbeError::new(
            ErrorType::AuthRejected,
            Phase::Auth,
            "the server asks for the password in cleartext (mysql_clear_password) on a session without TLS: depprobe does not send a password unencrypted (the server must offer TLS, and ssl-mode must not be disabled)",
        ));
    }
    AuthProc::init(plugin).map_err(|_| {
        ProbeError::new(
            ErrorType::AuthRejected,
            Phase::Auth,
            format!(
                "the server asks for authentication plugin `{}`, which depprobe does not speak (it speaks caching_sha2_password, mysql_native_password, client_ed25519, sha256_password)",
                snippet(&String::from_utf8_lossy(plugin.as_bytes()))
            ),
        )
    })
}

/// One step of the plugin, answering `challenge`.
fn step(
    proc: &mut AuthProc,
    login: &Login<'_>,
    challenge: &[u8],
    nonce: &[u8],
) -> Result<Response, ProbeError> {
    let ctx = AuthContext { login, nonce };
    proc.run(&ctx, challenge).map_err(|e| {
        ProbeError::new(
            ErrorType::UnexpectedResponse,
            Phase::Auth,
            format!("the server's authentication challenge could not be answered: {e}"),
        )
    })
}

fn unreadable(what: &str, e: &std::io::Error) -> ProbeError {
    ProbeError::new(
        ErrorType::UnexpectedResponse,
        Phase::Auth,
        format!("the server's {what} could not be read: {e}"),
    )
}

/// The class of an error the server sent before the session was up: access denied
/// (1045, 1044, 1698), host not allowed (1130), a plugin the client lacks (1251) and
/// a user that must use TLS (3159) are
/// `auth_rejected`; anything else (too many connections, unknown database) is the
/// server refusing the session.
pub fn refused(e: &ServerError) -> ProbeError {
    match e.code {
        1045 | 1130 | 1044 | 1251 | 3159 | 1698 => ProbeError::new(
            ErrorType::AuthRejected,
            Phase::Auth,
            format!("the server refused the login ({})", e.text),
        ),
        _ => ProbeError::new(
            ErrorType::QueryFailed,
            Phase::Auth,
            format!("the server refused the session ({})", e.text),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleartext_is_spoken_over_tls_only() {
        let e = start(&AuthPlugin::MysqlClearPassword, false).unwrap_err();
        assert_eq!(e.class, ErrorType::AuthRejected);
        assert!(e.message.contains("without TLS"), "{}", e.message);
        assert!(start(&AuthPlugin::MysqlClearPassword, true).is_ok());
    }

    #[test]
    fn the_old_pre_41_scramble_is_never_answered() {
        for tls in [false, true] {
            let e = start(&AuthPlugin::MysqlOldPassword, tls).unwrap_err();
            assert_eq!(e.class, ErrorType::AuthRejected);
            assert!(e.message.contains("mysql_old_password"), "{}", e.message);
        }
    }

    #[test]
    fn the_key_requests_of_each_plugin_are_recognised() {
        let sha2 = AuthPlugin::CachingSha2Password;
        assert_eq!(next_after(&sha2, &[0x02]), Next::PublicKey);
        assert_eq!(next_after(&sha2, &[0x02; 32]), Next::Challenge);
        assert_eq!(next_after(&AuthPlugin::Sha256Password, &[0x01]), Next::PublicKey);
        assert_eq!(
            next_after(&AuthPlugin::MysqlNativePassword, &[0x02]),
            Next::Challenge
        );
    }
}
