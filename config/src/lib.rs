//! depprobe's configuration: the YAML schema, defaults, `${ENV}` interpolation and
//! validation whose every error names file, line, column and key path.
//!
//! Loading goes text -> located tree ([`tree`]) -> `defaults` merged into each probe
//! -> typed structs ([`model`], and each kind's settings) -> checks. Nothing here
//! knows any probe kind: the kinds are declared in `depprobe-probes`, which hands
//! their [`KindEntry`] list to [`load`] and [`parse_str`] and turns a
//! [`ProbeConfig`] into a running probe.

use std::collections::HashMap;
use std::path::Path;

pub mod de;
pub mod duration;
pub mod error;
pub mod files;
pub mod http;
pub mod kind;
mod load;
pub mod model;
pub mod secret;
pub mod suggest;
pub mod tree;

pub use duration::ConfigDuration;
pub use error::{ConfigError, ConfigErrors, LoadError};
pub use kind::{Check, Checked, Kind, KindEntry, KindSpec, ProbeSpec};
pub use model::{
    AgentConfig, ClientProfile, Config, ExpiryWindow, OcspMode, OtlpCompression, OtlpConfig,
    OtlpProtocol, ProbeConfig, TelemetryConfig, TlsSpec,
};
pub use secret::{Secret, SecretError, SecretSource};

use error::Errors;
use tree::Loc;

/// Reads and checks the configuration file at `path`, interpolating from the
/// process environment; `kinds` are the probe kinds it may use.
pub fn load(path: &Path, kinds: &[KindEntry]) -> Result<Config, LoadError> {
    let text = files::read_bounded_text(path, files::MAX_CONFIG_BYTES).map_err(|source| {
        LoadError::Read {
            path: path.to_owned(),
            source,
        }
    })?;
    let env: HashMap<String, String> = std::env::vars().collect();
    parse_str(&text, &path.display().to_string(), &env, kinds).map_err(LoadError::Invalid)
}

/// Checks configuration `text` read from `file` (used in messages), interpolating
/// `${VAR}` from `env`; `kinds` are the probe kinds it may use.
pub fn parse_str(
    text: &str,
    file: &str,
    env: &HashMap<String, String>,
    kinds: &[KindEntry],
) -> Result<Config, ConfigErrors> {
    let mut errors = Errors::new(file);
    let unset = tree::unset_references(text, env);
    if !unset.is_empty() {
        // The key each reference sits under, from the document read with the unset
        // variables empty (when it reads at all).
        let mut lenient = env.clone();
        for (_, name) in &unset {
            lenient.entry(name.clone()).or_default();
        }
        let root = tree::parse(text, &lenient).ok();
        for (loc, name) in unset {
            let path = root
                .as_ref()
                .map(|r| tree::path_at(r, loc))
                .unwrap_or_default();
            errors.push(
                loc,
                path,
                format!("environment variable `{name}` is not set (write ${{{name}:-default}} for a default)"),
            );
        }
        return Err(ConfigErrors(errors.list));
    }
    let root = match tree::parse(text, env) {
        Ok(root) => root,
        Err(e) => {
            let loc = e
                .location()
                .map(|l| Loc {
                    line: l.line(),
                    column: l.column(),
                })
                .unwrap_or_default();
            errors.push(loc, "", yaml_message(&e));
            return Err(ConfigErrors(errors.list));
        }
    };
    let config = load::build(&root, file, kinds, &mut errors);
    match config {
        Some(c) if errors.list.is_empty() => Ok(c),
        _ => {
            errors.list.sort_by_key(|e| (e.line, e.column));
            Err(ConfigErrors(errors.list))
        }
    }
}

/// serde-saphyr's message without the snippet and the position (we print our own).
fn yaml_message(e: &serde_saphyr::Error) -> String {
    let text = e.without_snippet().to_string();
    let text = match text.rfind(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    };
    format!("invalid YAML: {text}")
}

/// Splits `host:port` (`[v6]:port` for IPv6) into its parts.
pub fn split_host_port(address: &str) -> Option<(String, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() || host.contains(':') && !address.starts_with('[') {
        return None;
    }
    Some((host.to_owned(), port))
}

impl Config {
    /// Every secret written in the configuration (after interpolation), so that
    /// outputs can be scrubbed of them. Secrets read from files are added by the
    /// probes that read them.
    pub fn inline_secrets(&self) -> Vec<Secret> {
        let mut out: Vec<Secret> = self
            .telemetry
            .otlp
            .iter()
            .flat_map(|o| o.headers.values().cloned())
            .collect();
        for p in &self.probes {
            out.extend(p.spec.inline_secrets());
        }
        out
    }
}
