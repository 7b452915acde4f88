//! Whether a certificate is valid for the host a client asked for, by that client's
//! own rule.
//!
//! OpenSSL-based clients do not agree on the name check, and none of them is
//! WebPKI's: libpq has its own (`pq_verify_peer_name_matches_certificate*` in
//! `fe-secure-common.c` / `fe-secure-openssl.c`), curl has its own
//! (`ossl_verifyhost`), and the MySQL, Redis and broker clients call OpenSSL's
//! `X509_check_host` / `X509_check_ip_asc`. Each rule is written out here from its
//! source, so that a probe's verdict on a name is the one its application's client
//! reaches. A match that only the Common Name gave is told apart: stricter clients
//! (Go 1.15+, browsers, rustls) refuse it, which is a `cert_legacy` notice.

use std::net::IpAddr;

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Whose name rule applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    /// libpq's `verify-full`: SAN dNSName (and iPAddress for an address), the CN
    /// only when no SAN of the host's type is present; `*.` wildcards of one label.
    Libpq,
    /// curl's (OpenSSL back end): SANs of the host's type; the CN only when the
    /// certificate has no dNSName and no iPAddress SAN at all.
    Curl,
    /// OpenSSL's `X509_check_host` (flags 0) for a name, `X509_check_ip_asc` for an
    /// address (the MySQL/MariaDB, Redis and broker clients).
    CheckHost,
}

/// How a name matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NameMatch {
    /// A SAN of the host's type matched.
    San,
    /// Only the subject's Common Name matched (no SAN of the host's type).
    CommonName,
    /// An address host matched a dNSName SAN holding the address as text (libpq).
    AddressAsDnsName,
    /// Nothing matched; the names the certificate holds.
    Mismatch(Vec<String>),
}

/// The names of a certificate, as the rules read them.
struct Names {
    dns: Vec<String>,
    ips: Vec<Vec<u8>>,
    /// Every CN of the subject, in order.
    cns: Vec<String>,
}

fn names(der: &[u8]) -> Option<Names> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let mut out = Names {
        dns: Vec::new(),
        ips: Vec::new(),
        cns: cert
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok().map(str::to_owned))
            .collect(),
    };
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => out.dns.push((*d).to_owned()),
                GeneralName::IPAddress(ip) => out.ips.push(ip.to_vec()),
                _ => {}
            }
        }
    }
    Some(out)
}

impl Names {
    fn listed(&self) -> Vec<String> {
        let mut all: Vec<String> = self.dns.clone();
        all.extend(self.ips.iter().filter_map(|ip| ip_text(ip)));
        if all.is_empty() {
            all.extend(self.cns.iter().map(|cn| format!("CN={cn}")));
        }
        all
    }
}

fn ip_text(bytes: &[u8]) -> Option<String> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes)
            .ok()
            .map(|a| std::net::Ipv4Addr::from(a).to_string()),
        16 => <[u8; 16]>::try_from(bytes)
            .ok()
            .map(|a| std::net::Ipv6Addr::from(a).to_string()),
        _ => None,
    }
}

/// The address `host` names, read as C's `inet_aton` reads it (libpq's
/// `is_ip_address`: `192.000.002.001`, `0x7f.1`, `127.1`), or as an IPv6 address.
pub fn host_address(host: &str) -> Option<IpAddr> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(v6) = bare.parse::<std::net::Ipv6Addr>() {
        return Some(IpAddr::V6(v6));
    }
    inet_aton(bare).map(|v4| IpAddr::V4(std::net::Ipv4Addr::from(v4)))
}

