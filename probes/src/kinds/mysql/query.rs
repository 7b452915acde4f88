//! Text-protocol queries (`COM_QUERY`) and their answers: the column names, and the
//! rows as text, read with `mysql_common`'s column definitions and bounded in rows.
//!
//! A probe reads at most [`MAX_ROWS`] rows of an answer; the connection is closed
//! after the run, so what is left unread costs nothing.

use mysql_common::io::ParseBuf;
use mysql_common::packets::Column;

use super::wire::{Io, Wire, server_error};
use crate::run::ProbeError;
use crate::taxonomy::{ErrorType, Phase};

/// The most rows read of one answer.
pub const MAX_ROWS: usize = 100;

/// The most columns an answer may have.
const MAX_COLUMNS: u64 = 4096;

/// What a query answered.
#[derive(Debug, Default)]
pub struct Answer {
    /// Column names.
    pub columns: Vec<String>,
    /// Rows, each value as text (`None` for NULL).
    pub rows: Vec<Vec<Option<String>>>,
}

impl Answer {
    /// The value of column `name` in the first row.
    pub fn first(&self, name: &str) -> Option<&str> {
        let i = self
            .columns
            .iter()
            .position(|c| c.eq_ignore_ascii_case(name))?;
        self.rows.first()?.get(i)?.as_deref()
    }
}

/// An error the server answered a query with.
pub type Refusal = super::wire::ServerError;

/// Runs `sql`; `Ok(Err(..))` is the server's error, `Err` a broken connection.
pub async fn query<S: Io>(
    wire: &mut Wire<S>,
    sql: &str,
) -> Result<Result<Answer, Refusal>, ProbeError> {
    wire.reset();
    let mut payload = Vec::with_capacity(sql.len() + 1);
    payload.push(0x03);
    payload.extend_from_slice(sql.as_bytes());
    wire.write(&payload, Phase::Query).await?;

    let head = wire.read(Phase::Query).await?;
    let count = match head.first() {
        Some(0x00) => return Ok(Ok(Answer::default())),
        Some(0xff) => return Ok(Err(server_error(&head))),
        Some(0xfb) => return Err(odd("asked for a local file (LOAD DATA LOCAL)")),
        _ => lenenc(&head).ok_or_else(|| odd("sent a column count that could not be read"))?,
    };
    if count == 0 || count > MAX_COLUMNS {
        return Err(odd(&format!("announced {count} columns")));
    }
    let mut answer = Answer::default();
    for _ in 0..count {
        let def = wire.read(Phase::Query).await?;
        let column: Column = ParseBuf(&def).parse(()).map_err(|e| {
            odd(&format!(
                "sent a column definition that could not be read ({e})"
            ))
        })?;
        answer.columns.push(column.name_str().into_owned());
    }
    // Without CLIENT_DEPRECATE_EOF, an EOF packet ends the definitions.
    let eof = wire.read(Phase::Query).await?;
    if !is_eof(&eof) {
        return Err(odd("did not end the column definitions"));
    }
    loop {
        let packet = wire.read(Phase::Query).await?;
        if is_eof(&packet) {
            return Ok(Ok(answer));
        }
        if packet.first() == Some(&0xff) {
            return Ok(Err(server_error(&packet)));
        }
        if answer.rows.len() < MAX_ROWS {
            answer.rows.push(text_row(&packet, answer.columns.len())?);
        } else {
            return Ok(Ok(answer));
        }
    }
}

fn is_eof(packet: &[u8]) -> bool {
    packet.first() == Some(&0xfe) && packet.len() < 9
}

/// A text row: each value a length-encoded string, 0xfb for NULL.
fn text_row(packet: &[u8], columns: usize) -> Result<Vec<Option<String>>, ProbeError> {
    let mut buf = ParseBuf(packet);
    let mut row = Vec::with_capacity(columns);
    for _ in 0..columns {
        if buf.0.first() == Some(&0xfb) {
            buf.skip(1);
            row.push(None);
            continue;
        }
        let value = buf
            .checked_eat_lenenc_str()
            .ok_or_else(|| odd("sent a row that could not be read"))?;
        row.push(Some(String::from_utf8_lossy(value).into_owned()));
    }
    Ok(row)
}

/// A length-encoded integer at the start of `packet`.
fn lenenc(packet: &[u8]) -> Option<u64> {
    ParseBuf(packet).checked_eat_lenenc_int()
}

fn odd(what: &str) -> ProbeError {
    ProbeError::new(
        ErrorType::UnexpectedResponse,
        Phase::Query,
        format!("the server {what}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_row_reads_values_and_nulls() {
        let row = text_row(&[1, b'1', 0xfb, 3, b'a', b'b', b'c'], 3).unwrap();
        assert_eq!(row, vec![Some("1".into()), None, Some("abc".into())]);
        let e = text_row(&[9, b'x'], 1).unwrap_err();
        assert_eq!(e.class, ErrorType::UnexpectedResponse);
    }

    #[test]
    fn first_value_is_found_by_column_name() {
        let a = Answer {
            columns: vec!["Master_Host".into(), "Slave_IO_Running".into()],
            rows: vec![vec![Some("db1".into()), Some("Yes".into())]],
        };
        assert_eq!(a.first("master_host"), Some("db1"));
        assert_eq!(a.first("nope"), None);
    }
}
