//! From a configuration file to probes ready to run.

use std::path::Path;
use std::sync::Arc;

use depprobe_config::Config;
use depprobe_probes::{Probe, ProbeEnv};

/// Why the agent cannot start on a configuration.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The file is missing or invalid; the text has one located error per line.
    #[error("{0}")]
    Config(String),
    /// A probe could not be built from valid-looking settings (a PEM file that
    /// holds no certificate, say).
    #[error("{0}")]
    Build(String),
}

/// Loads the configuration at `path`.
pub fn load(path: &Path) -> Result<Config, SetupError> {
    depprobe_probes::load_config(path).map_err(|e| SetupError::Config(e.to_string()))
}

/// Builds every probe of `config`, in order. Each failure names the file and probe.
pub fn build(config: &Config, env: &ProbeEnv) -> Result<Vec<Arc<dyn Probe>>, SetupError> {
    let mut probes = Vec::with_capacity(config.probes.len());
    let mut errors = Vec::new();
    for (i, p) in config.probes.iter().enumerate() {
        match depprobe_probes::build(p, env) {
            Ok(probe) => probes.push(Arc::from(probe)),
            Err(e) => errors.push(format!("{}: probes[{i}] ({}): {e}", config.source, p.name)),
        }
    }
    if errors.is_empty() {
        Ok(probes)
    } else {
        Err(SetupError::Build(errors.join("\n")))
    }
}

/// Loads and builds in one step.
pub fn load_and_build(
    path: &Path,
    env: &ProbeEnv,
) -> Result<(Config, Vec<Arc<dyn Probe>>), SetupError> {
    load_and_build_shard(path, env, None)
}

/// Loads, keeps this shard's probes, and builds them.
pub fn load_and_build_shard(
    path: &Path,
    env: &ProbeEnv,
    shard: Option<Shard>,
) -> Result<(Config, Vec<Arc<dyn Probe>>), SetupError> {
    let mut config = load(path)?;
    if let Some(s) = shard {
        config.probes.retain(|p| s.keeps(&p.name));
    }
    let probes = build(&config, env)?;
    Ok((config, probes))
}

/// One of `n` deterministic shards of a shared configuration (`--shard i/n`), by a
/// stable hash of each probe's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// 1-based index.
    pub index: u64,
    /// Number of shards.
    pub count: u64,
}

impl Shard {
    /// Whether the probe named `name` belongs to this shard.
    pub fn keeps(&self, name: &str) -> bool {
        crate::scheduler::stable_hash(name) % self.count == self.index - 1
    }
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a shard: write i/n with 1 <= i <= n, e.g. 2/4");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: u64 = i.trim().parse().map_err(|_| bad())?;
        let count: u64 = n.trim().parse().map_err(|_| bad())?;
        if index == 0 || count == 0 || index > count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}
