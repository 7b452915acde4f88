//! From a configuration file to probes ready to run.

use std::path::Path;
use std::sync::Arc;

use depprobe_config::Config;
use depprobe_probes::{Probe, ProbeEnv};

pub use crate::shard::Shard;

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
