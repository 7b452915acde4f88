//! What the server answers to the statements a probe sends: `SELECT 1`, a `SELECT`
//! of system variables (`@@read_only`, `@@super_read_only`, `@@version`, with or
//! without `AS` aliases), and the replication status, `SHOW REPLICA STATUS` (MySQL
//! 8.0.22 and later; a syntax error before) or `SHOW SLAVE STATUS`, with MySQL 8.0's
//! columns in the terminology each statement uses. Anything else is refused with an
//! error that says this server does not run it: it is a protocol server, not a
//! database.

use super::wire::ColumnSpec;

/// The server's role facts.
#[derive(Clone, Debug)]
pub struct Facts {
    /// `@@read_only`.
    pub read_only: bool,
    /// `@@super_read_only` (which, as in MySQL, implies `@@read_only`).
    pub super_read_only: bool,
    /// The replication link, when the server is a replica.
    pub replica: Option<ReplicaStatus>,
    /// Whether the user may read the replication status (`REPLICATION CLIENT`).
    pub replication_client: bool,
}

impl Default for Facts {
    /// A writable primary, whose replication status the user may read.
    fn default() -> Self {
        Facts {
            read_only: false,
            super_read_only: false,
            replica: None,
            replication_client: true,
        }
    }
}

/// The replication status of a replica: the fields a probe reads.
#[derive(Clone, Debug)]
pub struct ReplicaStatus {
    /// `Source_Host`.
    pub source_host: String,
    /// `Source_Port`.
    pub source_port: u16,
    /// `Replica_IO_Running`: `Yes`, `No` or `Connecting`.
    pub io_running: String,
    /// `Replica_SQL_Running`: `Yes` or `No`.
    pub sql_running: String,
}

/// An answer: a result set or an error.
#[derive(Clone, Debug)]
pub enum Answer {
    /// Columns and text rows (`None` is NULL).
    Rows {
        /// The columns.
        columns: Vec<ColumnSpec>,
        /// The rows.
        rows: Vec<Vec<Option<String>>>,
    },
    /// An ERR packet.
    Error {
        /// The MySQL error number.
        code: u16,
        /// The SQLSTATE.
        state: &'static [u8; 5],
        /// The message.
        message: String,
    },
}

/// The answer to `sql` from a server of `version` with `facts`.
pub fn answer(sql: &str, version: &str, version_number: (u16, u16, u16), facts: &Facts) -> Answer {
    let normal = sql
        .trim()
        .trim_end_matches(';')
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let upper = normal.to_ascii_uppercase();
    match upper.as_str() {
        "SELECT 1" => Answer::Rows {
            columns: vec![integer("1")],
            rows: vec![vec![Some("1".into())]],
        },
        "SHOW SLAVE STATUS" => replication_status(facts, false),
        "SHOW REPLICA STATUS" if version_number >= (8, 0, 22) => replication_status(facts, true),
        "SHOW REPLICA STATUS" => Answer::Error {
            code: 1064,
            state: b"42000",
            message: "You have an error in your SQL syntax; check the manual that corresponds to your MySQL server version for the right syntax to use near 'REPLICA STATUS' at line 1".into(),
        },
        _ => match upper.strip_prefix("SELECT @@") {
            Some(_) => variables(&normal["SELECT ".len()..], version, facts),
            None => Answer::Error {
                code: 1105,
                state: b"HY000",
                message: format!("depprobe's MySQL 8.0 protocol server does not run `{normal}`"),
            },
        },
    }
}

fn integer(name: &str) -> ColumnSpec {
    ColumnSpec {
        name: name.into(),
        integer: true,
    }
}

