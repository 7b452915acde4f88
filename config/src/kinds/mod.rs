//! The probe kinds and their keys.
//!
//! Each kind is one module with its typed settings and their checks. Adding a kind
//! is: a module here, a variant of [`Kind`] and [`ProbeSpec`], and one arm in
//! [`parse_spec`] and [`kind_fields`].

use std::path::Path;

use serde::Deserialize;

use crate::de::from_node;
use crate::error::Errors;
use crate::model::TlsSpec;
use crate::tree::{Loc, Node, Value};

pub mod credential;
pub mod http;
pub mod metrics;
pub mod mongodb;
pub mod otlp;
pub mod postgres;
pub mod tls;

/// The kinds of probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A TLS handshake.
    Tls,
    /// An HTTP(S) request.
    Http,
    /// A local secret: token file, certificate and key, environment variable.
    Credential,
    /// A PostgreSQL session: TLS, login, query.
    Postgres,
    /// A MongoDB deployment: TLS, login, `ping`, replica-set watch.
    Mongodb,
    /// A Prometheus / OpenMetrics scrape.
    Metrics,
    /// One export to an OTLP receiver.
    Otlp,
}

impl Kind {
    /// Every kind, in documentation order.
    pub const ALL: &'static [Kind] = &[
        Kind::Tls,
        Kind::Http,
        Kind::Postgres,
        Kind::Mongodb,
        Kind::Metrics,
        Kind::Otlp,
        Kind::Credential,
    ];

    /// The name used in `kind:` and in the `probe.kind` attribute.
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Tls => "tls",
            Kind::Http => "http",
            Kind::Credential => "credential",
            Kind::Postgres => "postgres",
            Kind::Mongodb => "mongodb",
            Kind::Metrics => "metrics",
            Kind::Otlp => "otlp",
        }
    }

    /// The kind named `name`.
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.iter().copied().find(|k| k.as_str() == name)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A probe's kind-specific settings.
// Built once per probe at load time; boxing the variants would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum ProbeSpec {
    /// `kind: tls`.
    Tls(tls::TlsProbeSpec),
    /// `kind: http`.
    Http(http::HttpSpec),
    /// `kind: credential`.
    Credential(credential::CredentialSpec),
    /// `kind: postgres`.
    Postgres(postgres::PostgresSpec),
    /// `kind: mongodb`.
    Mongodb(mongodb::MongoSpec),
    /// `kind: metrics`.
    Metrics(metrics::MetricsSpec),
    /// `kind: otlp`.
    Otlp(otlp::OtlpProbeSpec),
}

impl ProbeSpec {
    /// The kind.
    pub fn kind(&self) -> Kind {
        match self {
            ProbeSpec::Tls(_) => Kind::Tls,
            ProbeSpec::Http(_) => Kind::Http,
            ProbeSpec::Credential(_) => Kind::Credential,
            ProbeSpec::Postgres(_) => Kind::Postgres,
            ProbeSpec::Mongodb(_) => Kind::Mongodb,
            ProbeSpec::Metrics(_) => Kind::Metrics,
            ProbeSpec::Otlp(_) => Kind::Otlp,
        }
    }

    /// Secrets written inline in these settings.
    pub fn inline_secrets(&self) -> Vec<crate::Secret> {
        match self {
            ProbeSpec::Tls(_) => Vec::new(),
            ProbeSpec::Http(h) => h.inline_secrets(),
            ProbeSpec::Credential(_) => Vec::new(),
            ProbeSpec::Postgres(p) => p.inline_secrets(),
            ProbeSpec::Mongodb(m) => m.inline_secrets(),
            ProbeSpec::Metrics(m) => m.credentials().inline_secrets(),
            ProbeSpec::Otlp(o) => o.credentials().inline_secrets(),
        }
    }
}

/// The keys of a kind's own settings (common keys excluded).
pub(crate) fn kind_fields(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Tls => fields_of::<tls::TlsProbeSpec>(),
        Kind::Http => fields_of::<http::HttpSpec>(),
        Kind::Credential => fields_of::<credential::CredentialSpec>(),
        Kind::Postgres => fields_of::<postgres::PostgresSpec>(),
        Kind::Mongodb => fields_of::<mongodb::MongoSpec>(),
        Kind::Metrics => fields_of::<metrics::MetricsSpec>(),
        Kind::Otlp => fields_of::<otlp::OtlpProbeSpec>(),
    }
}

/// Types the kind's settings from `node` (the probe's mapping without the common
/// keys) and checks them.
pub(crate) fn parse_spec(
    kind: Kind,
    node: &Node,
    path: &str,
    errors: &mut Errors,
) -> Option<ProbeSpec> {
    let mut check = Check { node, path, errors };
    match kind {
        Kind::Tls => check.typed::<tls::TlsProbeSpec>().map(ProbeSpec::Tls),
        Kind::Http => check.typed::<http::HttpSpec>().map(ProbeSpec::Http),
        Kind::Credential => check
            .typed::<credential::CredentialSpec>()
            .map(ProbeSpec::Credential),
        Kind::Postgres => check
            .typed::<postgres::PostgresSpec>()
            .map(ProbeSpec::Postgres),
        Kind::Mongodb => check.typed::<mongodb::MongoSpec>().map(ProbeSpec::Mongodb),
        Kind::Metrics => check
            .typed::<metrics::MetricsSpec>()
            .map(ProbeSpec::Metrics),
        Kind::Otlp => check.typed::<otlp::OtlpProbeSpec>().map(ProbeSpec::Otlp),
    }
}

