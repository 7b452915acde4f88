//! Fuzzes the `postgres://` URL parser through the public resolution of a probe's
//! settings (`PostgresSpec::target`). It must not panic; a resolved target has a
//! host, a user and a port; and a password the URL holds (as the `url` crate reads
//! it) never shows in an error or in the target's `Debug`.

#![no_main]

use depprobe_fuzz::{distinct_secret, echoes, with_other_secret};
use depprobe_probes::kinds::postgres::spec::PostgresSpec;
use libfuzzer_sys::fuzz_target;

/// The spec of a probe whose `url` is `text`, if it deserialises.
fn spec_of(text: &str) -> Option<PostgresSpec> {
    serde_json::from_value::<PostgresSpec>(serde_json::json!({ "url": text })).ok()
}

/// Everything resolving `text` shows: the target's `Debug`, or every message.
fn shown_by(spec: &PostgresSpec) -> String {
    match spec.target() {
        Ok(target) => format!("{target:?}"),
        Err(errors) => errors
            .iter()
            .map(|(_, m)| m.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Some(spec) = spec_of(text) else {
        return;
    };
    // Counted in the URL as the `url` crate reads it: it drops tabs and newlines
    // anywhere, so `pa\rss` elsewhere in the text is the password written twice.
    let parsed = url::Url::parse(text).ok();
    let written = parsed
        .as_ref()
        .and_then(|u| distinct_secret(u.as_str(), u.password()?));
    match spec.target() {
        Ok(target) => {
            assert!(!target.host.trim().is_empty());
            assert!(!target.user.is_empty());
        }
        Err(errors) => {
            assert!(!errors.is_empty());
            for (key, message) in &errors {
                assert!(!message.is_empty(), "empty message for `{key}`");
            }
        }
    }
    // An echo is the password in what is shown, and not in what the same URL
    // with another password shows (which holds the fixed wording only).
    if let (Some(p), Some(u)) = (written, &parsed) {
        let shown = shown_by(&spec);
        let source = if text.matches(p).count() == 1 {
            text
        } else {
            u.as_str()
        };
        let otherwise = spec_of(&with_other_secret(source, p))
            .map(|s| shown_by(&s))
            .unwrap_or_default();
        assert!(
            !echoes(&shown, p, &otherwise),
            "the password shows in {shown}"
        );
    }
});
