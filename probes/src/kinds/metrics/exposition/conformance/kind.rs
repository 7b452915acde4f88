//! The types of a metric family, the sample names each type gives its samples,
//! and the metadata lines.

/// The type of a metric family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    StateSet,
    Info,
    Summary,
    Unknown,
}

/// What a sample is to its family, by its name's suffix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// The value of a gauge, state set or unknown family.
    Value,
    Total,
    Created,
    Bucket,
    Count,
    Sum,
    GCount,
    GSum,
    Info,
    Quantile,
}

impl Kind {
    /// The type a `# TYPE` line names (the grammar has checked it is one).
    pub(crate) fn named(name: &str) -> Kind {
        match name {
            "counter" => Kind::Counter,
            "gauge" => Kind::Gauge,
            "histogram" => Kind::Histogram,
            "gaugehistogram" => Kind::GaugeHistogram,
            "stateset" => Kind::StateSet,
            "info" => Kind::Info,
            "summary" => Kind::Summary,
            _ => Kind::Unknown,
        }
    }

    /// Its name in a message.
    pub(super) fn title(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
            Kind::GaugeHistogram => "gauge histogram",
            Kind::StateSet => "state set",
            Kind::Info => "info",
            Kind::Summary => "summary",
            Kind::Unknown => "unknown-type family",
        }
    }

    /// The suffixes of its sample names (the specification's "Suffixes").
    pub(super) fn suffixes(self) -> &'static [(&'static str, Role)] {
        use Role::*;
        match self {
            Kind::Counter => &[("_total", Total), ("_created", Created)],
            Kind::Gauge | Kind::StateSet | Kind::Unknown => &[("", Value)],
            Kind::Info => &[("_info", Info)],
            Kind::Histogram => &[
                ("_bucket", Bucket),
                ("_count", Count),
                ("_sum", Sum),
                ("_created", Created),
            ],
            Kind::GaugeHistogram => &[("_bucket", Bucket), ("_gcount", GCount), ("_gsum", GSum)],
            Kind::Summary => &[
                ("", Quantile),
                ("_count", Count),
                ("_sum", Sum),
                ("_created", Created),
            ],
        }
    }

    /// What a sample named `sample` is to the family `family` of this type.
    pub(super) fn role(self, family: &str, sample: &str) -> Option<Role> {
        let suffix = sample.strip_prefix(family)?;
        self.suffixes()
            .iter()
            .find(|(s, _)| *s == suffix)
            .map(|(_, role)| *role)
    }
}

/// Which metadata line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Meta {
    Type,
    Unit,
    Help,
}

impl Meta {
    pub(super) fn keyword(self) -> &'static str {
        match self {
            Meta::Type => "TYPE",
            Meta::Unit => "UNIT",
            Meta::Help => "HELP",
        }
    }
}