/// A kind's settings after typing: their own checks.
pub(crate) trait Checked {
    /// Reports every problem through `check`.
    fn check(&self, check: &mut Check<'_>);
}

/// The context a kind's checks report into: errors are located by key path.
pub(crate) struct Check<'a> {
    node: &'a Node,
    path: &'a str,
    errors: &'a mut Errors,
}

impl Check<'_> {
    fn typed<T: for<'de> Deserialize<'de> + Checked>(&mut self) -> Option<T> {
        match from_node::<T>(self.node, self.path) {
            Ok(spec) => {
                let before = self.errors.list.len();
                spec.check(self);
                (self.errors.list.len() == before).then_some(spec)
            }
            Err(e) => {
                self.errors.push_de(e, self.node.loc, self.path);
                None
            }
        }
    }

    /// Reports `message` at the key `key` (dotted, relative to the probe), or at the
    /// nearest enclosing key that is written.
    pub fn error(&mut self, key: &str, message: impl Into<String>) {
        let loc = locate(self.node, key);
        let path = if key.is_empty() {
            self.path.to_owned()
        } else {
            format!("{}.{key}", self.path)
        };
        self.errors.push(loc, path, message);
    }

    /// Reports an error when `path` (under `key`) does not name a readable file.
    pub fn file_exists(&mut self, key: &str, path: Option<&Path>) {
        if let Some(p) = path
            && !p.is_file()
        {
            self.error(
                key,
                format!("file {} does not exist or is not a file", p.display()),
            );
        }
    }

    /// Reports an error when both `a` and `b` are set.
    pub fn exclusive(&mut self, a: &str, a_set: bool, b: &str, b_set: bool) {
        if a_set && b_set {
            self.error(b, format!("set either `{a}` or `{b}`, not both"));
        }
    }

    /// The checks shared by every kind that speaks TLS.
    pub fn tls(&mut self, tls: &TlsSpec) {
        if let Some(v) = &tls.min_version
            && v != "1.2"
            && v != "1.3"
        {
            self.error(
                "tls.min_version",
                format!("unsupported TLS version `{v}`; use \"1.2\" or \"1.3\""),
            );
        }
        if tls.cert_file.is_some() != tls.key_file.is_some() {
            let key = if tls.cert_file.is_some() {
                "tls.cert_file"
            } else {
                "tls.key_file"
            };
            self.error(
                key,
                "a client certificate needs both `cert_file` and `key_file`",
            );
        }
        self.file_exists("tls.ca_file", tls.ca_file.as_deref());
        self.file_exists("tls.cert_file", tls.cert_file.as_deref());
        self.file_exists("tls.key_file", tls.key_file.as_deref());
        self.file_exists("tls.crl_file", tls.crl_file.as_deref());
        if tls.critical_before > tls.warn_before {
            self.error(
                "tls.critical_before",
                "`critical_before` must not exceed `warn_before`",
            );
        }
        if !tls.system_roots && tls.ca_file.is_none() {
            self.error(
                "tls.system_roots",
                "with `system_roots: false`, set `ca_file`: nothing would be trusted",
            );
        }
    }
}

/// The position of the dotted `key` under `node` (`expect.series[1].min`: an index
/// names a list item), or of the deepest part written.
pub(crate) fn locate(node: &Node, key: &str) -> Loc {
    let mut here = node;
    let mut loc = node.loc;
    'parts: for part in key.split('.').filter(|p| !p.is_empty()) {
        let (name, indices) = part.split_at(part.find('[').unwrap_or(part.len()));
        if !name.is_empty() {
            match here.entry(name) {
                Some(entry) => {
                    loc = entry.key_loc;
                    here = &entry.value;
                }
                None => break,
            }
        }
        let indices = indices
            .split('[')
            .filter_map(|i| i.strip_suffix(']')?.parse::<usize>().ok());
        for i in indices {
            match &here.value {
                Value::Seq(items) if i < items.len() => {
                    here = &items[i];
                    loc = here.loc;
                }
                _ => break 'parts,
            }
        }
    }
    loc
}

/// The field names serde expects for struct `T`, read by asking it to deserialize
/// from a deserializer that only records them.
pub(crate) fn fields_of<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
    struct Probe<'f>(&'f mut &'static [&'static str]);

    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("stop")
        }
    }
    impl std::error::Error for Stop {}
    impl serde::de::Error for Stop {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Stop
        }
    }

    impl<'de> serde::Deserializer<'de> for Probe<'_> {
        type Error = Stop;
        fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            *self.0 = fields;
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }

    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Probe(&mut fields));
    fields
}
