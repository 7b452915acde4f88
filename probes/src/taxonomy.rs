//! The failure taxonomy: why a run failed, as one stable snake_case word.
//!
//! These strings are the `error.type` span attribute and a metric label, so they
//! never change once released. Variants are declared in the design's table order;
//! that order decides the class when several TLS problems hold at once (an expired
//! certificate from an unknown CA is `tls_cert_expired`, with both listed).

use serde::{Serialize, Serializer};

macro_rules! taxonomy {
    ($( $(#[$doc:meta])* $variant:ident => $name:literal, )*) => {
        /// One failure class.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ErrorType {
            $( $(#[$doc])* $variant, )*
        }

        impl ErrorType {
            /// Every class, in table order.
            pub const ALL: &'static [ErrorType] = &[$(ErrorType::$variant,)*];

            /// The stable string.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( ErrorType::$variant => $name, )*
                }
            }
        }
    };
}

taxonomy! {
    /// NXDOMAIN, or the name has no address records.
    DnsNotFound => "dns_not_found",
    /// Resolver timeout, SERVFAIL, or another resolver error.
    DnsFailure => "dns_failure",
    /// The port answered the SYN with a reset.
    ConnectRefused => "connect_refused",
    /// No answer to the SYN within the deadline.
    ConnectTimeout => "connect_timeout",
    /// No route: ENETUNREACH / EHOSTUNREACH, or the local network refused.
    NetworkUnreachable => "network_unreachable",
    /// Reset or end of stream after connect, outside the TLS handshake.
    ConnectionReset => "connection_reset",
    /// A certificate of the chain is past its `not_after`.
    TlsCertExpired => "tls_cert_expired",
    /// A certificate of the chain is before its `not_before`.
    TlsCertNotYetValid => "tls_cert_not_yet_valid",
    /// The chain does not lead to a trusted root (internal CA, self-signed, missing intermediate).
    TlsUnknownIssuer => "tls_unknown_issuer",
    /// The leaf is not valid for the name asked.
    TlsHostnameMismatch => "tls_hostname_mismatch",
    /// A certificate is revoked per the configured CRL.
    TlsCertRevoked => "tls_cert_revoked",
    /// Bad signature, unsupported or malformed certificate.
    TlsBadCertificate => "tls_bad_certificate",
    /// The server sent an alert, or there is no common protocol version or cipher.
    TlsHandshakeFailure => "tls_handshake_failure",
    /// The server wants, or rejects, a client certificate.
    TlsClientCertRequired => "tls_client_cert_required",
    /// The peer does not speak TLS (plaintext reply, PostgreSQL answered `N`).
    TlsNotOffered => "tls_not_offered",
    /// Any other TLS-level error.
    TlsProtocolError => "tls_protocol_error",
    /// Credentials refused: HTTP 401/403, PostgreSQL 28P01/28000, MongoDB code 18.
    AuthRejected => "auth_rejected",
    /// A bearer JWT was refused (`invalid_token`, or an error body naming the token).
    JwtRejected => "jwt_rejected",
    /// A configured secret (file, variable) is absent or empty.
    CredentialMissing => "credential_missing",
    /// A local JWT or client certificate is past its expiry.
    CredentialExpired => "credential_expired",
    /// A secret is present but unreadable (not a JWT, not PEM).
    CredentialInvalid => "credential_invalid",
    /// A CDN or proxy reports its origin's TLS failed (HTTP 525, 526).
    UpstreamTlsError => "upstream_tls_error",
    /// Any other unexpected HTTP status.
    HttpStatus => "http_status",
    /// A body, header or series expectation was not met, or the reply did not parse.
    UnexpectedResponse => "unexpected_response",
    /// The database answered the query with an error.
    QueryFailed => "query_failed",
    /// The MongoDB replica set has no writable primary.
    NoPrimary => "no_primary",
    /// The run's deadline passed; the phase says where it hung.
    Timeout => "timeout",
    /// The probe itself failed (a bug in depprobe, such as a panic): the run is reported, never lost.
    InternalError => "internal_error",
}

impl ErrorType {
    /// Whether this is one of the TLS classes.
    pub fn is_tls(self) -> bool {
        self >= ErrorType::TlsCertExpired && self <= ErrorType::TlsProtocolError
    }

    /// A short hint on what to do, for the human message.
    pub fn hint(self) -> &'static str {
        use ErrorType::*;
        match self {
            DnsNotFound => "check the host name and its DNS records",
            DnsFailure => "check the resolver (/etc/resolv.conf) and its reachability",
            ConnectRefused => "nothing listens on that port: check the service and the port",
            ConnectTimeout => "no answer: check firewalls, security groups and routes",
            NetworkUnreachable => "no route to the host: check the network and VPN",
            ConnectionReset => {
                "the peer closed the connection: check its logs and any proxy in between"
            }
            TlsCertExpired => "the server must renew its certificate",
            TlsCertNotYetValid => {
                "the certificate is not valid yet: check clocks or the issuance date"
            }
            TlsUnknownIssuer => {
                "the chain is not trusted: check the issuer, missing intermediates, or add the CA with tls.ca_file"
            }
            TlsHostnameMismatch => {
                "the certificate does not cover this name: check tls.server_name or the certificate's SANs"
            }
            TlsCertRevoked => "the certificate is revoked: the server needs a new one",
            TlsBadCertificate => "the certificate is malformed or badly signed",
            TlsHandshakeFailure => {
                "no TLS agreement: check protocol versions and ciphers on both sides"
            }
            TlsClientCertRequired => {
                "the server requires a client certificate: set tls.cert_file and tls.key_file"
            }
            TlsNotOffered => "the server does not speak TLS on this port",
            TlsProtocolError => "TLS error: check the server's TLS configuration",
            AuthRejected => "the credentials were refused: check user, password or token",
            JwtRejected => "the token was refused: rotate or re-issue it",
            CredentialMissing => "a configured secret is missing: restore the file or variable",
            CredentialExpired => "a local credential has expired: rotate it",
            CredentialInvalid => "a local credential cannot be read: check its format",
            UpstreamTlsError => {
                "the CDN or proxy cannot reach its origin over TLS: check the origin's certificate"
            }
            HttpStatus => "unexpected status: check the service",
            UnexpectedResponse => "the service answered, but not as it should: check what it sends",
            QueryFailed => "the query failed: check the database's logs and permissions",
            NoPrimary => "the replica set has no primary: check elections and members' network",
            Timeout => "the run did not finish within its deadline",
            InternalError => {
                "the probe failed inside depprobe (a bug): please report it; the probe keeps its schedule"
            }
        }
    }
}

