//! depprobe's probes.
//!
//! A [`Probe`] opens a real connection to one dependency and returns an
//! [`Outcome`]: up, degraded or down, the failure class from the [`taxonomy`], the
//! phase, timings, the TLS facts and findings. The shared transport (DNS, TCP, TLS
//! with chain capture) is in [`transport`]; each probe kind is one module in
//! [`kinds`]. Nothing here knows how outcomes are exported.

pub mod credentials;
pub mod kinds;
pub mod outcome;
pub mod run;
pub mod taxonomy;
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
    use depprobe_config::ProbeSpec;
    Ok(match &cfg.spec {
        ProbeSpec::Tls(spec) => Box::new(kinds::tls::TlsProbe::new(cfg, spec, env)?),
        ProbeSpec::Http(spec) => Box::new(kinds::http::HttpProbe::new(cfg, spec, env)?),
        ProbeSpec::Credential(spec) => {
            Box::new(kinds::credential::CredentialProbe::new(cfg, spec, env)?)
        }
        ProbeSpec::Postgres(spec) => Box::new(kinds::postgres::PostgresProbe::new(cfg, spec, env)?),
        ProbeSpec::Mongodb(spec) => Box::new(kinds::mongodb::MongoProbe::new(cfg, spec, env)?),
        ProbeSpec::Metrics(spec) => Box::new(kinds::metrics::MetricsProbe::new(cfg, spec, env)?),
        ProbeSpec::Otlp(spec) => Box::new(kinds::otlp::OtlpProbe::new(cfg, spec, env)?),
    })
}
