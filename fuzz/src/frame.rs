//! How the fuzzer's bytes become the shapes the parsers take: a large scrape from a
//! small input, a certificate chain from concatenated DER, a time from four bytes.
//! Plain `std`, so that `scripts/fuzz` checks it with `rustc --test` in a second,
//! without building the crates under test a second time.

use std::time::{Duration, SystemTime};

/// The largest body [`amplify`] builds: past the 10 MiB scrape cap there is
/// nothing new to learn, and a smaller cap keeps each run fast.
pub const AMPLIFIED_MAX: usize = 4 << 20;

/// Builds a large body from a small input, so that the fuzzer explores scrapes of
/// megabytes (60,000 distinct labels on one sample, a million lines) without
/// mutating megabytes: two bytes of repeat count (big-endian, times 16), then
/// `prefix 0xFF unit 0xFF suffix`. The body is the prefix, the unit repeated with
/// each 0xFE in it replaced by the repetition's number (`l0xFE="v",` gives
/// `l0="v",l1="v",...`), then the suffix, capped at [`AMPLIFIED_MAX`]. 0xFE and
/// 0xFF never occur in UTF-8, so neither can be wanted inside a part.
pub fn amplify(data: &[u8]) -> Vec<u8> {
    let Some((count, rest)) = data.split_first_chunk::<2>() else {
        return data.to_vec();
    };
    let count = usize::from(u16::from_be_bytes(*count)) * 16;
    let mut parts = rest.splitn(3, |b| *b == 0xFF);
    let prefix = parts.next().unwrap_or_default();
    let unit = parts.next().unwrap_or_default();
    let suffix = parts.next().unwrap_or_default();
    let room = AMPLIFIED_MAX.saturating_sub(prefix.len() + suffix.len());
    let mut body = Vec::with_capacity(prefix.len() + suffix.len() + room.min(unit.len() * count));
    body.extend_from_slice(prefix);
    let limit = prefix.len() + room;
    for i in 0..if unit.is_empty() { 0 } else { count } {
        let number = i.to_string();
        let grown = unit.len() + unit.iter().filter(|b| **b == 0xFE).count() * number.len();
        if body.len() + grown > limit {
            break;
        }
        for b in unit {
            match b {
                0xFE => body.extend_from_slice(number.as_bytes()),
                _ => body.push(*b),
            }
        }
    }
    body.extend_from_slice(suffix);
    body
}

/// Certificates in a chain at most: servers send two to four.
pub const CHAIN_MAX: usize = 8;

/// Splits concatenated DER into certificates by their outer TLV length, as a
/// server's chain is laid out: a real chain (`cat leaf.der ca.der`) is a seed as
/// it is. What does not frame is the last certificate, bytes as they are.
pub fn der_chain(mut data: &[u8]) -> Vec<&[u8]> {
    let mut chain = Vec::new();
    while !data.is_empty() && chain.len() < CHAIN_MAX {
        let len = der_length(data).unwrap_or(data.len()).min(data.len());
        let (one, rest) = data.split_at(len.max(1));
        chain.push(one);
        data = rest;
    }
    chain
}

/// The length, header included, of the DER element that starts `data`.
fn der_length(data: &[u8]) -> Option<usize> {
    let first = *data.get(1)?;
    if first < 0x80 {
        return Some(2 + usize::from(first));
    }
    let octets = usize::from(first & 0x7F);
    if octets == 0 || octets > 4 {
        return None;
    }
    let bytes = data.get(2..2 + octets)?;
    let body = bytes.iter().fold(0usize, |n, b| (n << 8) | usize::from(*b));
    (2 + octets).checked_add(body)
}

/// A moment from four bytes: seconds around 2026-01-01 (plus or minus 68 years),
/// so that a crash replays at the same time it was found.
pub fn moment(bytes: [u8; 4]) -> SystemTime {
    const ORIGIN: u64 = 1_767_225_600; // 2026-01-01T00:00:00Z
    let offset = i32::from_be_bytes(bytes);
    let base = SystemTime::UNIX_EPOCH + Duration::from_secs(ORIGIN);
    if offset >= 0 {
        base + Duration::from_secs(u64::from(offset.unsigned_abs()))
    } else {
        base - Duration::from_secs(u64::from(offset.unsigned_abs()))
    }
}

