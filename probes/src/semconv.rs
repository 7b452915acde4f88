//! The values OpenTelemetry's semantic conventions ask for, in the form they list:
//! HTTP methods, `url.full` with its secrets redacted, gRPC status code names, IANA
//! cipher suite names. Kinds set these as span attributes through
//! [`crate::Run::attribute`]; the agent renders them without knowing the kind.

use url::Url;

/// What a redacted part of `url.full` becomes (semconv: `REDACTED`).
pub const REDACTED: &str = "REDACTED";

/// The methods `http.request.method` lists; any other is `_OTHER`.
const KNOWN_METHODS: &[&str] = &[
    "CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "QUERY", "TRACE",
];

/// `http.request.method`: the method when semconv lists it, else `_OTHER`.
pub fn http_method(method: &str) -> &'static str {
    KNOWN_METHODS
        .iter()
        .find(|m| **m == method)
        .copied()
        .unwrap_or("_OTHER")
}

/// `url.full` without anything secret: user and password become
/// `REDACTED:REDACTED`, and the value of every query parameter `REDACTED` (a probe's
/// query is configuration, and `?api_key=...` is common; the keys stay). The
/// fragment, never sent, is dropped.
pub fn url_full(url: &Url) -> String {
    let mut u = url.clone();
    u.set_fragment(None);
    if !u.username().is_empty() || u.password().is_some() {
        let _ = u.set_username(REDACTED);
        let _ = u.set_password(Some(REDACTED));
    }
    if u.query().is_some() {
        let keys: Vec<String> = u.query_pairs().map(|(k, _)| k.into_owned()).collect();
        if keys.is_empty() {
            u.set_query(None);
        } else {
            let mut q = u.query_pairs_mut();
            q.clear();
            for k in &keys {
                q.append_pair(k, REDACTED);
            }
        }
    }
    u.to_string()
}

/// `rpc.status_code` for gRPC: the status code's name as gRPC documents it
/// (`OK`, `UNAVAILABLE`, ...).
pub fn grpc_status_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// `tls.cipher`: the IANA name of a cipher suite from rustls' name of it. rustls
/// writes the TLS 1.3 suites `TLS13_AES_256_GCM_SHA384` where IANA (and semconv)
/// write `TLS_AES_256_GCM_SHA384`; its TLS 1.2 names are IANA's already.
pub fn iana_cipher(rustls_name: &str) -> String {
    match rustls_name.strip_prefix("TLS13_") {
        Some(rest) => format!("TLS_{rest}"),
        None => rustls_name.to_owned(),
    }
}

/// `db.operation.name` of an SQL text: its first keyword, upper case (`SELECT`),
/// when it is one; `None` for anything else (a comment, a parenthesis).
pub fn sql_operation(query: &str) -> Option<String> {
    let word: String = query
        .trim_start()
        .chars()
        .take_while(char::is_ascii_alphabetic)
        .collect();
    (!word.is_empty() && word.len() <= 16).then(|| word.to_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_full_redacts_credentials_and_query_values() {
        let u = Url::parse("https://user:pw@api.example/v1?api_key=s3cret&x=1#frag")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            url_full(&u),
            "https://REDACTED:REDACTED@api.example/v1?api_key=REDACTED&x=REDACTED"
        );
        let plain = Url::parse("https://api.example/health").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(url_full(&plain), "https://api.example/health");
    }

    #[test]
    fn names_are_the_ones_semconv_lists() {
        assert_eq!(
            iana_cipher("TLS13_AES_256_GCM_SHA384"),
            "TLS_AES_256_GCM_SHA384"
        );
        assert_eq!(
            iana_cipher("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
        );
        assert_eq!(http_method("GET"), "GET");
        assert_eq!(http_method("PURGE"), "_OTHER");
        assert_eq!(grpc_status_name(tonic::Code::Unavailable), "UNAVAILABLE");
        assert_eq!(sql_operation("  select 1").as_deref(), Some("SELECT"));
        assert_eq!(sql_operation("(select 1)"), None);
    }
}
