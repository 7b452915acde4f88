//! Fuzzes the MongoDB connection-string parser (`MongoUrl::parts`). It must not
//! panic; parsed hosts have a name and a port (0 only for `mongodb+srv://`); and
//! the password it read never shows in `Display`, `Debug` or an option.

#![no_main]

use depprobe_fuzz::distinct_secret;
use depprobe_probes::kinds::mongodb::spec::MongoUrl;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let url = MongoUrl::new(text);
    // What follows the scheme, in `Display` and inside `Debug`'s `MongoUrl(...)`:
    // the wrapper and the scheme can spell a password (`MongoUrl(mongodb`, a host
    // and `)`) that the URL does not show.
    let debug = format!("{url:?}");
    let debug = debug
        .strip_prefix("MongoUrl(")
        .and_then(|s| s.strip_suffix(')'))
        .unwrap_or(&debug);
    let shown = [url.to_string(), debug.to_owned()];
    let shown = shown
        .iter()
        .map(|s| s.split_once("://").map_or(s.as_str(), |(_, rest)| rest));
    let Ok(parts) = url.parts() else {
        return;
    };
    assert!(!parts.hosts.is_empty());
    for (host, port) in &parts.hosts {
        assert!(!host.is_empty());
        assert_eq!(*port == 0, parts.srv, "{host}:{port}");
    }
    // A password holding the mask `***` can be rebuilt by the mask itself.
    if let Some(raw) = &parts.raw_password
        && !raw.expose().contains('*')
        && let Some(p) = distinct_secret(text, raw.expose())
    {
        for s in shown {
            assert!(!s.contains(p), "the password shows in {s}");
        }
    }
    let _ = parts.tls();
});