/// `inet_aton`: one to four parts, each decimal, octal (leading 0) or hex (0x); the
/// last part fills the remaining bytes.
fn inet_aton(text: &str) -> Option<u32> {
    let parts: Vec<&str> = text.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut values = Vec::with_capacity(parts.len());
    for p in &parts {
        let (digits, radix) = if let Some(h) = p.strip_prefix("0x").or(p.strip_prefix("0X")) {
            (h, 16)
        } else if p.len() > 1 && p.starts_with('0') {
            (&p[1..], 8)
        } else {
            (*p, 10)
        };
        if p.is_empty() || (digits.is_empty() && radix == 16) {
            return None;
        }
        let v = if digits.is_empty() {
            0
        } else {
            u64::from_str_radix(digits, radix).ok()?
        };
        values.push(v);
    }
    let (last, head) = values.split_last()?;
    let mut addr: u64 = 0;
    for (i, v) in head.iter().enumerate() {
        if *v > 255 {
            return None;
        }
        addr |= v << (24 - 8 * i);
    }
    let rest_bits = 32 - 8 * head.len() as u32;
    if rest_bits < 64 && *last >= (1u64 << rest_bits) {
        return None;
    }
    addr |= last;
    u32::try_from(addr).ok()
}

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// Whether the certificate `der` is valid for `host` under `rule`.
pub fn check(rule: NameRule, der: &[u8], host: &str) -> NameMatch {
    let Some(n) = names(der) else {
        return NameMatch::Mismatch(Vec::new());
    };
    let address = host_address(host);
    let found = match rule {
        NameRule::Libpq => libpq(&n, host, address),
        NameRule::Curl => curl(&n, host, address),
        NameRule::CheckHost => check_host(&n, host, address),
    };
    found.unwrap_or_else(|| NameMatch::Mismatch(n.listed()))
}

/// libpq: every dNSName is compared with the host as text (so an address written
/// as a dNSName matches), every iPAddress with the host's address; the CN counts
/// only when no SAN of the host's type exists.
fn libpq(n: &Names, host: &str, address: Option<IpAddr>) -> Option<NameMatch> {
    for d in &n.dns {
        if d.contains('\0') {
            continue;
        }
        if d.eq_ignore_ascii_case(host) || libpq_wildcard(d, host) {
            return Some(if address.is_some() {
                NameMatch::AddressAsDnsName
            } else {
                NameMatch::San
            });
        }
    }
    if let Some(ip) = address
        && n.ips.iter().any(|c| *c == ip_bytes(ip))
    {
        return Some(NameMatch::San);
    }
    let has_own_type = match address {
        Some(_) => !n.ips.is_empty(),
        None => !n.dns.is_empty(),
    };
    if has_own_type {
        return None;
    }
    // libpq reads the first CN of the subject.
    let cn = n.cns.first()?;
    (cn.eq_ignore_ascii_case(host) || libpq_wildcard(cn, host)).then_some(NameMatch::CommonName)
}

/// libpq's `wildcard_certificate_match`: `*.` first, the rest a suffix of the host,
/// and no dot in what the `*` covers.
fn libpq_wildcard(pattern: &str, host: &str) -> bool {
    let Some(rest) = pattern.strip_prefix('*') else {
        return false;
    };
    if pattern.len() < 3 || !rest.starts_with('.') || pattern.len() > host.len() {
        return false;
    }
    let (covered, tail) = host.as_bytes().split_at(host.len() - rest.len());
    tail.eq_ignore_ascii_case(rest.as_bytes()) && !covered.contains(&b'.')
}

/// curl (7.88, `ossl_verifyhost`): SANs of the host's type only; any dNSName or
/// iPAddress SAN rules the CN out; the CN is the last one of the subject.
fn curl(n: &Names, host: &str, address: Option<IpAddr>) -> Option<NameMatch> {
    match address {
        Some(ip) => {
            if n.ips.iter().any(|c| *c == ip_bytes(ip)) {
                return Some(NameMatch::San);
            }
        }
        None => {
            if n.dns.iter().any(|d| curl_hostmatch(host, d)) {
                return Some(NameMatch::San);
            }
        }
    }
    if !n.dns.is_empty() || !n.ips.is_empty() {
        return None;
    }
    let cn = n.cns.last()?;
    curl_hostmatch(host, cn).then_some(NameMatch::CommonName)
}

