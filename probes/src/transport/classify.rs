//! From a typed error to a failure class: the one classifier of the transport.
//!
//! Classification follows the error value, never its text: a `rustls::Error` or an
//! `io::Error` is found by walking the error's sources and `io::Error::get_ref()`
//! ([`find_in_chain`]), and an `io::ErrorKind` has one class per phase
//! ([`io_class`]), whoever met it (our dialer, hyper, tokio-postgres, the MongoDB
//! driver).

use std::error::Error as StdError;
use std::io;

use rustls::{AlertDescription, CertificateError, Error as TlsError, InvalidMessage};

use super::tls::words;
use crate::run::ProbeError;
use crate::taxonomy::{ErrorType, Phase};

/// Whether the server asked for a client certificate and whether one was sent,
/// as seen during the handshake.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientAuth {
    /// The server sent a CertificateRequest.
    pub asked: bool,
    /// A certificate was sent in reply.
    pub sent: bool,
}

/// The failure of an exchange in which the server broke the HTTP/2 protocol (a
/// frame of the wrong size, a malformed header block, a frame where none may be:
/// what h2 detects on its side and answers with GOAWAY), if `e` is one:
/// `unexpected_response`, whatever the client library made of it.
pub fn h2_violation(e: &(dyn StdError + 'static)) -> Option<ProbeError> {
    let h2 = find_in_chain::<h2::Error>(e)?;
    if h2.is_io() || !h2.is_library() {
        return None;
    }
    let reason = h2
        .reason()
        .map(|r| format!("{r:?}"))
        .unwrap_or_else(|| "PROTOCOL_ERROR".into());
    Some(ProbeError::new(
        ErrorType::UnexpectedResponse,
        Phase::Request,
        format!("the server broke the HTTP/2 protocol ({reason}): {h2}"),
    ))
}

/// The first error of type `T` in `e`, its sources, and the errors that
/// `io::Error`s on the way wrap.
pub fn find_in_chain<'a, T: StdError + 'static>(e: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(found) = err.downcast_ref::<T>() {
            return Some(found);
        }
        cur = match err
            .downcast_ref::<io::Error>()
            .and_then(|ioe| ioe.get_ref())
        {
            Some(inner) => Some(inner as &(dyn StdError + 'static)),
            None => err.source(),
        };
    }
    None
}

/// The `rustls::Error` inside `e`, if any.
pub fn find_rustls_error<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a TlsError> {
    find_in_chain::<TlsError>(e)
}

/// The class of an I/O error met in `phase`, with what happened for the message: a
/// TLS error inside it first, then the kind of the error. A timeout while connecting
/// is `connect_timeout`; later it is `timeout`.
pub fn io_class(e: &io::Error, phase: Phase) -> (ErrorType, String) {
    if let Some(tls) = find_rustls_error(e) {
        return classify(tls, ClientAuth::default());
    }
    use io::ErrorKind::*;
    let connecting = phase == Phase::Connect;
    match e.kind() {
        ConnectionRefused => (ErrorType::ConnectRefused, "connection refused".into()),
        TimedOut if connecting => (ErrorType::ConnectTimeout, "connection timed out".into()),
        TimedOut => (ErrorType::Timeout, format!("timed out ({e})")),
        NetworkUnreachable | HostUnreachable | NetworkDown | AddrNotAvailable => (
            ErrorType::NetworkUnreachable,
            format!("no route to the host ({e})"),
        ),
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => (
            ErrorType::ConnectionReset,
            format!("the peer closed the connection ({e})"),
        ),
        _ if connecting => (ErrorType::NetworkUnreachable, e.to_string()),
        _ => (ErrorType::ConnectionReset, format!("connection error: {e}")),
    }
}

/// The TLS failure inside an I/O error met after the handshake (TLS 1.3 servers
/// reject a client certificate on the first read), if there is one.
pub fn tls_error_in(e: &io::Error) -> Option<ProbeError> {
    let tls = find_rustls_error(e)?;
    let (class, message) = classify(tls, ClientAuth::default());
    Some(ProbeError::new(class, Phase::Tls, message))
}

/// The class and message of a failed handshake.
pub fn classify_handshake(e: &io::Error, auth: ClientAuth) -> (ErrorType, String) {
    if let Some(tls) = find_rustls_error(e) {
        return classify(tls, auth);
    }
    use io::ErrorKind::*;
    match e.kind() {
        UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe if auth.asked && !auth.sent => (
            ErrorType::TlsClientCertRequired,
            "the server asked for a client certificate and closed the connection when none was sent".into(),
        ),
        UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe => (
            ErrorType::TlsHandshakeFailure,
            format!("the server closed the connection during the TLS handshake ({e})"),
        ),
        _ => (ErrorType::TlsProtocolError, format!("TLS handshake failed: {e}")),
    }
}

/// The class and message of a rustls error.
pub fn classify(e: &TlsError, auth: ClientAuth) -> (ErrorType, String) {
    match e {
        TlsError::InvalidCertificate(ce) => classify_certificate(ce),
        TlsError::AlertReceived(alert) => classify_alert(*alert, auth),
        TlsError::PeerIncompatible(p) => (
            ErrorType::TlsHandshakeFailure,
            format!("no common TLS parameters with the server: {}", TlsError::PeerIncompatible(p.clone())),
        ),
        TlsError::InvalidMessage(InvalidMessage::HandshakePayloadTooLarge) => (
            ErrorType::TlsBadCertificate,
            "the server sent a handshake message over 64 KiB (in practice its certificate message: an oversized chain or certificate), more than rustls accepts (OpenSSL-based clients stop at 100 KiB); send only the leaf and its intermediates".into(),
        ),
        TlsError::InvalidMessage(InvalidMessage::InvalidContentType)
        | TlsError::InvalidMessage(InvalidMessage::UnknownProtocolVersion) => (
            ErrorType::TlsNotOffered,
            "the server answered with something that is not TLS (a plaintext service?)".into(),
        ),
        TlsError::NoCertificatesPresented => (
            ErrorType::TlsBadCertificate,
            "the server presented no certificate".into(),
        ),
        TlsError::InvalidCertRevocationList(c) => (
            ErrorType::TlsBadCertificate,
            format!("the configured CRL is not usable: {}", TlsError::InvalidCertRevocationList(c.clone())),
        ),
        other => (ErrorType::TlsProtocolError, format!("TLS error: {other}")),
    }
}

fn classify_certificate(e: &CertificateError) -> (ErrorType, String) {
    use CertificateError as C;
    match e {
        C::Expired | C::ExpiredContext { .. } => (
            ErrorType::TlsCertExpired,
            "a certificate of the chain has expired".into(),
        ),
        C::NotValidYet | C::NotValidYetContext { .. } => (
            ErrorType::TlsCertNotYetValid,
            "a certificate of the chain is not valid yet".into(),
        ),
        C::UnknownIssuer => (
            ErrorType::TlsUnknownIssuer,
            "the chain does not lead to a trusted root".into(),
        ),
        C::NotValidForName | C::NotValidForNameContext { .. } => (
            ErrorType::TlsHostnameMismatch,
            "the certificate is not valid for the name asked".into(),
        ),
        C::Revoked => (
            ErrorType::TlsCertRevoked,
            "the certificate is revoked".into(),
        ),
        C::UnknownRevocationStatus => (
            ErrorType::TlsCertRevoked,
            "the revocation status of a certificate of the chain cannot be established: no configured CRL covers it".into(),
        ),
        C::ExpiredRevocationList | C::ExpiredRevocationListContext { .. } => (
            ErrorType::TlsCertRevoked,
            "the revocation status cannot be established: a configured CRL is past its next update; refresh the CRL file".into(),
        ),
        other => (ErrorType::TlsBadCertificate, certificate_words(other)),
    }
}

/// What is wrong with a certificate rustls refused for a reason other than its
/// dates, issuer, name or revocation, in words (never a dump of its fields).
fn certificate_words(e: &CertificateError) -> String {
    use CertificateError as C;
    match e {
        C::UnsupportedSignatureAlgorithmContext {
            signature_algorithm_id,
            ..
        } => format!(
            "a certificate of the chain is signed with {}, which rustls/webpki clients refuse",
            words::algorithm_id_text(signature_algorithm_id)
        ),
        C::UnsupportedSignatureAlgorithmForPublicKeyContext {
            signature_algorithm_id,
            ..
        } => format!(
            "a certificate of the chain is signed with {}, which does not fit its issuer's key",
            words::algorithm_id_text(signature_algorithm_id)
        ),
        C::BadSignature => {
            "a signature does not verify: a certificate's signature, or the server's handshake signature (an RSA key under 2048 bits is refused this way)".into()
        }
        C::BadEncoding => "a certificate of the chain is not valid DER".into(),
        C::UnhandledCriticalExtension => {
            "a certificate of the chain has a critical extension the client does not know".into()
        }
        C::InvalidPurpose | C::InvalidPurposeContext { .. } => {
            "the certificate is not for TLS servers (its extendedKeyUsage lacks serverAuth)".into()
        }
        C::Other(other) => format!("the certificate is not acceptable: {other}"),
        other => format!("the certificate is not acceptable: {other}"),
    }
}

fn classify_alert(alert: AlertDescription, auth: ClientAuth) -> (ErrorType, String) {
    use AlertDescription as A;
    let client_cert_alert = matches!(
        alert,
        A::CertificateRequired
            | A::BadCertificate
            | A::UnsupportedCertificate
            | A::CertificateRevoked
            | A::CertificateExpired
            | A::CertificateUnknown
            | A::UnknownCA
            | A::AccessDenied
    );
    if alert == A::CertificateRequired
        || (auth.asked && (client_cert_alert || (!auth.sent && alert == A::HandshakeFailure)))
    {
        let name = words::alert_name(alert);
        let what = if auth.sent {
            format!("the server rejected the client certificate (alert {name})")
        } else {
            format!("the server requires a client certificate and none was sent (alert {name})")
        };
        return (ErrorType::TlsClientCertRequired, what);
    }
    match alert {
        A::ProtocolVersion => (
            ErrorType::TlsHandshakeFailure,
            "the server does not accept the offered TLS versions (alert protocol_version)".into(),
        ),
        A::HandshakeFailure | A::InsufficientSecurity => (
            ErrorType::TlsHandshakeFailure,
            format!(
                "the server refused the handshake (alert {}): no common version, cipher or group",
                words::alert_name(alert)
            ),
        ),
        other => (
            ErrorType::TlsHandshakeFailure,
            format!("the server sent TLS alert {}", words::alert_name(other)),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rustls_error_is_found_inside_io_error() {
        let io = io::Error::new(
            io::ErrorKind::InvalidData,
            TlsError::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        let (class, _) = classify_handshake(&io, ClientAuth::default());
        assert_eq!(class, ErrorType::TlsUnknownIssuer);
    }

    #[test]
    fn certificate_required_alert_is_client_cert_required() {
        let (class, _) = classify(
            &TlsError::AlertReceived(AlertDescription::CertificateRequired),
            ClientAuth::default(),
        );
        assert_eq!(class, ErrorType::TlsClientCertRequired);
        let asked = ClientAuth {
            asked: true,
            sent: false,
        };
        let (class, _) = classify(
            &TlsError::AlertReceived(AlertDescription::HandshakeFailure),
            asked,
        );
        assert_eq!(class, ErrorType::TlsClientCertRequired);
        let (class, _) = classify(
            &TlsError::AlertReceived(AlertDescription::HandshakeFailure),
            ClientAuth::default(),
        );
        assert_eq!(class, ErrorType::TlsHandshakeFailure);
    }

    #[test]
    fn plaintext_reply_is_not_offered() {
        let (class, _) = classify(
            &TlsError::InvalidMessage(InvalidMessage::InvalidContentType),
            ClientAuth::default(),
        );
        assert_eq!(class, ErrorType::TlsNotOffered);
    }
}
