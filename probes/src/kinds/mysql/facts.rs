//! The facts that make a MySQL server's role: `@@read_only` (and MySQL's
//! `@@super_read_only`), and the replication status (`SHOW REPLICA STATUS` on MySQL
//! 8.0.22 and later, `SHOW SLAVE STATUS` elsewhere): whether the server replicates
//! from a source, which one, and whether the link runs.
//!
//! The replication status needs the `REPLICATION CLIENT` privilege; without it the
//! role is read from `read_only` alone and the details say why.

use std::collections::BTreeMap;

use super::login::Greeting;
use super::query::{Answer, query};
use super::wire::{Io, Wire};
use crate::outcome::Finding;
use crate::run::ProbeError;

/// What the server's role is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Writable, and replicating from nothing.
    Primary,
    /// `read_only` (or `super_read_only`) set, replicating from nothing.
    ReadOnly,
    /// Replicating from a source.
    Replica,
}

impl Role {
    /// `primary` / `read_only` / `replica`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::ReadOnly => "read_only",
            Role::Replica => "replica",
        }
    }
}

/// The replication link of a replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// `host:port` of the source.
    pub source: String,
    /// Whether the I/O and SQL threads both run.
    pub running: bool,
    /// `io=Yes sql=No`.
    pub state: String,
}

/// What was read of the server's state.
#[derive(Clone, Debug)]
pub struct State {
    /// `@@read_only`.
    pub read_only: bool,
    /// `@@super_read_only` (MySQL only).
    pub super_read_only: Option<bool>,
    /// The replication link, when the server replicates.
    pub link: Option<Link>,
    /// Why the replication status is unknown, when it is.
    pub replication_unknown: Option<String>,
}

impl State {
    /// The role these facts make.
    pub fn role(&self) -> Role {
        if self.link.is_some() {
            Role::Replica
        } else if self.read_only || self.super_read_only == Some(true) {
            Role::ReadOnly
        } else {
            Role::Primary
        }
    }

    /// Writes the facts into the run's details.
    pub fn record(&self, details: &mut BTreeMap<String, serde_json::Value>) {
        details.insert("role".into(), self.role().as_str().into());
        details.insert("read_only".into(), self.read_only.into());
        if let Some(s) = self.super_read_only {
            details.insert("super_read_only".into(), s.into());
        }
        if let Some(link) = &self.link {
            details.insert("replication_source".into(), link.source.clone().into());
            details.insert("replication_link".into(), link.state.clone().into());
        }
        if let Some(why) = &self.replication_unknown {
            details.insert("replication".into(), format!("unknown: {why}").into());
        }
    }

    /// A replica whose link is down is a finding.
    pub fn finding(&self) -> Option<Finding> {
        let link = self.link.as_ref().filter(|l| !l.running)?;
        Some(crate::kinds::role::link_down(&link.source, &link.state))
    }
}

/// Reads the role facts over a logged-in session.
pub async fn read<S: Io>(wire: &mut Wire<S>, hello: &Greeting) -> Result<State, ProbeError> {
    let sql = if hello.mariadb {
        "SELECT @@read_only AS read_only"
    } else {
        "SELECT @@read_only AS read_only, @@super_read_only AS super_read_only"
    };
    let flags = match query(wire, sql).await? {
        Ok(answer) => answer,
        Err(refusal) => {
            return Err(ProbeError::new(
                crate::taxonomy::ErrorType::QueryFailed,
                crate::taxonomy::Phase::Query,
                format!("reading @@read_only failed ({})", refusal.text),
            ));
        }
    };
    let on = |v: Option<&str>| v.is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("on"));
    let status = if !hello.mariadb && hello.parsed >= (8, 0, 22) {
        "SHOW REPLICA STATUS"
    } else {
        "SHOW SLAVE STATUS"
    };
    let (link, replication_unknown) = match query(wire, status).await? {
        Ok(answer) => (link(&answer), None),
        Err(refusal) => (None, Some(refusal.text)),
    };
    Ok(State {
        read_only: on(flags.first("read_only")),
        super_read_only: flags.first("super_read_only").map(|v| on(Some(v))),
        link,
        replication_unknown,
    })
}

/// The link a replication status answer describes (none for an empty answer).
fn link(answer: &Answer) -> Option<Link> {
    let pick = |names: &[&str]| names.iter().find_map(|n| answer.first(n)).unwrap_or("?");
    let host = answer
        .first("Source_Host")
        .or_else(|| answer.first("Master_Host"))?;
    let port = pick(&["Source_Port", "Master_Port"]);
    let io = pick(&["Replica_IO_Running", "Slave_IO_Running"]);
    let sql = pick(&["Replica_SQL_Running", "Slave_SQL_Running"]);
    Some(Link {
        source: format!("{host}:{port}"),
        running: io == "Yes" && sql == "Yes",
        state: format!("io={io} sql={sql}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(io: &str) -> Answer {
        Answer {
            columns: vec![
                "Slave_IO_State".into(),
                "Master_Host".into(),
                "Master_Port".into(),
                "Slave_IO_Running".into(),
                "Slave_SQL_Running".into(),
            ],
            rows: vec![vec![
                Some(String::new()),
                Some("db1".into()),
                Some("3306".into()),
                Some(io.into()),
                Some("Yes".into()),
            ]],
        }
    }

    #[test]
    fn a_replica_names_its_source_and_link() {
        let l = link(&status("Yes")).unwrap();
        assert_eq!(l.source, "db1:3306");
        assert!(l.running);
        let down = link(&status("Connecting")).unwrap();
        assert!(!down.running);
        assert_eq!(down.state, "io=Connecting sql=Yes");
        assert_eq!(link(&Answer::default()), None);
    }

    #[test]
    fn role_follows_source_then_read_only() {
        let mut s = State {
            read_only: true,
            super_read_only: None,
            link: None,
            replication_unknown: None,
        };
        assert_eq!(s.role(), Role::ReadOnly);
        s.link = link(&status("Yes"));
        assert_eq!(s.role(), Role::Replica);
        assert!(s.finding().is_none());
        s.link = link(&status("No"));
        assert!(s.finding().is_some());
    }
}
