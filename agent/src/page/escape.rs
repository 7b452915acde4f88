//! Escaping for the status page: every text that came from a probe, a server or a
//! configuration (names, messages, certificate fields) goes through [`html`] before
//! it reaches the page, and a target name through [`path_segment`] before it
//! reaches a link.
//!
//! The page only ever puts untrusted text in element content and in double-quoted
//! attribute values; escaping `&`, `<`, `>`, `"` and `'` is correct in both.

use std::fmt::Write;

/// Appends `text` to `out`, escaped for HTML element content and quoted attributes.
pub fn push_html(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// `text`, escaped for HTML element content and quoted attributes.
pub fn html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    push_html(&mut out, text);
    out
}

/// `text` as one URL path segment: every byte but the unreserved ones
/// (`A-Z a-z 0-9 - . _ ~`) percent-encoded, so that `/`, `?`, `#`, `%` and spaces
/// in a target's name stay inside its segment.
pub fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Decodes a percent-encoded URL component (`+` stays `+` unless `plus_is_space`);
/// `None` when an escape is malformed or the bytes are not UTF-8.
pub fn percent_decode(text: &str, plus_is_space: bool) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                // from_str_radix would take a sign (`%+1`): two hex digits only.
                let hex = bytes.get(i + 1..i + 3)?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The first value of `key` in a query string (`a=1&b=2`), decoded; `None` when
/// absent, empty or malformed.
pub fn query_param(query: &str, key: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| percent_decode(k, true).as_deref() == Some(key))
        .and_then(|(_, v)| percent_decode(v, true))
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_becomes_text() {
        assert_eq!(
            html(r#"<script>alert("x")</script>"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"
        );
        assert_eq!(html("a & b's"), "a &amp; b&#39;s");
        assert_eq!(html("already &amp; escaped"), "already &amp;amp; escaped");
    }

    #[test]
    fn an_attribute_cannot_be_closed() {
        let attr = html(r#"" onmouseover="alert(1)"#);
        assert!(!attr.contains('"'), "{attr}");
        assert!(!html("' x='").contains('\''));
    }

    #[test]
    fn plain_text_is_unchanged() {
        assert_eq!(
            html("expired-db-proxy ✓ ünïcode"),
            "expired-db-proxy ✓ ünïcode"
        );
    }

    #[test]
    fn a_name_stays_in_its_segment() {
        assert_eq!(path_segment("api/v1 ?x#y%"), "api%2Fv1%20%3Fx%23y%25");
        assert_eq!(path_segment("orders-db_1.~"), "orders-db_1.~");
        assert_eq!(path_segment("é"), "%C3%A9");
    }

    #[test]
    fn decoding_reverses_encoding() {
        for name in ["api/v1 ?x#y%", "<script>", "é ü", "a+b"] {
            assert_eq!(
                percent_decode(&path_segment(name), false).as_deref(),
                Some(name)
            );
        }
    }

    #[test]
    fn malformed_escapes_are_refused() {
        assert_eq!(percent_decode("%", false), None);
        assert_eq!(percent_decode("%4", false), None);
        assert_eq!(percent_decode("%zz", false), None);
        assert_eq!(percent_decode("%ff%fe", false), None);
        assert_eq!(percent_decode("%+1", false), None);
    }

    #[test]
    fn query_parameters_are_found_and_decoded() {
        let q = "status=down&kind=http&name=a+b%2Fc&empty=";
        assert_eq!(query_param(q, "status").as_deref(), Some("down"));
        assert_eq!(query_param(q, "kind").as_deref(), Some("http"));
        assert_eq!(query_param(q, "name").as_deref(), Some("a b/c"));
        assert_eq!(query_param(q, "empty"), None);
        assert_eq!(query_param(q, "missing"), None);
        assert_eq!(query_param("", "status"), None);
    }
}