/// A password of a URL and how it is written, when it is long enough and appears
/// once in the URL, so that finding it elsewhere means it was echoed (a short or
/// repeated one may be in the text for another reason).
pub fn distinct_secret<'a>(url: &str, written: &'a str) -> Option<&'a str> {
    (written.len() >= 8 && url.matches(written).count() == 1).then_some(written)
}

/// `url` with its one `secret` replaced by a letter repeated as often, a letter the
/// secret does not hold: the same URL to a parser, with another password.
pub fn with_other_secret(url: &str, secret: &str) -> String {
    let letter = ['Z', 'Q', 'X', 'J', 'K']
        .into_iter()
        .find(|c| !secret.contains(*c))
        .unwrap_or('W');
    url.replacen(
        secret,
        &letter.to_string().repeat(secret.chars().count()),
        1,
    )
}

/// Whether `shown` echoes `secret`: it holds it, and `shown_otherwise` (the same
/// text made from [`with_other_secret`]'s URL) does not. A secret that is part of
/// the fixed wording (`.example.` of "db.example.com") is in both, and is no echo.
pub fn echoes(shown: &str, secret: &str, shown_otherwise: &str) -> bool {
    shown.contains(secret) && !shown_otherwise.contains(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_in_the_fixed_wording_is_no_echo() {
        let url = "gpms://p:.example.@d:/b";
        let other = with_other_secret(url, ".example.");
        assert_eq!(other, "gpms://p:ZZZZZZZZZ@d:/b");
        let wording = "e.g. postgres://probe@db.example.com:5432/app";
        assert!(!echoes(wording, ".example.", wording));
        assert!(echoes(
            "bad URL p:.example.@d",
            ".example.",
            "bad URL p:ZZZZZZZZZ@d"
        ));
    }

    #[test]
    fn amplify_repeats_the_unit_between_prefix_and_suffix() {
        let body = amplify(b"\x00\x01x{\xFFa=\"b\",\xFF} 1\n");
        let text = String::from_utf8(body).unwrap();
        assert!(text.starts_with("x{a=\"b\",a=\"b\","));
        assert!(text.ends_with("} 1\n"));
        assert_eq!(text.matches("a=\"b\",").count(), 16);
    }

    #[test]
    fn amplify_numbers_each_repetition() {
        let body = amplify(b"\x00\x01x{\xFFl\xFE=\"v\",\xFF} 1\n");
        let text = String::from_utf8(body).unwrap();
        assert!(text.starts_with("x{l0=\"v\",l1=\"v\","), "{text}");
        assert!(text.contains("l15=\"v\",} 1\n"), "{text}");
    }

    #[test]
    fn amplify_caps_the_body() {
        assert!(amplify(b"\xFF\xFF\xFFxxxxxxxx\xFF").len() <= AMPLIFIED_MAX);
    }

    #[test]
    fn der_chain_stops_at_the_chain_limit() {
        assert_eq!(der_chain(&[0x30, 0x00].repeat(20)).len(), CHAIN_MAX);
    }

    #[test]
    fn moment_counts_from_2026() {
        let origin = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        assert_eq!(moment([0, 0, 0, 60]), origin + Duration::from_secs(60));
        assert_eq!(
            moment([0xFF, 0xFF, 0xFF, 0xC4]),
            origin - Duration::from_secs(60)
        );
    }

    #[test]
    fn distinct_secret_wants_eight_characters_seen_once() {
        assert_eq!(
            distinct_secret("u:hunter22@h", "hunter22"),
            Some("hunter22")
        );
        assert_eq!(distinct_secret("u:hunter2@h", "hunter2"), None);
        assert_eq!(distinct_secret("u:hunter22@hunter22", "hunter22"), None);
    }

    #[test]
    fn der_chain_splits_by_outer_length() {
        let chain = der_chain(&[0x30, 0x02, 1, 2, 0x30, 0x81, 0x01, 9, 0x30]);
        assert_eq!(chain, [&[0x30, 2, 1, 2][..], &[0x30, 0x81, 1, 9], &[0x30]]);
    }
}
