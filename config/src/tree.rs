//! The YAML document as a tree of located nodes.
//!
//! serde-saphyr parses the text (and interpolates `${VAR}`), but the typed structs of
//! the schema are filled from this tree rather than from the text directly: the tree
//! keeps the line and column of every key and value, so that defaults can be merged
//! into probes before typing, and every later error (unknown key, wrong type, failed
//! validation) can name the exact place and key path it comes from.

use std::collections::HashMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// A position in the configuration file, 1-based.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Loc {
    /// Line, from 1.
    pub line: u64,
    /// Column, from 1.
    pub column: u64,
}

impl Loc {
    fn of<T>(s: &Spanned<T>) -> Loc {
        Loc {
            line: s.referenced.line(),
            column: s.referenced.column(),
        }
    }
}

/// One value of the document with its position.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// What the node holds.
    pub value: Value,
    /// Where the node starts.
    pub loc: Loc,
}

/// The content of a [`Node`].
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `null`, `~` or an empty value.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer too large for `i64`.
    UInt(u64),
    /// A floating-point number.
    Float(f64),
    /// A string.
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in document order.
    Map(Vec<Entry>),
}

/// One `key: value` pair of a mapping.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The key text.
    pub key: String,
    /// Where the key is written.
    pub key_loc: Loc,
    /// The value.
    pub value: Node,
}

impl Node {
    /// A node that was not written in the file (a default), placed at `loc`.
    pub fn synthetic(value: Value, loc: Loc) -> Node {
        Node { value, loc }
    }

    /// The entries when this node is a mapping.
    pub fn as_map(&self) -> Option<&[Entry]> {
        match &self.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    /// The entries when this node is a mapping, mutably.
    pub fn as_map_mut(&mut self) -> Option<&mut Vec<Entry>> {
        match &mut self.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    /// The entry for `key` when this node is a mapping that has it.
    pub fn entry(&self, key: &str) -> Option<&Entry> {
        self.as_map()?.iter().find(|e| e.key == key)
    }

    /// The value under `key` when this node is a mapping that has it.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|e| &e.value)
    }

    /// The text of a string scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A short name for the node's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) | Value::UInt(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// Fills in, recursively, every key of `defaults` that this mapping lacks.
    /// Mappings present on both sides are merged key by key; anything else already
    /// present here wins.
    pub fn merge_defaults(&mut self, defaults: &Node) {
        let (Some(mine), Some(theirs)) = (self.as_map_mut(), defaults.as_map()) else {
            return;
        };
        for default in theirs {
            match mine.iter_mut().find(|e| e.key == default.key) {
                Some(existing) => existing.value.merge_defaults(&default.value),
                None => mine.push(default.clone()),
            }
        }
    }
}

/// Parses YAML text into a located tree, interpolating `${VAR}` from `env`.
pub fn parse(text: &str, env: &HashMap<String, String>) -> Result<Node, serde_saphyr::Error> {
    let mut options = serde_saphyr::options! {
        property_syntax: serde_saphyr::PropertySyntax::DockerCompose,
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::Error,
    };
    options = options.with_properties(env.clone());
    let root: Spanned<Raw> = serde_saphyr::from_str_with_options(text, options)?;
    Ok(root.into())
}

/// The shape serde-saphyr fills; turned into [`Node`] right away.
struct Raw(RawValue);

enum RawValue {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Raw>>),
    Map(Vec<(Spanned<KeyText>, Spanned<Raw>)>),
}