/// `@@a [AS x], @@b [AS y]`: one row, a column per variable.
fn variables(list: &str, version: &str, facts: &Facts) -> Answer {
    let flag = |on: bool| Some(if on { "1" } else { "0" }.to_owned());
    let mut columns = Vec::new();
    let mut row = Vec::new();
    for item in list.split(',') {
        let words: Vec<&str> = item.split_whitespace().collect();
        let (expr, alias) = match words.as_slice() {
            [expr] => (*expr, None),
            [expr, as_, alias] if as_.eq_ignore_ascii_case("as") => (*expr, Some(*alias)),
            _ => return unknown(item.trim()),
        };
        let name = expr.trim_start_matches("@@").to_ascii_lowercase();
        let (integer, value) = match name.as_str() {
            "read_only" => (true, flag(facts.read_only || facts.super_read_only)),
            "super_read_only" => (true, flag(facts.super_read_only)),
            "version" => (false, Some(version.to_owned())),
            _ => {
                return Answer::Error {
                    code: 1193,
                    state: b"HY000",
                    message: format!("Unknown system variable '{name}'"),
                };
            }
        };
        columns.push(ColumnSpec {
            name: alias.unwrap_or(expr).to_owned(),
            integer,
        });
        row.push(value);
    }
    Answer::Rows {
        columns,
        rows: vec![row],
    }
}

fn unknown(item: &str) -> Answer {
    Answer::Error {
        code: 1105,
        state: b"HY000",
        message: format!("depprobe's MySQL 8.0 protocol server does not read `{item}`"),
    }
}

/// MySQL 8.0's replication status columns: the 8.0.22 name and the old one.
const STATUS_COLUMNS: &[(&str, &str)] = &[
    ("Replica_IO_State", "Slave_IO_State"),
    ("Source_Host", "Master_Host"),
    ("Source_User", "Master_User"),
    ("Source_Port", "Master_Port"),
    ("Connect_Retry", "Connect_Retry"),
    ("Source_Log_File", "Master_Log_File"),
    ("Read_Source_Log_Pos", "Read_Master_Log_Pos"),
    ("Relay_Log_File", "Relay_Log_File"),
    ("Relay_Log_Pos", "Relay_Log_Pos"),
    ("Relay_Source_Log_File", "Relay_Master_Log_File"),
    ("Replica_IO_Running", "Slave_IO_Running"),
    ("Replica_SQL_Running", "Slave_SQL_Running"),
    ("Replicate_Do_DB", "Replicate_Do_DB"),
    ("Replicate_Ignore_DB", "Replicate_Ignore_DB"),
    ("Replicate_Do_Table", "Replicate_Do_Table"),
    ("Replicate_Ignore_Table", "Replicate_Ignore_Table"),
    ("Replicate_Wild_Do_Table", "Replicate_Wild_Do_Table"),
    ("Replicate_Wild_Ignore_Table", "Replicate_Wild_Ignore_Table"),
    ("Last_Errno", "Last_Errno"),
    ("Last_Error", "Last_Error"),
    ("Skip_Counter", "Skip_Counter"),
    ("Exec_Source_Log_Pos", "Exec_Master_Log_Pos"),
    ("Relay_Log_Space", "Relay_Log_Space"),
    ("Until_Condition", "Until_Condition"),
    ("Until_Log_File", "Until_Log_File"),
    ("Until_Log_Pos", "Until_Log_Pos"),
    ("Source_SSL_Allowed", "Master_SSL_Allowed"),
    ("Source_SSL_CA_File", "Master_SSL_CA_File"),
    ("Source_SSL_CA_Path", "Master_SSL_CA_Path"),
    ("Source_SSL_Cert", "Master_SSL_Cert"),
    ("Source_SSL_Cipher", "Master_SSL_Cipher"),
    ("Source_SSL_Key", "Master_SSL_Key"),
    ("Seconds_Behind_Source", "Seconds_Behind_Master"),
    (
        "Source_SSL_Verify_Server_Cert",
        "Master_SSL_Verify_Server_Cert",
    ),
    ("Last_IO_Errno", "Last_IO_Errno"),
    ("Last_IO_Error", "Last_IO_Error"),
    ("Last_SQL_Errno", "Last_SQL_Errno"),
    ("Last_SQL_Error", "Last_SQL_Error"),
    ("Replicate_Ignore_Server_Ids", "Replicate_Ignore_Server_Ids"),
    ("Source_Server_Id", "Master_Server_Id"),
    ("Source_UUID", "Master_UUID"),
    ("Source_Info_File", "Master_Info_File"),
    ("SQL_Delay", "SQL_Delay"),
    ("SQL_Remaining_Delay", "SQL_Remaining_Delay"),
    ("Replica_SQL_Running_State", "Slave_SQL_Running_State"),
    ("Source_Retry_Count", "Master_Retry_Count"),
    ("Source_Bind", "Master_Bind"),
    ("Last_IO_Error_Timestamp", "Last_IO_Error_Timestamp"),
    ("Last_SQL_Error_Timestamp", "Last_SQL_Error_Timestamp"),
    ("Source_SSL_Crl", "Master_SSL_Crl"),
    ("Source_SSL_Crlpath", "Master_SSL_Crlpath"),
    ("Retrieved_Gtid_Set", "Retrieved_Gtid_Set"),
    ("Executed_Gtid_Set", "Executed_Gtid_Set"),
    ("Auto_Position", "Auto_Position"),
    ("Replicate_Rewrite_DB", "Replicate_Rewrite_DB"),
    ("Channel_Name", "Channel_Name"),
    ("Source_TLS_Version", "Master_TLS_Version"),
    ("Source_public_key_path", "Master_public_key_path"),
    ("Get_Source_public_key", "Get_master_public_key"),
    ("Network_Namespace", "Network_Namespace"),
];

