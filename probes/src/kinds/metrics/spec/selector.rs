//! Series selectors as Prometheus users write them: `up`, `up{job="api"}`,
//! `http_requests_total{code=~"5..", method!="GET"}`, `{__name__=~"node_.*"}`.
//!
//! Only the instant-vector selector of PromQL is accepted (no functions, ranges or
//! offsets): a metric name, label matchers, or both. Regular expressions are anchored
//! at both ends, as in PromQL, and checked when the configuration is loaded.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// A parsed selector. Its `Display` is the text it was written as.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesSelector {
    /// The text as written.
    pub text: String,
    /// The metric name, when written before the braces.
    pub name: Option<String>,
    /// The label matchers inside the braces (`__name__` names the metric).
    pub matchers: Vec<LabelMatcher>,
}

/// One `label op "value"` matcher.
#[derive(Clone, Debug, PartialEq)]
pub struct LabelMatcher {
    /// The label name.
    pub label: String,
    /// How the value is compared.
    pub op: MatchOp,
    /// The value, or the regular expression (unanchored as written).
    pub value: String,
}

/// The comparison of a [`LabelMatcher`]; a missing label has the empty value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchOp {
    /// `=`: equal.
    Equal,
    /// `!=`: not equal.
    NotEqual,
    /// `=~`: the whole value matches the regular expression.
    Regex,
    /// `!~`: the whole value does not match the regular expression.
    NotRegex,
}

impl MatchOp {
    /// How it is written.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        }
    }
}

impl LabelMatcher {
    /// The anchored form of a regular-expression value, as PromQL compiles it.
    pub fn anchored_regex(&self) -> String {
        format!("^(?:{})$", self.value)
    }
}

impl fmt::Display for SeriesSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for SeriesSelector {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Parsed inside the visitor, so that the error is located at the value.
        struct V;
        impl Visitor<'_> for V {
            type Value = SeriesSelector;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a series selector such as up{job=\"api\"}")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<SeriesSelector, E> {
                SeriesSelector::parse(text).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

/// Reads a selector left to right; positions in errors are characters from 1.
struct Reader<'t> {
    text: &'t str,
    pos: usize,
}

impl Reader<'_> {
    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn eat(&mut self, s: &str) -> bool {
        if self.text[self.pos..].starts_with(s) {
            self.pos += s.len();
            true
        } else {
            false
        }
    }

    fn skip_blanks(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    /// `[A-Za-z_:][A-Za-z0-9_:]*` (colons only when `colons`).
    fn identifier(&mut self, colons: bool) -> Option<String> {
        let ok_first = |c: char| c.is_ascii_alphabetic() || c == '_' || (colons && c == ':');
        let start = self.pos;
        if !self.peek().is_some_and(ok_first) {
            return None;
        }
        while self
            .peek()
            .is_some_and(|c| ok_first(c) || c.is_ascii_digit())
        {
            self.bump();
        }
        Some(self.text[start..self.pos].to_owned())
    }

    fn error(&self, what: &str) -> String {
        let at = self.text[..self.pos].chars().count() + 1;
        match self.peek() {
            Some(c) => format!(
                "invalid selector `{}`: at character {at}: {what}, found `{c}`",
                self.text
            ),
            None => format!(
                "invalid selector `{}`: at character {at}: {what}, found the end",
                self.text
            ),
        }
    }

    fn quoted(&mut self) -> Result<String, String> {
        let quote = match self.peek() {
            Some(q @ ('"' | '\'')) => q,
            _ => return Err(self.error("expected a quoted value")),
        };
        self.bump();
        let mut out = String::new();
        loop {
            match self.bump() {
                None => return Err(self.error("unterminated quoted value")),
                Some(c) if c == quote => return Ok(out),
                Some('\\') => match self.bump() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some(c @ ('\\' | '"' | '\'')) => out.push(c),
                    _ => {
                        return Err(
                            self.error("unknown escape (write \\\\, \\\", \\', \\n or \\t)")
                        );
                    }
                },
                Some(c) => out.push(c),
            }
        }
    }