impl std::fmt::Display for ErrorType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Where a run is, or where it failed or hung.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Name resolution.
    Dns,
    /// TCP connect.
    Connect,
    /// TLS handshake (and, for PostgreSQL, the SSLRequest).
    Tls,
    /// Authentication, or reading the local credential it needs.
    Auth,
    /// The request and its answer.
    Request,
    /// A database query.
    Query,
}

impl Phase {
    /// Every phase, in run order.
    pub const ALL: &'static [Phase] = &[
        Phase::Dns,
        Phase::Connect,
        Phase::Tls,
        Phase::Auth,
        Phase::Request,
        Phase::Query,
    ];

    /// The stable string (also the child span's name).
    pub const fn as_str(self) -> &'static str {
        match self {
            Phase::Dns => "dns",
            Phase::Connect => "connect",
            Phase::Tls => "tls",
            Phase::Auth => "auth",
            Phase::Request => "request",
            Phase::Query => "query",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The overall result of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Works, nothing to report.
    Up,
    /// Works, but a finding needs attention.
    Degraded,
    /// Does not work.
    Down,
}

impl Status {
    /// The stable string.
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Up => "up",
            Status::Degraded => "degraded",
            Status::Down => "down",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_snake_case_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for e in ErrorType::ALL {
            let s = e.as_str();
            assert!(s.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{s}");
            assert!(seen.insert(s), "duplicate {s}");
        }
        assert_eq!(ErrorType::ALL.len(), 28);
    }

    #[test]
    fn table_order_puts_expiry_before_issuer() {
        assert!(ErrorType::TlsCertExpired < ErrorType::TlsUnknownIssuer);
        assert!(ErrorType::TlsUnknownIssuer < ErrorType::TlsHostnameMismatch);
        assert!(ErrorType::TlsCertExpired.is_tls() && ErrorType::TlsProtocolError.is_tls());
        assert!(!ErrorType::ConnectionReset.is_tls() && !ErrorType::AuthRejected.is_tls());
    }
}