impl From<Spanned<Raw>> for Node {
    fn from(s: Spanned<Raw>) -> Node {
        let loc = Loc::of(&s);
        let value = match s.value.0 {
            RawValue::Null => Value::Null,
            RawValue::Bool(b) => Value::Bool(b),
            RawValue::Int(i) => Value::Int(i),
            RawValue::UInt(u) => Value::UInt(u),
            RawValue::Float(f) => Value::Float(f),
            RawValue::Str(s) => Value::Str(s),
            RawValue::Seq(items) => Value::Seq(items.into_iter().map(Node::from).collect()),
            RawValue::Map(entries) => Value::Map(
                entries
                    .into_iter()
                    .map(|(k, v)| Entry {
                        key_loc: Loc::of(&k),
                        key: k.value.0,
                        value: Node::from(v),
                    })
                    .collect(),
            ),
        };
        Node { value, loc }
    }
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Raw, E> {
        Ok(Raw(RawValue::Null))
    }
    fn visit_none<E: de::Error>(self) -> Result<Raw, E> {
        Ok(Raw(RawValue::Null))
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Raw, D::Error> {
        Raw::deserialize(d)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Raw, E> {
        Ok(Raw(RawValue::Bool(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Raw, E> {
        Ok(Raw(RawValue::Int(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Raw, E> {
        Ok(Raw(match i64::try_from(v) {
            Ok(i) => RawValue::Int(i),
            Err(_) => RawValue::UInt(v),
        }))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Raw, E> {
        Ok(Raw(RawValue::Float(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Raw, E> {
        Ok(Raw(RawValue::Str(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Raw, E> {
        Ok(Raw(RawValue::Str(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Raw>>()? {
            items.push(item);
        }
        Ok(Raw(RawValue::Seq(items)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<KeyText>>()? {
            let value = map.next_value::<Spanned<Raw>>()?;
            entries.push((key, value));
        }
        Ok(Raw(RawValue::Map(entries)))
    }
}

/// A mapping key, whatever scalar type YAML gave it, as text.
struct KeyText(String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Raw::deserialize(d)?;
        match raw.0 {
            RawValue::Str(s) => Ok(KeyText(s)),
            RawValue::Bool(b) => Ok(KeyText(b.to_string())),
            RawValue::Int(i) => Ok(KeyText(i.to_string())),
            RawValue::UInt(u) => Ok(KeyText(u.to_string())),
            RawValue::Float(f) => Ok(KeyText(f.to_string())),
            RawValue::Null => Ok(KeyText(String::new())),
            RawValue::Seq(_) | RawValue::Map(_) => {
                Err(de::Error::custom("a mapping key must be a plain value"))
            }
        }
    }
}

/// Finds `${NAME}` and `$NAME` references to variables that `env` does not set, in
/// values (comments are skipped). Each is reported with its position so that an unset
/// secret is a configuration error rather than a silent empty string.
/// `${NAME:-default}` and the other operator forms are left to the interpolation.
pub fn unset_references(text: &str, env: &HashMap<String, String>) -> Vec<(Loc, String)> {
    let mut found = Vec::new();
    for (line_no, line) in text.lines().enumerate() {
        let chars: Vec<char> = line.chars().collect();
        let mut quote: Option<char> = None;
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            match quote {
                Some(q) if c == q => quote = None,
                None if c == '"' || c == '\'' => quote = Some(c),
                None if c == '#' && (i == 0 || chars[i - 1].is_whitespace()) => break,
                _ => {}
            }
            if c == '$' {
                if chars.get(i + 1) == Some(&'$') {
                    i += 2;
                    continue;
                }
                let (name, simple, len) = reference_at(&chars[i + 1..]);
                if simple && !name.is_empty() && !env.contains_key(&name) {
                    found.push((
                        Loc {
                            line: line_no as u64 + 1,
                            column: i as u64 + 1,
                        },
                        name,
                    ));
                }
                i += 1 + len;
                continue;
            }
            i += 1;
        }
    }
    found
}

/// The key path (`probes[0].bearer_token`) of the value written at `at`: the last
/// value that starts at or before it, in document order. Empty when `at` is before
/// every value.
pub fn path_at(root: &Node, at: Loc) -> String {
    fn before(a: Loc, b: Loc) -> bool {
        (a.line, a.column) <= (b.line, b.column)
    }
    fn walk(node: &Node, path: String, at: Loc, best: &mut Option<(Loc, String)>) {
        if before(node.loc, at) && best.as_ref().is_none_or(|(l, _)| before(*l, node.loc)) {
            *best = Some((node.loc, path.clone()));
        }
        match &node.value {
            Value::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk(item, format!("{path}[{i}]"), at, best);
                }
            }
            Value::Map(entries) => {
                for e in entries {
                    let p = if path.is_empty() {
                        e.key.clone()
                    } else {
                        format!("{path}.{}", e.key)
                    };
                    walk(&e.value, p, at, best);
                }
            }
            _ => {}
        }
    }
    let mut best = None;
    walk(root, String::new(), at, &mut best);
    best.map(|(_, p)| p).unwrap_or_default()
}

/// Reads a reference after `$`: the name, whether it is the plain form (no operator),
/// and how many characters it spans.
fn reference_at(rest: &[char]) -> (String, bool, usize) {
    let is_name = |c: &char| c.is_ascii_alphanumeric() || *c == '_';
    if rest.first() == Some(&'{') {
        let name: String = rest[1..].iter().take_while(|c| is_name(c)).collect();
        let after = 1 + name.chars().count();
        let simple = rest.get(after) == Some(&'}');
        let len = rest[after..]
            .iter()
            .position(|c| *c == '}')
            .map_or(rest.len(), |p| after + p + 1);
        (name, simple, len)
    } else {
        let name: String = rest.iter().take_while(|c| is_name(c)).collect();
        let starts_ok = name.chars().next().is_some_and(|c| !c.is_ascii_digit());
        let len = name.chars().count();
        (if starts_ok { name } else { String::new() }, true, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn keys_and_values_keep_their_positions() {
        let root = parse("a:\n  b: 1\n  c: [x, y]\n", &env(&[])).unwrap();
        let a = root.entry("a").unwrap();
        assert_eq!(a.key_loc, Loc { line: 1, column: 1 });
        let b = a.value.entry("b").unwrap();
        assert_eq!(b.key_loc, Loc { line: 2, column: 3 });
        assert_eq!(b.value.value, Value::Int(1));
        assert_eq!(b.value.loc, Loc { line: 2, column: 6 });
    }

    #[test]
    fn quoted_values_are_interpolated() {
        let root = parse("h: \"Bearer ${TOK}\"\n", &env(&[("TOK", "s3")])).unwrap();
        assert_eq!(root.get("h").unwrap().as_str(), Some("Bearer s3"));
    }

    #[test]
    fn unset_references_are_found_outside_comments() {
        let text =
            "a: ${SET}\nb: \"x ${MISSING}\" # ${IN_COMMENT}\nc: ${OPT:-d}\nd: $$LITERAL $BARE\n";
        let found = unset_references(text, &env(&[("SET", "1")]));
        let names: Vec<_> = found
            .iter()
            .map(|(l, n)| (l.line, l.column, n.as_str()))
            .collect();
        assert_eq!(names, vec![(2, 7, "MISSING"), (4, 14, "BARE")]);
    }

    #[test]
    fn defaults_fill_missing_keys_deeply() {
        let mut probe = parse("tls:\n  server_name: a\n", &env(&[])).unwrap();
        let defaults = parse(
            "tls:\n  server_name: b\n  ca_file: /x\ninterval: 5s\n",
            &env(&[]),
        )
        .unwrap();
        probe.merge_defaults(&defaults);
        let tls = probe.get("tls").unwrap();
        assert_eq!(tls.get("server_name").unwrap().as_str(), Some("a"));
        assert_eq!(tls.get("ca_file").unwrap().as_str(), Some("/x"));
        assert_eq!(probe.get("interval").unwrap().as_str(), Some("5s"));
    }
}
