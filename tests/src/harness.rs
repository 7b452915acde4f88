//! Running a probe from a few lines of YAML, as the agent would.

use std::collections::HashMap;
use std::path::PathBuf;

use depprobe_config::Config;
use depprobe_probes::{ErrorType, Finding, FindingType, Outcome, Phase, Probe, ProbeEnv, Status};

pub use depprobe_demo::Scratch;

use crate::certs::{Ca, CertError, Identity, Validity};

/// Why a case could not run.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The configuration is invalid.
    #[error("{0}")]
    Config(#[from] depprobe_config::ConfigErrors),
    /// A probe could not be built.
    #[error("{0}")]
    Build(#[from] depprobe_probes::BuildError),
}

/// Parses a whole configuration with the process environment.
pub fn config(yaml: &str) -> Result<Config, HarnessError> {
    let env: HashMap<String, String> = std::env::vars().collect();
    Ok(depprobe_probes::parse_config(yaml, "test.yaml", &env)?)
}

/// Builds the single probe described by `probe_yaml` (the keys of one list item,
/// unindented), to run it as often as a case needs.
pub fn build_one(probe_yaml: &str) -> Result<Box<dyn Probe>, HarnessError> {
    let mut yaml = String::from("probes:\n");
    for (i, line) in probe_yaml.trim_end().lines().enumerate() {
        yaml.push_str(if i == 0 { "  - " } else { "    " });
        yaml.push_str(line);
        yaml.push('\n');
    }
    let cfg = config(&yaml)?;
    let env = ProbeEnv::system()?;
    Ok(depprobe_probes::build(&cfg.probes[0], &env)?)
}

/// Runs, once, the single probe described by `probe_yaml` (the keys of one list
/// item, unindented).
pub async fn run_once(probe_yaml: &str) -> Result<Outcome, HarnessError> {
    Ok(build_one(probe_yaml)?.run().await)
}

/// Asserts that `o` is down with `class` in `phase` (the outcome is printed if not).
pub fn assert_down(o: &Outcome, class: ErrorType, phase: Phase) {
    assert_eq!(o.status, Status::Down, "{o:#?}");
    assert_eq!(o.error_type, Some(class), "{o:#?}");
    assert_eq!(o.phase, Some(phase), "{o:#?}");
}

/// The detail `key` of `o`; panics, printing the outcome, when there is none.
pub fn detail<'o>(o: &'o Outcome, key: &str) -> &'o serde_json::Value {
    o.details
        .get(key)
        .unwrap_or_else(|| panic!("no detail {key}: {o:#?}"))
}

/// The finding `kind` of `o`; panics, printing the outcome, when there is none.
pub fn finding(o: &Outcome, kind: FindingType) -> &Finding {
    o.findings
        .iter()
        .find(|f| f.kind == kind)
        .unwrap_or_else(|| panic!("no {kind} finding: {o:#?}"))
}

/// A test CA as a database provider runs one: a root, an issuing intermediate, and
/// the root in a file for `tls.ca_file`.
pub struct Pki {
    /// The root CA.
    pub root: Ca,
    /// The intermediate that issues the servers' certificates.
    pub issuing: Ca,
    /// The root's certificate, in a file.
    pub root_file: PathBuf,
    _files: Scratch,
}

impl Pki {
    /// A PKI whose CAs are named `<name> Root CA` and `<name> Issuing CA`.
    pub fn new(name: &str) -> Result<Pki, CertError> {
        let root = Ca::root(&format!("{name} Root CA"))?;
        let issuing =
            root.intermediate(&format!("{name} Issuing CA"), Validity::days(-100, 1000))?;
        let files = Scratch::new().map_err(|source| CertError::Write {
            path: std::env::temp_dir(),
            source,
        })?;
        let root_file = files.ca(&root)?;
        Ok(Pki {
            root,
            issuing,
            root_file,
            _files: files,
        })
    }

    /// A server certificate for `localhost`, issued by the intermediate.
    pub fn localhost(&self, validity: Validity) -> Result<Identity, CertError> {
        self.issuing.leaf(&["localhost"], validity)
    }
}

/// A JWT with these claims (JSON) and a dummy signature: enough for a probe, which
/// reads a token's times and never its signature.
pub fn jwt(claims_json: &str) -> String {
    use base64::Engine;
    let b = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    format!(
        "{}.{}.{}",
        b(r#"{"alg":"RS256","typ":"JWT"}"#),
        b(claims_json),
        b("not-a-real-signature")
    )
}

/// Unix seconds, now plus `offset` seconds.
pub fn unix_in(offset: i64) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    now + offset
}