/// The replication status: every column, and a row when the server replicates.
fn replication_status(facts: &Facts, new_names: bool) -> Answer {
    if !facts.replication_client {
        return Answer::Error {
            code: 1227,
            state: b"42000",
            message: "Access denied; you need (at least one of) the SUPER, REPLICATION CLIENT privilege(s) for this operation".into(),
        };
    }
    let columns = STATUS_COLUMNS
        .iter()
        .map(|(new, old)| ColumnSpec {
            name: (if new_names { *new } else { *old }).to_owned(),
            integer: false,
        })
        .collect();
    let rows = match &facts.replica {
        None => Vec::new(),
        Some(r) => vec![
            STATUS_COLUMNS
                .iter()
                .map(|(name, _)| {
                    Some(match *name {
                        "Replica_IO_State" if r.io_running == "Yes" => {
                            "Waiting for source to send event".to_owned()
                        }
                        "Source_Host" => r.source_host.clone(),
                        "Source_User" => "repl".to_owned(),
                        "Source_Port" => r.source_port.to_string(),
                        "Replica_IO_Running" => r.io_running.clone(),
                        "Replica_SQL_Running" => r.sql_running.clone(),
                        "Connect_Retry" | "Source_Retry_Count" => "60".to_owned(),
                        "Seconds_Behind_Source" if r.io_running == "Yes" => "0".to_owned(),
                        "Seconds_Behind_Source" => return None,
                        _ => String::new(),
                    })
                })
                .collect(),
        ],
    };
    Answer::Rows { columns, rows }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(a: &Answer) -> Vec<String> {
        match a {
            Answer::Rows { columns, .. } => columns.iter().map(|c| c.name.clone()).collect(),
            Answer::Error { message, .. } => panic!("{message}"),
        }
    }

    #[test]
    fn variables_take_their_aliases_and_super_read_only_implies_read_only() {
        let facts = Facts {
            super_read_only: true,
            ..Default::default()
        };
        let a = answer(
            "SELECT @@read_only AS read_only, @@super_read_only AS super_read_only",
            "8.0.36",
            (8, 0, 36),
            &facts,
        );
        assert_eq!(names(&a), ["read_only", "super_read_only"]);
        let Answer::Rows { rows, .. } = a else {
            unreachable!()
        };
        assert_eq!(rows, vec![vec![Some("1".into()), Some("1".into())]]);
        assert_eq!(
            names(&answer("select @@version", "8.0.36", (8, 0, 36), &facts)),
            ["@@version"]
        );
    }

    #[test]
    fn show_replica_status_exists_from_8_0_22_with_the_new_names() {
        let facts = Facts {
            replication_client: true,
            ..Default::default()
        };
        let new = answer("SHOW REPLICA STATUS", "8.0.36", (8, 0, 36), &facts);
        assert!(names(&new).contains(&"Source_Host".to_owned()));
        let old = answer("SHOW SLAVE STATUS", "8.0.36", (8, 0, 36), &facts);
        assert!(names(&old).contains(&"Master_Host".to_owned()));
        assert!(matches!(
            answer("SHOW REPLICA STATUS", "8.0.21", (8, 0, 21), &facts),
            Answer::Error { code: 1064, .. }
        ));
    }
}
