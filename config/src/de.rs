//! A serde deserializer over the located tree.
//!
//! The schema structs derive `Deserialize`; this deserializer feeds them from a
//! [`Node`] and turns every serde error into one that carries the key path
//! (`probes[2].tls.ca_file`) and the line and column it refers to. An unknown key is
//! reported where the key is written, with the nearest valid key suggested.

use std::fmt;

use serde::de::{self, DeserializeSeed, Error as _, IntoDeserializer, Visitor};

use crate::tree::{Entry, Loc, Node, Value};

/// A deserialization error, located.
#[derive(Debug, Clone)]
pub struct DeError {
    /// What is wrong.
    pub message: String,
    /// Where, once known.
    pub loc: Option<Loc>,
    /// The key path, once known.
    pub path: Option<String>,
    /// Set for an unknown key: the key and the keys that are valid there.
    unknown: Option<(String, Vec<&'static str>)>,
}

impl DeError {
    fn at(mut self, loc: Loc, path: &str) -> Self {
        if self.loc.is_none() {
            self.loc = Some(loc);
            self.path = Some(path.to_owned());
        }
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            message: msg.to_string(),
            loc: None,
            path: None,
            unknown: None,
        }
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let mut e = DeError::custom(unknown_key_message(field, expected));
        e.unknown = Some((field.to_owned(), expected.to_vec()));
        e
    }

    fn missing_field(field: &'static str) -> Self {
        DeError::custom(format!("missing required key `{field}`"))
    }
}

/// "unknown key `x`; did you mean `y`?" or the list of valid keys.
pub fn unknown_key_message(key: &str, valid: &[&str]) -> String {
    match crate::suggest::nearest(key, valid) {
        Some(best) => format!("unknown key `{key}`; did you mean `{best}`?"),
        None if valid.is_empty() => format!("unknown key `{key}`"),
        None => format!("unknown key `{key}`; valid keys here: {}", valid.join(", ")),
    }
}

/// Deserializes `T` from `node`, whose key path is `path`.
pub fn from_node<'a, T: serde::Deserialize<'a>>(node: &'a Node, path: &str) -> Result<T, DeError> {
    T::deserialize(NodeDe {
        node,
        path: path.to_owned(),
    })
}

/// The deserializer for one node.
pub struct NodeDe<'a> {
    node: &'a Node,
    path: String,
}

impl<'a> NodeDe<'a> {
    fn wrap<T>(&self, r: Result<T, DeError>) -> Result<T, DeError> {
        r.map_err(|e| e.at(self.node.loc, &self.path))
    }

    fn invalid(&self, expected: &str) -> DeError {
        DeError::custom(format!(
            "expected {expected}, found {}",
            self.node.type_name()
        ))
        .at(self.node.loc, &self.path)
    }

    fn scalar_text(&self) -> Option<String> {
        match &self.node.value {
            Value::Str(s) => Some(s.clone()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Int(i) => Some(i.to_string()),
            Value::UInt(u) => Some(u.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Null | Value::Seq(_) | Value::Map(_) => None,
        }
    }

    fn integer(&self) -> Option<i128> {
        match &self.node.value {
            Value::Int(i) => Some(i128::from(*i)),
            Value::UInt(u) => Some(i128::from(*u)),
            Value::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
}

macro_rules! int_method {
    ($method:ident, $visit:ident, $ty:ty) => {
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            let Some(i) = self.integer() else {
                return Err(self.invalid("an integer"));
            };
            let Ok(v) = <$ty>::try_from(i) else {
                return Err(DeError::custom(format!(
                    "{i} is out of range (expected {} to {})",
                    <$ty>::MIN,
                    <$ty>::MAX
                ))
                .at(self.node.loc, &self.path));
            };
            let r = visitor.$visit(v);
            self.wrap(r)
        }
    };
}

impl<'de, 'a: 'de> de::Deserializer<'de> for NodeDe<'a> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match &self.node.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Int(i) => visitor.visit_i64(*i),
            Value::UInt(u) => visitor.visit_u64(*u),
            Value::Float(f) => visitor.visit_f64(*f),
            Value::Str(s) => visitor.visit_borrowed_str(s),
            Value::Seq(items) => visitor.visit_seq(SeqDe {
                items: items.iter(),
                index: 0,
                path: &self.path,
            }),
            Value::Map(entries) => visit_map(visitor, entries, &self.path),
        };
        self.wrap(r)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let b = match &self.node.value {
            Value::Bool(b) => *b,
            Value::Str(s) if s == "true" => true,
            Value::Str(s) if s == "false" => false,
            _ => return Err(self.invalid("true or false")),
        };
        let r = visitor.visit_bool(b);
        self.wrap(r)
    }