/// curl's `hostmatch`: exact (case-insensitive, trailing dots ignored), or a `*.`
/// wildcard of one label in a pattern of at least three labels, never for an
/// address.
fn curl_hostmatch(host: &str, pattern: &str) -> bool {
    let host = host.trim_end_matches('.');
    let pattern = pattern.trim_end_matches('.');
    let Some(rest) = pattern.strip_prefix("*.") else {
        return host.eq_ignore_ascii_case(pattern);
    };
    if host_address(host).is_some() || !rest.contains('.') {
        return host.eq_ignore_ascii_case(pattern);
    }
    match host.split_once('.') {
        Some((label, tail)) => !label.is_empty() && tail.eq_ignore_ascii_case(rest),
        None => false,
    }
}

/// `X509_check_host` with flags 0: dNSName SANs, the CN only without any dNSName;
/// `X509_check_ip_asc`: iPAddress SANs only.
fn check_host(n: &Names, host: &str, address: Option<IpAddr>) -> Option<NameMatch> {
    if let Some(ip) = address {
        return n
            .ips
            .iter()
            .any(|c| *c == ip_bytes(ip))
            .then_some(NameMatch::San);
    }
    let host = host.trim_end_matches('.');
    if !n.dns.is_empty() {
        return n
            .dns
            .iter()
            .any(|d| openssl_wildcard(d, host))
            .then_some(NameMatch::San);
    }
    n.cns
        .iter()
        .any(|cn| openssl_wildcard(cn, host))
        .then_some(NameMatch::CommonName)
}

/// OpenSSL's `equal_wildcard`: exact, or one `*` in the leftmost label of a pattern
/// with at least two labels after it (partial wildcards such as `f*.example.com`
/// allowed, not in an IDNA label).
fn openssl_wildcard(pattern: &str, host: &str) -> bool {
    if pattern.eq_ignore_ascii_case(host) {
        return true;
    }
    let Some((label, rest)) = pattern.split_once('.') else {
        return false;
    };
    if label.matches('*').count() != 1
        || rest.contains('*')
        || !rest.contains('.')
        || label.to_ascii_lowercase().starts_with("xn--")
    {
        return false;
    }
    let Some((host_label, host_rest)) = host.split_once('.') else {
        return false;
    };
    if !host_rest.eq_ignore_ascii_case(rest) || host_label.is_empty() {
        return false;
    }
    let (prefix, suffix) = label.split_once('*').unwrap_or((label, ""));
    let partial = !prefix.is_empty() || !suffix.is_empty();
    if partial && host_label.to_ascii_lowercase().starts_with("xn--") {
        return false;
    }
    let h = host_label.as_bytes();
    h.len() >= prefix.len() + suffix.len()
        && h[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
        && h[h.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inet_aton_reads_octal_hex_and_short_forms() {
        let a = |s: &str| host_address(s).map(|ip| ip.to_string());
        assert_eq!(a("192.000.002.001").as_deref(), Some("192.0.2.1"));
        assert_eq!(a("127.1").as_deref(), Some("127.0.0.1"));
        assert_eq!(a("0x7f.0.0.1").as_deref(), Some("127.0.0.1"));
        assert_eq!(a("::1").as_deref(), Some("::1"));
        assert_eq!(a("localhost"), None);
        assert_eq!(a("1.2.3.256"), None);
        assert_eq!(a("db.example.com"), None);
    }

    #[test]
    fn libpq_wildcards_cover_one_label() {
        assert!(libpq_wildcard("*.pg-ssltest.test", "a.pg-ssltest.test"));
        assert!(!libpq_wildcard("*.pg-ssltest.test", "a.b.pg-ssltest.test"));
        assert!(!libpq_wildcard("*.pg-ssltest.test", "pg-ssltest.test"));
        assert!(!libpq_wildcard("a*.test", "ab.test"));
    }

    #[test]
    fn curl_and_openssl_wildcards() {
        assert!(curl_hostmatch("a.example.com", "*.example.com"));
        assert!(!curl_hostmatch("a.b.example.com", "*.example.com"));
        assert!(!curl_hostmatch("a.com", "*.com"));
        assert!(openssl_wildcard("*.example.com", "A.example.com"));
        assert!(openssl_wildcard("f*.example.com", "foo.example.com"));
        assert!(!openssl_wildcard("*.com", "a.com"));
    }
}
