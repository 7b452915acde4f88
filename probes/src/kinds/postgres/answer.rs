//! What a session's answers mean: the query's first value against `expect.value`, the
//! server's role from `pg_is_in_recovery()` and its change between runs, and the
//! one-line summary of a good run.


use std::time::SystemTime;

use tokio_postgres::SimpleQueryMessage;

use crate::outcome::{TlsFacts, human_delta};
use crate::run::ProbeError;
use crate::taxonomy::{ErrorType, Phase};

/// Whether the server is a primary or a standby.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Accepts writes (`pg_is_in_recovery()` is false).
    Primary,
    /// In recovery: a hot standby (`pg_is_in_recovery()` is true).
    Standby,
}

impl Role {
    /// `primary` / `standby`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Standby => "standby",
        }
    }

    /// The role `pg_is_in_recovery()` answered.
    pub fn from_recovery(answer: &[SimpleQueryMessage]) -> Result<Role, ProbeError> {
        match first_value(answer) {
            FirstValue::Text(t) if t == "t" => Ok(Role::Standby),
            FirstValue::Text(t) if t == "f" => Ok(Role::Primary),
            other => Err(ProbeError::new(
                ErrorType::UnexpectedResponse,
                Phase::Query,
                format!("pg_is_in_recovery() answered {other:?}"),
            )),
        }
    }
}

/// What a session found.
pub struct Answer {
    /// As the server reports it at login.
    pub server_version: Option<String>,
    /// Primary or standby.
    pub role: Role,
    /// The first value of the configured query.
    pub first_value: FirstValue,
}

/// The first column of the first row of a query's answer.
#[derive(Debug, PartialEq, Eq)]
pub enum FirstValue {
    /// The query returned no row (or a row without columns).
    NoRow,
    /// The first column was NULL.
    Null,
    /// Its text.
    Text(String),
}

/// The first column of the first row among `messages`.
pub fn first_value(messages: &[SimpleQueryMessage]) -> FirstValue {
    messages
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(value_of(row)),
            _ => None,
        })
        .unwrap_or(FirstValue::NoRow)
}

fn value_of(row: &tokio_postgres::SimpleQueryRow) -> FirstValue {
    match row.try_get(0) {
        Ok(Some(text)) => FirstValue::Text(text.to_owned()),
        Ok(None) => FirstValue::Null,
        Err(_) => FirstValue::NoRow,
    }
}

/// Runs `query` and keeps only the first column of its first row: the rows after
/// it are never collected (the connection discards them), so a query that
/// returns millions of rows costs the agent no memory.
pub async fn query_first_value(
    client: &tokio_postgres::Client,
    query: &str,
) -> Result<FirstValue, tokio_postgres::Error> {
    use futures::TryStreamExt;
    let stream = client.simple_query_raw(query).await?;
    futures::pin_mut!(stream);
    while let Some(message) = stream.try_next().await? {
        if let SimpleQueryMessage::Row(row) = message {
            return Ok(value_of(&row));
        }
    }
    Ok(FirstValue::NoRow)
}

/// Checks the query's first value against `expect.value`.
pub fn judge(expect: Option<&str>, first: &FirstValue) -> Result<(), ProbeError> {
    let Some(want) = expect else {
        return Ok(());
    };
    let got = match first {
        FirstValue::Text(t) if t == want => return Ok(()),
        FirstValue::Text(t) => format!("`{}`", snippet(t)),
        FirstValue::Null => "NULL".to_owned(),
        FirstValue::NoRow => "no row".to_owned(),
    };
    Err(ProbeError::new(
        ErrorType::UnexpectedResponse,
        Phase::Query,
        format!("the query returned {got} where `{want}` was expected"),
    ))
}

/// "PostgreSQL 15.8, primary: login as probe and query OK over TLS 1.3; earliest
/// expiry: db.example.com in 89 days". `how` says how the session went when it is
/// not TLS.
pub fn summary(
    answer: &Answer,
    user: &str,
    how: Option<String>,
    tls: Option<&TlsFacts>,
    now: SystemTime,
) -> String {
    let version = answer.server_version.as_deref().unwrap_or("?");
    let how = match (how, tls) {
        (Some(how), _) => how,
        (None, Some(facts)) => tls_summary(facts, now),
        (None, None) => "over TLS".to_owned(),
    };
    format!(
        "PostgreSQL {version}, {}: login as {user} and query OK {how}",
        answer.role.as_str()
    )
}

/// "over TLS 1.3; earliest expiry: localhost in 89 days".
fn tls_summary(facts: &TlsFacts, now: SystemTime) -> String {
    let version = facts.version.as_deref().unwrap_or("?");
    match facts.chain.iter().min_by_key(|c| c.not_after) {
        Some(c) => format!(
            "over TLS {version}; earliest expiry: {} {}",
            c.short_name(),
            human_delta(now, c.not_after)
        ),
        None => format!("over TLS {version}"),
    }
}

/// At most 100 characters of `text`.
fn snippet(text: &str) -> String {
    match text.char_indices().nth(100) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_value_mismatch_names_both_values() {
        let e = judge(Some("1"), &FirstValue::Null).unwrap_err();
        assert_eq!(e.class, ErrorType::UnexpectedResponse);
        assert_eq!(e.message, "the query returned NULL where `1` was expected");
        assert!(judge(Some("1"), &FirstValue::Text("1".into())).is_ok());
        assert!(judge(None, &FirstValue::NoRow).is_ok());
    }
}