    int_method!(deserialize_i8, visit_i8, i8);
    int_method!(deserialize_i16, visit_i16, i16);
    int_method!(deserialize_i32, visit_i32, i32);
    int_method!(deserialize_i64, visit_i64, i64);
    int_method!(deserialize_u8, visit_u8, u8);
    int_method!(deserialize_u16, visit_u16, u16);
    int_method!(deserialize_u32, visit_u32, u32);
    int_method!(deserialize_u64, visit_u64, u64);

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let f = match &self.node.value {
            Value::Float(f) => *f,
            Value::Int(i) => *i as f64,
            Value::UInt(u) => *u as f64,
            Value::Str(s) => match s.trim().parse() {
                Ok(f) => f,
                Err(_) => return Err(self.invalid("a number")),
            },
            _ => return Err(self.invalid("a number")),
        };
        let r = visitor.visit_f64(f);
        self.wrap(r)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match &self.node.value {
            Value::Str(s) => visitor.visit_borrowed_str(s),
            _ => match self.scalar_text() {
                Some(text) => visitor.visit_string(text),
                None => return Err(self.invalid("a string")),
            },
        };
        self.wrap(r)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match self.node.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(NodeDe {
                node: self.node,
                path: self.path.clone(),
            }),
        };
        self.wrap(r)
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = visitor.visit_unit();
        self.wrap(r)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let path = self.path.clone();
        let node = self.node;
        let r = visitor.visit_newtype_struct(NodeDe { node, path });
        self.wrap(r)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let Value::Seq(items) = &self.node.value else {
            return Err(self.invalid("a list"));
        };
        let r = visitor.visit_seq(SeqDe {
            items: items.iter(),
            index: 0,
            path: &self.path,
        });
        self.wrap(r)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let Value::Map(entries) = &self.node.value else {
            return Err(self.invalid("a mapping"));
        };
        let r = visit_map(visitor, entries, &self.path);
        self.wrap(r)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let r = match &self.node.value {
            Value::Str(s) => visitor.visit_enum(s.as_str().into_deserializer()),
            Value::Map(entries) if entries.len() == 1 => visitor.visit_enum(EnumDe {
                entry: &entries[0],
                path: &self.path,
            }),
            _ => return Err(self.invalid("one of the listed names")),
        };
        self.wrap(r)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

fn child_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

fn visit_map<'de, 'a: 'de, V: Visitor<'de>>(
    visitor: V,
    entries: &'a [Entry],
    path: &str,
) -> Result<V::Value, DeError> {
    visitor
        .visit_map(MapDe {
            entries: entries.iter(),
            current: None,
            path,
        })
        .map_err(|mut e| {
            // An unknown key is reported where the key is written.
            if let Some((key, _)) = &e.unknown
                && e.loc.is_none()
                && let Some(entry) = entries.iter().find(|x| &x.key == key)
            {
                e.loc = Some(entry.key_loc);
                e.path = Some(child_path(path, key));
            }
            if e.loc.is_none() && e.message.starts_with("missing required key") {
                e.path = Some(path.to_owned());
            }
            e
        })
}

struct SeqDe<'a, 'p> {
    items: std::slice::Iter<'a, Node>,
    index: usize,
    path: &'p str,
}

impl<'de, 'a: 'de> de::SeqAccess<'de> for SeqDe<'a, '_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        let Some(node) = self.items.next() else {
            return Ok(None);
        };
        let path = format!("{}[{}]", self.path, self.index);
        self.index += 1;
        seed.deserialize(NodeDe { node, path }).map(Some)
    }
}

struct MapDe<'a, 'p> {
    entries: std::slice::Iter<'a, Entry>,
    current: Option<&'a Entry>,
    path: &'p str,
}

impl<'de, 'a: 'de> de::MapAccess<'de> for MapDe<'a, '_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some(entry) = self.entries.next() else {
            return Ok(None);
        };
        self.current = Some(entry);
        let key: de::value::BorrowedStrDeserializer<'de, DeError> =
            de::value::BorrowedStrDeserializer::new(entry.key.as_str());
        seed.deserialize(key)
            .map(Some)
            .map_err(|e| e.at(entry.key_loc, &child_path(self.path, &entry.key)))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let Some(entry) = self.current else {
            return Err(DeError::custom("value without a key"));
        };
        seed.deserialize(NodeDe {
            node: &entry.value,
            path: child_path(self.path, &entry.key),
        })
    }
}

struct EnumDe<'a, 'p> {
    entry: &'a Entry,
    path: &'p str,
}

impl<'de, 'a: 'de> de::EnumAccess<'de> for EnumDe<'a, '_> {
    type Error = DeError;
    type Variant = NodeDe<'a>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, NodeDe<'a>), DeError> {
        let key: de::value::BorrowedStrDeserializer<'de, DeError> =
            de::value::BorrowedStrDeserializer::new(self.entry.key.as_str());
        let path = child_path(self.path, &self.entry.key);
        let v = seed
            .deserialize(key)
            .map_err(|e| e.at(self.entry.key_loc, &path))?;
        Ok((
            v,
            NodeDe {
                node: &self.entry.value,
                path,
            },
        ))
    }
}

impl<'de, 'a: 'de> de::VariantAccess<'de> for NodeDe<'a> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, DeError> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_seq(self, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_map(self, visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::collections::HashMap;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        port: u16,
        #[serde(default)]
        server_name: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        items: Vec<Inner>,
    }

    fn de(text: &str) -> Result<Outer, DeError> {
        let node = crate::tree::parse(text, &HashMap::new()).unwrap();
        from_node(&node, "")
    }

    #[test]
    fn unknown_key_is_located_and_suggested() {
        let e = de("items:\n  - port: 1\n  - port: 2\n    server_nmae: x\n").unwrap_err();
        assert_eq!(e.loc, Some(Loc { line: 4, column: 5 }));
        assert_eq!(e.path.as_deref(), Some("items[1].server_nmae"));
        assert!(
            e.message.contains("did you mean `server_name`"),
            "{}",
            e.message
        );
    }

    #[test]
    fn wrong_type_is_located_at_the_value() {
        let e = de("items:\n  - port: 70000\n").unwrap_err();
        assert_eq!(
            e.loc,
            Some(Loc {
                line: 2,
                column: 11
            })
        );
        assert_eq!(e.path.as_deref(), Some("items[0].port"));
        assert!(e.message.contains("out of range"), "{}", e.message);
    }

    #[test]
    fn missing_key_names_the_mapping() {
        let e = de("items:\n  - server_name: x\n").unwrap_err();
        assert_eq!(e.path.as_deref(), Some("items[0]"));
        assert_eq!(e.loc, Some(Loc { line: 2, column: 5 }));
        assert!(e.message.contains("missing required key `port`"));
    }
}
