//! What a kind declares for the rest of depprobe, so that exporters render it
//! without knowing the kind: its metric families and their samples, and the
//! semantic attributes of its spans.
//!
//! A kind lists its families in its [`crate::kinds::ProbeKind`] declaration and puts
//! the values of a run in [`crate::Run::samples`]; the agent exports every declared
//! family from the samples of each target's last outcome.

/// Whether a family is a gauge or a monotonic counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Instrument {
    /// A value that goes up and down.
    Gauge,
    /// A cumulative count kept by the probe across runs.
    Counter,
}

/// Whether a family's values are integers or floats (OTLP keeps the difference).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Number {
    /// Unsigned integers.
    U64,
    /// Floats.
    F64,
}

/// One metric family a kind exports besides the common ones.
#[derive(Debug)]
pub struct MetricDecl {
    /// OpenTelemetry name (`probe.mongodb.members`).
    pub name: &'static str,
    /// UCUM unit (`s`, `1`, `{member}`, ...); every family has one, and `s` gives
    /// the Prometheus name its `_seconds`.
    pub unit: Option<&'static str>,
    /// Help text.
    pub description: &'static str,
    /// Gauge or counter.
    pub instrument: Instrument,
    /// Integer or float.
    pub number: Number,
    /// The samples are instants (unix seconds) and the family exports the time
    /// left until them at collection time.
    pub until_now: bool,
}

/// One value of a declared family, from one run.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The family's name (a [`MetricDecl::name`]).
    pub metric: &'static str,
    /// The value.
    pub value: f64,
    /// The series' own attributes, after the target's.
    pub attributes: Vec<(&'static str, String)>,
}

impl Sample {
    /// A sample of `family` without attributes of its own.
    pub fn new(family: &MetricDecl, value: f64) -> Self {
        Sample {
            metric: family.name,
            value,
            attributes: Vec::new(),
        }
    }

    /// Adds an attribute.
    pub fn with(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.attributes.push((key, value.into()));
        self
    }
}

/// A semantic attribute of a run's span (`db.system.name`, `rpc.system.name`, ...).
pub type Attribute = (&'static str, String);