    fn op(&mut self) -> Option<MatchOp> {
        [
            ("=~", MatchOp::Regex),
            ("!~", MatchOp::NotRegex),
            ("!=", MatchOp::NotEqual),
            ("=", MatchOp::Equal),
        ]
        .into_iter()
        .find_map(|(s, op)| self.eat(s).then_some(op))
    }

    fn matcher(&mut self) -> Result<LabelMatcher, String> {
        let label = self
            .identifier(false)
            .ok_or_else(|| self.error("expected a label name"))?;
        self.skip_blanks();
        let op = self
            .op()
            .ok_or_else(|| self.error("expected =, !=, =~ or !~"))?;
        self.skip_blanks();
        let value = self.quoted()?;
        let m = LabelMatcher { label, op, value };
        if matches!(op, MatchOp::Regex | MatchOp::NotRegex)
            && let Err(e) = regex::Regex::new(&m.anchored_regex())
        {
            return Err(format!(
                "invalid selector `{}`: the regular expression of `{}` is invalid: {e}",
                self.text, m.label
            ));
        }
        Ok(m)
    }
}

impl SeriesSelector {
    /// Parses `text`; the error says where and what was expected.
    pub fn parse(text: &str) -> Result<SeriesSelector, String> {
        let mut r = Reader { text, pos: 0 };
        r.skip_blanks();
        let name = r.identifier(true);
        r.skip_blanks();
        let mut matchers = Vec::new();
        if r.eat("{") {
            loop {
                r.skip_blanks();
                if r.eat("}") {
                    break;
                }
                matchers.push(r.matcher()?);
                r.skip_blanks();
                if r.eat("}") {
                    break;
                }
                if !r.eat(",") {
                    return Err(r.error("expected `,` or `}`"));
                }
            }
            r.skip_blanks();
        }
        if r.peek().is_some() {
            let what = if name.is_none() && matchers.is_empty() {
                "expected a metric name or `{`"
            } else {
                "expected the end of the selector"
            };
            return Err(r.error(what));
        }
        if name.is_none() && matchers.is_empty() {
            return Err(format!(
                "invalid selector `{text}`: name a metric (`up`) or give a label matcher (`{{job=\"api\"}}`)"
            ));
        }
        Ok(SeriesSelector {
            text: text.trim().to_owned(),
            name,
            matchers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_matchers_and_quotes_are_read() {
        let s = SeriesSelector::parse(r#" http_requests_total{code=~"5..", method != 'GET',} "#)
            .unwrap();
        assert_eq!(s.name.as_deref(), Some("http_requests_total"));
        assert_eq!(s.matchers.len(), 2);
        assert_eq!(s.matchers[0].op, MatchOp::Regex);
        assert_eq!(s.matchers[1].op, MatchOp::NotEqual);
        assert_eq!(s.matchers[1].value, "GET");
        assert_eq!(
            s.to_string(),
            r#"http_requests_total{code=~"5..", method != 'GET',}"#
        );
        let s = SeriesSelector::parse(r#"{__name__=~"node_.*"}"#).unwrap();
        assert_eq!(s.name, None);
        let s = SeriesSelector::parse(r#"x{a="q\"uote\\"}"#).unwrap();
        assert_eq!(s.matchers[0].value, "q\"uote\\");
    }

    #[test]
    fn mistakes_are_located_by_character() {
        let e = SeriesSelector::parse(r#"up{job="api""#).unwrap_err();
        assert!(
            e.ends_with("at character 13: expected `,` or `}`, found the end"),
            "{e}"
        );
        let e = SeriesSelector::parse(r#"up{job:"api"}"#).unwrap_err();
        assert!(
            e.contains("at character 7: expected =, !=, =~ or !~, found `:`"),
            "{e}"
        );
        let e = SeriesSelector::parse("rate(up[5m])").unwrap_err();
        assert!(
            e.contains("at character 5: expected the end of the selector, found `(`"),
            "{e}"
        );
        let e = SeriesSelector::parse("{}").unwrap_err();
        assert!(e.contains("name a metric"), "{e}");
        let e = SeriesSelector::parse(r#"up{job=~"("}"#).unwrap_err();
        assert!(e.contains("regular expression of `job` is invalid"), "{e}");
    }
}
