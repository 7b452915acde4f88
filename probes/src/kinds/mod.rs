//! The probe kinds: one module each, and the one list that registers them.
//!
//! A kind is a module that declares itself with [`ProbeKind`]: its name, its
//! settings type (with their checks), how a probe is built from them, the semantic
//! attributes of its spans, the metric families it adds and the findings only it
//! reports. Its run is an [`Exec`] that reads top to bottom (dial, handshake,
//! request, judge) over the shared [`crate::transport`]. Adding a kind is its
//! module(s) and one line in [`registry!`] below; a kind that is declared only in
//! part does not compile.

use depprobe_config::{Checked, KindEntry, KindSpec, ProbeConfig};
use serde::de::DeserializeOwned;

use crate::declared::MetricDecl;
use crate::outcome::FindingType;
use crate::{BuildError, Exec, Probe, ProbeEnv};

/// Everything the rest of depprobe needs to know about one kind.
pub trait ProbeKind: Exec + Sized + 'static {
    /// The name written in `kind:` and exported as `probe.kind`.
    const NAME: &'static str;
    /// What the kind probes, in a few words (for `depprobe` help and the docs).
    const ABOUT: &'static str;
    /// The kind's own settings and their checks.
    type Spec: KindSpec + DeserializeOwned + Checked;
    /// Semantic attributes of every span of the kind (`db.system.name`, ...); a run
    /// may set its own instead ([`crate::Run::attribute`]).
    const ATTRIBUTES: &'static [(&'static str, &'static str)] = &[];
    /// The metric families the kind exports besides the common ones.
    const METRICS: &'static [&'static MetricDecl] = &[];
    /// The findings only this kind reports.
    const FINDINGS: &'static [FindingType] = &[];
    /// Whether a run is local work (reading a file) rather than a call to a server:
    /// its span is INTERNAL and its target is `file.path`, not `server.address`.
    const LOCAL: bool = false;

    /// The probe `cfg` describes, with its settings `spec`.
    fn build(cfg: &ProbeConfig, spec: &Self::Spec, env: &ProbeEnv) -> Result<Self, BuildError>;
}

/// A registered kind, as the rest of depprobe sees it.
pub struct Registered {
    /// What the configuration loader needs.
    pub entry: KindEntry,
    /// What the kind probes.
    pub about: &'static str,
    /// [`ProbeKind::ATTRIBUTES`].
    pub attributes: &'static [(&'static str, &'static str)],
    /// [`ProbeKind::METRICS`].
    pub metrics: &'static [&'static MetricDecl],
    /// [`ProbeKind::FINDINGS`].
    pub findings: &'static [FindingType],
    /// [`ProbeKind::LOCAL`].
    pub local: bool,
    build: BuildFn,
}

/// Builds a probe of one kind from its configuration.
type BuildFn = fn(&ProbeConfig, &ProbeEnv) -> Result<Box<dyn Probe>, BuildError>;

impl Registered {
    const fn of<K: ProbeKind>() -> Registered {
        Registered {
            entry: KindEntry::of::<K::Spec>(K::NAME),
            about: K::ABOUT,
            attributes: K::ATTRIBUTES,
            metrics: K::METRICS,
            findings: K::FINDINGS,
            local: K::LOCAL,
            build: build_as::<K>,
        }
    }

    /// Builds the probe `cfg` describes (its settings must be of this kind).
    pub fn build(&self, cfg: &ProbeConfig, env: &ProbeEnv) -> Result<Box<dyn Probe>, BuildError> {
        (self.build)(cfg, env)
    }
}

fn build_as<K: ProbeKind>(cfg: &ProbeConfig, env: &ProbeEnv) -> Result<Box<dyn Probe>, BuildError> {
    let spec = cfg.spec.get::<K::Spec>().ok_or_else(|| {
        BuildError::Invalid(format!(
            "probe `{}`: settings of kind `{}` given to kind `{}`",
            cfg.name,
            cfg.spec.kind(),
            K::NAME
        ))
    })?;
    Ok(Box::new(K::build(cfg, spec, env)?))
}

/// Whether the kind named `name` does local work ([`ProbeKind::LOCAL`]).
pub fn is_local(name: &str) -> bool {
    find(name).is_some_and(|k| k.local)
}

/// The kind named `name`.
pub fn find(name: &str) -> Option<&'static Registered> {
    KINDS.iter().find(|k| k.entry.kind.as_str() == name)
}

/// Every metric family a kind may export besides the common ones: those shared by
/// several kinds, then each kind's own, each once.
pub fn metric_families() -> Vec<&'static MetricDecl> {
    let mut out: Vec<&'static MetricDecl> = vec![&crate::credentials::TIME_LEFT];
    for family in KINDS.iter().flat_map(|k| k.metrics.iter().copied()) {
        if !out.iter().any(|f| f.name == family.name) {
            out.push(family);
        }
    }
    out
}

/// Declares the kinds' modules and lists them in [`KINDS`] and [`CONFIG_KINDS`].
macro_rules! registry {
    ($($module:ident :: $probe:ident,)+) => {
        $(pub mod $module;)+

        /// Every kind, in documentation order.
        pub static KINDS: &[Registered] = &[$(Registered::of::<$module::$probe>(),)+];

        /// What the configuration loader needs to know of every kind.
        pub static CONFIG_KINDS: &[KindEntry] = &[$(
            KindEntry::of::<<$module::$probe as ProbeKind>::Spec>(
                <$module::$probe as ProbeKind>::NAME,
            ),
        )+];
    };
}

pub mod broker_url;
pub mod dburl;
pub mod role;

registry! {
    tls::TlsProbe,
    http::HttpProbe,
    postgres::PostgresProbe,
    mongodb::MongoProbe,
    mysql::MysqlProbe,
    redis::RedisProbe,
    metrics::MetricsProbe,
    otlp::OtlpProbe,
    credential::CredentialProbe,
    grpc::GrpcProbe,
    amqp::AmqpProbe,
    nats::NatsProbe,
    mqtt::MqttProbe,
    smtp::SmtpProbe,
}
