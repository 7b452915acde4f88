//! What the configuration knows of probe kinds: their names and their typed
//! settings, and nothing of how they run.
//!
//! The kinds themselves live in `depprobe-probes`, one module each; every kind's
//! settings type implements [`KindSpec`] and [`Checked`], and its module hands the
//! loader a [`KindEntry`] made by [`KindEntry::of`]. The loader takes the list of
//! entries as an argument, so this crate stays free of any particular kind and the
//! compiler checks every kind's settings through the same two traits.

use std::any::Any;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::de::from_node;
use crate::error::Errors;
use crate::model::TlsSpec;
use crate::tree::{Loc, Node, Value};

/// A probe kind's name, as written in `kind:` and exported as `probe.kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Kind(&'static str);

impl Kind {
    /// The kind named `name` (the name a kind declares).
    pub const fn new(name: &'static str) -> Kind {
        Kind(name)
    }

    /// The name used in `kind:` and in the `probe.kind` attribute.
    pub const fn as_str(self) -> &'static str {
        self.0
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// A kind's typed settings: what a probe of that kind was configured with.
pub trait KindSpec: Any + std::fmt::Debug + Send + Sync {
    /// Secrets written inline in these settings (scrubbed from every output).
    fn inline_secrets(&self) -> Vec<crate::Secret> {
        Vec::new()
    }
}

/// A probe's kind-specific settings, typed by its kind.
#[derive(Clone, Debug)]
pub struct ProbeSpec {
    kind: Kind,
    settings: Arc<dyn KindSpec>,
}

impl ProbeSpec {
    /// Settings `settings` of kind `kind`.
    pub fn new(kind: Kind, settings: Arc<dyn KindSpec>) -> Self {
        ProbeSpec { kind, settings }
    }

    /// The kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The settings as their own type, when they are of type `T`.
    pub fn get<T: KindSpec>(&self) -> Option<&T> {
        let any: &dyn Any = self.settings.as_ref();
        any.downcast_ref::<T>()
    }

    /// Secrets written inline in these settings.
    pub fn inline_secrets(&self) -> Vec<crate::Secret> {
        self.settings.inline_secrets()
    }
}

/// How the loader learns of one kind: its name, its keys and how to type them.
#[derive(Clone, Copy)]
pub struct KindEntry {
    /// The kind's name.
    pub kind: Kind,
    /// The keys of the kind's own settings (common keys excluded).
    pub fields: fn() -> &'static [&'static str],
    /// Types and checks the kind's settings.
    pub parse: fn(&mut Check<'_>) -> Option<Arc<dyn KindSpec>>,
}

impl std::fmt::Debug for KindEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind.as_str())
    }
}

impl KindEntry {
    /// The entry of kind `name` whose settings are of type `T`.
    pub const fn of<T: KindSpec + DeserializeOwned + Checked>(name: &'static str) -> KindEntry {
        KindEntry {
            kind: Kind::new(name),
            fields: fields_of::<T>,
            parse: parse_as::<T>,
        }
    }

    /// The entry named `name` among `kinds`.
    pub fn find<'k>(kinds: &'k [KindEntry], name: &str) -> Option<&'k KindEntry> {
        kinds.iter().find(|k| k.kind.as_str() == name)
    }
}

fn parse_as<T: KindSpec + DeserializeOwned + Checked>(
    check: &mut Check<'_>,
) -> Option<Arc<dyn KindSpec>> {
    check.typed::<T>().map(|t| Arc::new(t) as Arc<dyn KindSpec>)
}

/// A kind's settings after typing: their own checks.
pub trait Checked {
    /// Reports every problem through `check`.
    fn check(&self, check: &mut Check<'_>);
}

/// The context a kind's checks report into: errors are located by key path.
pub struct Check<'a> {
    node: &'a Node,
    path: &'a str,
    errors: &'a mut Errors,
}

impl<'a> Check<'a> {
    /// A check of the probe mapping `node` (its kind's keys) at `path`.
    pub(crate) fn new(node: &'a Node, path: &'a str, errors: &'a mut Errors) -> Self {
        Check { node, path, errors }
    }

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
        if let Some(dir) = &tls.crl_dir
            && !dir.is_dir()
        {
            self.error(
                "tls.crl_dir",
                format!("directory {} does not exist", dir.display()),
            );
        }
        if tls.critical_before.surely_exceeds(&tls.warn_before) {
            self.error(
                "tls.critical_before",
                "`critical_before` must not exceed `warn_before`",
            );
        }
        if let Some(re) = &tls.expect_issuer
            && let Err(e) = regex::Regex::new(re)
        {
            self.error(
                "tls.expect_issuer",
                format!("not a valid regular expression: {e}"),
            );
        }
        for (i, pin) in tls.pin_sha256.iter().enumerate() {
            if let Err(e) = crate::model::decode_pin(pin) {
                self.error(&format!("tls.pin_sha256[{i}]"), e);
            }
        }
        if tls.ocsp_timeout.0.is_zero() {
            self.error("tls.ocsp_timeout", "must be longer than zero");
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
pub fn locate(node: &Node, key: &str) -> Loc {
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
pub fn fields_of<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
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
