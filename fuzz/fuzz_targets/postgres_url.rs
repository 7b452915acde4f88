//! Fuzzes the `postgres://` URL parser through the public resolution of a probe's
//! settings (`PostgresSpec::target`). It must not panic; a resolved target has a
//! host, a user and a port; and a password the URL holds (as the `url` crate reads
//! it) never shows in an error or in the target's `Debug`.

#![no_main]

use depprobe_fuzz::distinct_secret;
use depprobe_probes::kinds::postgres::spec::PostgresSpec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(spec) = serde_json::from_value::<PostgresSpec>(serde_json::json!({ "url": text }))
    else {
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
            if let Some(p) = written {
                let shown = format!("{target:?}");
                assert!(!shown.contains(p), "the password shows in {shown}");
            }
        }
        Err(errors) => {
            assert!(!errors.is_empty());
            for (key, message) in &errors {
                assert!(!message.is_empty(), "empty message for `{key}`");
                if let Some(p) = written {
                    assert!(!message.contains(p), "the password shows in {message}");
                }
            }
        }
    }
});
