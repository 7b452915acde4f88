//! Fuzzes configuration loading: YAML text with `${VAR}` references (set, unset,
//! with defaults, whose values hold YAML syntax), through `parse_str` and, for the
//! same text written to a file, `load`. Neither may panic; every error is located
//! inside the text; a configuration that loads lists its inline secrets.

#![no_main]

use std::collections::HashMap;
use std::io::Write;
use std::sync::OnceLock;

use depprobe_config::{LoadError, parse_str};
use depprobe_probes::kinds::CONFIG_KINDS;
use libfuzzer_sys::fuzz_target;

/// Values that interpolate into YAML syntax, so that a value can try to become
/// structure.
const ENV: &[(&str, &str)] = &[
    ("TOKEN", "eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjF9.c2ln"),
    ("PASSWORD", "p@ss:w/rd?#"),
    ("EMPTY", ""),
    ("YAML", "a: [1, {b: \"c\"}]\n- x"),
    ("QUOTE", "\"'${TOKEN}"),
    ("HOST", "127.0.0.1"),
    (
        "LONG",
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    ),
];

fn env() -> &'static HashMap<String, String> {
    static ENV_MAP: OnceLock<HashMap<String, String>> = OnceLock::new();
    ENV_MAP.get_or_init(|| {
        ENV.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Lines as YAML counts them: a lone `\r` breaks a line too (as in editors).
    let lines = (text.replace("\r\n", "\n").split(['\n', '\r']).count()) as u64;
    match parse_str(text, "fuzz.yaml", env(), CONFIG_KINDS) {
        Ok(config) => {
            let _ = config.inline_secrets();
        }
        Err(errors) => {
            assert!(!errors.0.is_empty());
            for e in &errors.0 {
                assert!(e.line <= lines + 1, "{e} (text of {lines} lines)");
                assert!(!e.message.is_empty());
            }
        }
    }
    // The same text from a file: `load` must agree on whether it is valid (the
    // process environment sets none of the variables above, so a text that uses
    // none of them must load the same way).
    if !text.contains('$') {
        let dir = std::env::temp_dir().join(format!("depprobe-fuzz-config-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("config.yaml");
        if let Ok(mut f) = std::fs::File::create(&path) {
            let _ = f.write_all(data);
        }
        let from_str = parse_str(
            text,
            &path.display().to_string(),
            &HashMap::new(),
            CONFIG_KINDS,
        );
        match (depprobe_config::load(&path, CONFIG_KINDS), from_str) {
            (Ok(_), Ok(_)) | (Err(LoadError::Read { .. }), _) => {}
            (Err(LoadError::Invalid(a)), Err(b)) => assert_eq!(a, b),
            (a, b) => panic!("load and parse_str disagree: {a:?} / {b:?}"),
        }
    }
});
