//! From a tokio-postgres error to a failure class, by the error's typed parts: the
//! server's SQLSTATE (`DbError`), the I/O error and the `rustls::Error` inside it, or
//! a closed connection. Never by the text of a message.

use std::error::Error as StdError;
use std::io;

use tokio_postgres::error::{DbError, SqlState};

use crate::run::ProbeError;
use crate::taxonomy::{ErrorType, Phase};
use crate::transport::classify::{ClientAuth, classify, find_rustls_error};
use crate::transport::classify_stream;

/// What the probe knew when it logged in.
#[derive(Clone, Copy, Debug)]
pub struct LoginContext {
    /// A password was configured.
    pub password_configured: bool,
    /// Over TLS: whether the server asked for a client certificate, and whether one
    /// was sent. `None` in plaintext.
    pub client_auth: Option<ClientAuth>,
}

/// "SQLSTATE 28P01: password authentication failed for user "probe"".
pub fn sqlstate_text(db: &DbError) -> String {
    format!("SQLSTATE {}: {}", db.code().code(), db.message())
}

/// The class of a failed startup and authentication.
pub fn login_error(e: &tokio_postgres::Error, ctx: &LoginContext) -> ProbeError {
    if let Some(db) = e.as_db_error() {
        return refused_login(db, ctx);
    }
    if let Some(io) = io_error_in(e) {
        // TLS 1.3: a rejected client certificate is only seen on the first read.
        if let Some(tls) = find_rustls_error(io) {
            let (class, message) = classify(tls, ctx.client_auth.unwrap_or_default());
            return ProbeError::new(class, Phase::Tls, message);
        }
        return classify_stream(Phase::Auth, io);
    }
    if e.is_closed() {
        return ProbeError::new(
            ErrorType::ConnectionReset,
            Phase::Auth,
            "the server closed the connection during login",
        );
    }
    // What is left is tokio-postgres refusing to go on: the server asked for a
    // password and none is configured, an authentication method it does not speak, or
    // a SCRAM exchange that did not verify.
    let message = if ctx.password_configured {
        format!("authentication failed: {e}")
    } else {
        format!(
            "authentication failed ({e}): the server asks for a password and none is configured (set `password` or `password_file`)"
        )
    };
    ProbeError::new(ErrorType::AuthRejected, Phase::Auth, message)
}

/// The class of a login the server answered with an error.
fn refused_login(db: &DbError, ctx: &LoginContext) -> ProbeError {
    let code = db.code();
    let text = sqlstate_text(db);
    if *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        && ctx.client_auth.is_some_and(|a| a.asked && !a.sent)
    {
        // PostgreSQL refuses a missing client certificate (pg_hba `clientcert=`, or
        // method `cert`) with the same SQLSTATE as any pg_hba rejection; what tells
        // them apart is that the server asked for a certificate and none was sent.
        return ProbeError::new(
            ErrorType::TlsClientCertRequired,
            Phase::Auth,
            format!(
                "the server asked for a client certificate in the TLS handshake, none is configured (sslcert/sslkey), and it refused the login ({text})"
            ),
        );
    }
    if *code == SqlState::INVALID_PASSWORD || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
    {
        return ProbeError::new(
            ErrorType::AuthRejected,
            Phase::Auth,
            format!("the server refused the login ({text})"),
        );
    }
    // Too many connections, an unknown database, a server starting up or shutting
    // down: the server answered the session with an error.
    ProbeError::new(
        ErrorType::QueryFailed,
        Phase::Auth,
        format!("the server refused the session ({text})"),
    )
}

/// The class of a failed query.
pub fn query_error(e: &tokio_postgres::Error) -> ProbeError {
    if let Some(db) = e.as_db_error() {
        return ProbeError::new(
            ErrorType::QueryFailed,
            Phase::Query,
            format!("the query failed ({})", sqlstate_text(db)),
        );
    }
    if let Some(io) = io_error_in(e) {
        return classify_stream(Phase::Query, io);
    }
    if e.is_closed() {
        return ProbeError::new(
            ErrorType::ConnectionReset,
            Phase::Query,
            "the server closed the connection during the query",
        );
    }
    ProbeError::new(
        ErrorType::UnexpectedResponse,
        Phase::Query,
        format!("the answer to the query could not be read: {e}"),
    )
}

/// The class of a connection that ended while a query was in flight.
pub fn connection_ended(result: Result<(), tokio_postgres::Error>) -> ProbeError {
    match result {
        Ok(()) => ProbeError::new(
            ErrorType::ConnectionReset,
            Phase::Query,
            "the server closed the connection during the query",
        ),
        Err(e) => query_error(&e),
    }
}

/// The I/O error among `e`'s sources, if any.
fn io_error_in<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a io::Error> {
    crate::transport::classify::find_in_chain::<io::Error>(e)
}
