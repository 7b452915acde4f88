//! depprobe's probes.
//!
//! A [`Probe`] opens a real connection to one dependency and returns an
//! [`Outcome`]: up, degraded or down, the failure class from the [`taxonomy`], the
//! phase, timings, the TLS facts and findings. The shared transport (DNS, TCP, TLS
//! with chain capture) is in [`transport`]; each probe kind is one module in
//! [`kinds`]. Nothing here knows how outcomes are exported.

pub mod credentials;
pub mod declared;
pub mod kinds;
pub mod memory;
pub mod outcome;
pub mod run;
pub mod secrets;
pub mod semconv;
pub mod taxonomy;
pub mod trace;
pub mod transport;

use futures::future::BoxFuture;

pub use outcome::{
    CertFacts, Finding, FindingType, HttpFacts, Outcome, Problem, Severity, Target, Timings,
    TlsFacts,
};
pub use run::{ProbeError, ProbeMeta, Run};
pub use taxonomy::{ErrorType, Phase, Status};
pub use transport::Dns;

/// One configured probe, ready to run again and again.
pub trait Probe: Send + Sync {
    /// Its identity and target.
    fn meta(&self) -> &ProbeMeta;

    /// One run, bounded by the probe's timeout.
    fn run(&self) -> BoxFuture<'_, Outcome>;
}

/// The body of a probe run: what most kinds implement. A kind that implements it is
/// a [`Probe`]: the run starts, `exec` does the work, the run finishes into an
/// outcome.
pub trait Exec: Send + Sync {
    /// Its identity and target.
    fn meta(&self) -> &ProbeMeta;

    /// One run's work: `Ok` with the success message, or the failure.
    fn exec(
        &self,
        run: &mut Run<'_>,
    ) -> impl std::future::Future<Output = Result<String, ProbeError>> + Send;
}

impl<T: Exec> Probe for T {
    fn meta(&self) -> &ProbeMeta {
        Exec::meta(self)
    }

    fn run(&self) -> BoxFuture<'_, Outcome> {
        Box::pin(async move {
            let mut run = Run::start(Exec::meta(self));
            let result = self.exec(&mut run).await;
            run.finish(result)
        })
    }
}

/// What probes share at run time.
#[derive(Clone, Debug)]
pub struct ProbeEnv {
    /// The DNS resolver.
    pub dns: Dns,
}

impl ProbeEnv {
    /// The environment of this process: the system's resolver. Call it inside the
    /// Tokio runtime that will run the probes.
    pub fn system() -> Result<ProbeEnv, BuildError> {
        Ok(ProbeEnv {
            dns: Dns::system().map_err(|e| BuildError::Invalid(format!("DNS resolver: {e}")))?,
        })
    }
}

/// Why a probe could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Its TLS settings could not be loaded (CA, client certificate, CRL).
    #[error("tls: {0}")]
    Tls(#[from] transport::tls::TlsSetupError),
    /// Something else in its settings is unusable.
    #[error("{0}")]
    Invalid(String),
}

/// Builds the probe `cfg` describes.
pub fn build(
    cfg: &depprobe_config::ProbeConfig,
    env: &ProbeEnv,
) -> Result<Box<dyn Probe>, BuildError> {
    let kind = cfg.spec.kind();
    kinds::find(kind.as_str())
        .ok_or_else(|| BuildError::Invalid(format!("unknown kind `{kind}`")))?
        .build(cfg, env)
}

/// Reads and checks the configuration file at `path` with every registered kind.
pub fn load_config(
    path: &std::path::Path,
) -> Result<depprobe_config::Config, depprobe_config::LoadError> {
    depprobe_config::load(path, kinds::CONFIG_KINDS)
}

/// Checks configuration `text` (from `file`, for messages) with every registered
/// kind, interpolating `${VAR}` from `env`.
pub fn parse_config(
    text: &str,
    file: &str,
    env: &std::collections::HashMap<String, String>,
) -> Result<depprobe_config::Config, depprobe_config::ConfigErrors> {
    depprobe_config::parse_str(text, file, env, kinds::CONFIG_KINDS)
}
