//! The server side of MySQL's framing (a 3-byte length, a sequence id, the payload)
//! and the few packets the server writes whose types `mysql_common` can read but not
//! build: OK, EOF (before `CLIENT_DEPRECATE_EOF`), a column definition as MySQL 8.0
//! sends it, text rows.
//!
//! Sequence ids are checked as a MySQL server checks them: a client packet out of
//! order is a protocol violation, and the server closes the connection.

use std::io;

use mysql_common::constants::{CapabilityFlags, ColumnFlags, ColumnType, StatusFlags};
use mysql_common::io::BufMutExt;
use mysql_common::packets::{Column, ErrPacket, ServerError, SqlState};
use mysql_common::proto::MySerialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest client packet the server reads (the probe's are a few hundred bytes).
pub const MAX_CLIENT_PACKET: usize = 1 << 20;

/// The status a session reports in its OK and EOF packets: autocommit on.
pub const STATUS: StatusFlags = StatusFlags::SERVER_STATUS_AUTOCOMMIT;

/// A stream a session runs over: TCP, then maybe TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Why a session ended before its time.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The connection failed or closed.
    #[error("connection: {0}")]
    Io(#[from] io::Error),
    /// The client broke the protocol (the test reads these as violations).
    #[error("protocol: {0}")]
    Protocol(String),
    /// The TLS handshake failed.
    #[error("TLS handshake: {0}")]
    Tls(io::Error),
}

/// One connection's framing, server side.
pub struct Wire<S> {
    /// The stream.
    pub io: S,
    /// The sequence id the next packet (either way) carries.
    seq: u8,
}

impl<S: Io> Wire<S> {
    /// Framing over `io`: the server speaks first, with sequence id 0.
    pub fn new(io: S) -> Self {
        Wire { io, seq: 0 }
    }

    /// The stream, and the sequence id to carry on with over another stream.
    pub fn into_parts(self) -> (S, u8) {
        (self.io, self.seq)
    }

    /// The framing carried on over `io` (after the TLS handshake) at `seq`.
    pub fn resume(io: S, seq: u8) -> Self {
        Wire { io, seq }
    }

    /// Reads the client's next packet, which must carry the expected sequence id.
    pub async fn read(&mut self) -> Result<Vec<u8>, SessionError> {
        let (seq, payload) = self.read_any().await?;
        if seq != self.seq {
            return Err(SessionError::Protocol(format!(
                "packets out of order: sequence id {seq}, expected {}",
                self.seq
            )));
        }
        self.seq = seq.wrapping_add(1);
        Ok(payload)
    }

    /// Reads the first packet of a command: its sequence id must be 0.
    pub async fn read_command(&mut self) -> Result<Vec<u8>, SessionError> {
        self.seq = 0;
        self.read().await
    }

    async fn read_any(&mut self) -> Result<(u8, Vec<u8>), SessionError> {
        let mut header = [0u8; 4];
        self.io.read_exact(&mut header).await?;
        let len = u32::from_le_bytes([header[0], header[1], header[2], 0]) as usize;
        if len > MAX_CLIENT_PACKET {
            return Err(SessionError::Protocol(format!(
                "a client packet of {len} bytes"
            )));
        }
        let mut payload = vec![0u8; len];
        self.io.read_exact(&mut payload).await?;
        Ok((header[3], payload))
    }

    /// Sends `payload` as one packet (payloads here are far below 16 MiB).
    pub async fn write(&mut self, payload: &[u8]) -> Result<(), SessionError> {
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|l| *l < 0xff_ffff)
            .ok_or_else(|| SessionError::Protocol("a server packet of 16 MiB".into()))?;
        let mut packet = Vec::with_capacity(payload.len() + 4);
        packet.extend_from_slice(&len.to_le_bytes()[..3]);
        packet.push(self.seq);
        packet.extend_from_slice(payload);
        self.seq = self.seq.wrapping_add(1);
        self.io.write_all(&packet).await?;
        self.io.flush().await?;
        Ok(())
    }

    /// Serializes `packet` with `mysql_common` and sends it.
    pub async fn send<P: MySerialize>(&mut self, packet: &P) -> Result<(), SessionError> {
        let mut payload = Vec::new();
        packet.serialize(&mut payload);
        self.write(&payload).await
    }

    /// Sends only a header that announces `len` bytes, and nothing after it.
    pub async fn write_header_only(&mut self, len: u32) -> Result<(), SessionError> {
        let mut header = len.to_le_bytes();
        header[3] = self.seq;
        self.io.write_all(&header).await?;
        self.io.flush().await?;
        Ok(())
    }

    /// Sends an ERR packet: `code`, SQLSTATE `state`, `message`.
    pub async fn error(
        &mut self,
        code: u16,
        state: &[u8; 5],
        message: &str,
    ) -> Result<(), SessionError> {
        let err = ErrPacket::Error(ServerError::new(
            code,
            Some(SqlState::new(*state)),
            message.as_bytes(),
        ));
        self.send(&err).await
    }
}

/// An OK packet (header 0x00; or 0xfe when it ends a result set under
/// `CLIENT_DEPRECATE_EOF`): no rows affected, no insert id, autocommit, no warnings.
pub fn ok(header: u8, client: CapabilityFlags) -> Vec<u8> {
    let mut p = vec![header];
    p.put_lenenc_int(0);
    p.put_lenenc_int(0);
    p.extend_from_slice(&STATUS.bits().to_le_bytes());
    p.extend_from_slice(&0u16.to_le_bytes());
    if client.contains(CapabilityFlags::CLIENT_SESSION_TRACK) {
        p.put_lenenc_str(b"");
    }
    p
}

/// The EOF packet of the protocol before `CLIENT_DEPRECATE_EOF`: no warnings,
/// autocommit.
pub fn eof() -> Vec<u8> {
    let mut p = vec![0xfe];
    p.extend_from_slice(&0u16.to_le_bytes());
    p.extend_from_slice(&STATUS.bits().to_le_bytes());
    p
}

/// A result-set column: its name and whether it holds integers.
#[derive(Clone, Debug)]
pub struct ColumnSpec {
    /// The name the client sees (an alias when the query gives one).
    pub name: String,
    /// `BIGINT` (MySQL's type for system variables such as `@@read_only`) or text.
    pub integer: bool,
}

/// The column definition MySQL 8.0 sends for `column`.
///
/// `mysql_common` 0.38 writes `column_length` before `character_set` (its reader,
/// like the protocol, has them the other way round): the two are put back in the
/// protocol's order here, and the unit test reads the result back with
/// `mysql_common`'s reader.
pub fn column_definition(column: &ColumnSpec) -> Vec<u8> {
    let (kind, charset, length, flags, decimals) = if column.integer {
        (
            ColumnType::MYSQL_TYPE_LONGLONG,
            63, // binary
            21,
            ColumnFlags::NOT_NULL_FLAG | ColumnFlags::BINARY_FLAG | ColumnFlags::NUM_FLAG,
            0,
        )
    } else {
        (
            ColumnType::MYSQL_TYPE_VAR_STRING,
            255, // utf8mb4_0900_ai_ci
            1024,
            ColumnFlags::empty(),
            0x1f,
        )
    };
    let def = Column::new(kind)
        .with_name(column.name.as_bytes())
        .with_org_name(column.name.as_bytes())
        .with_character_set(charset)
        .with_column_length(length)
        .with_flags(flags)
        .with_decimals(decimals);
    let mut p = Vec::new();
    def.serialize(&mut p);
    // The fixed part ends the packet: 0x0c, length (4), charset (2), type, flags (2),
    // decimals, filler (2). Written as length-then-charset: rotate to charset-then-length.
    if let Some(start) = p.len().checked_sub(12) {
        p[start..start + 6].rotate_left(4);
    }
    p
}

/// A text-protocol row: each value a length-encoded string, 0xfb for NULL.
pub fn text_row(values: &[Option<String>]) -> Vec<u8> {
    let mut p = Vec::new();
    for v in values {
        match v {
            Some(v) => p.put_lenenc_str(v.as_bytes()),
            None => p.push(0xfb),
        }
    }
    p
}

/// A length-encoded integer alone: a result set's column count.
pub fn column_count(n: usize) -> Vec<u8> {
    let mut p = Vec::new();
    p.put_lenenc_int(n as u64);
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use mysql_common::io::ParseBuf;
    use mysql_common::packets::{
        CommonOkPacket, OkPacketDeserializer, OldEofPacket, ResultSetTerminator,
    };

    #[test]
    fn a_column_definition_reads_back_with_mysql_commons_reader() {
        let p = column_definition(&ColumnSpec {
            name: "read_only".into(),
            integer: true,
        });
        let c: Column = ParseBuf(&p).parse(()).unwrap();
        assert_eq!(c.name_str(), "read_only");
        assert_eq!(c.character_set(), 63);
        assert_eq!(c.column_length(), 21);
        assert_eq!(c.column_type(), ColumnType::MYSQL_TYPE_LONGLONG);
        assert!(c.flags().contains(ColumnFlags::NUM_FLAG));
    }

    #[test]
    fn ok_and_eof_packets_read_back_with_mysql_commons_reader() {
        let caps = CapabilityFlags::CLIENT_PROTOCOL_41;
        let (common, end, old) = (ok(0x00, caps), ok(0xfe, caps), eof());
        let common: OkPacketDeserializer<'_, CommonOkPacket> =
            ParseBuf(&common).parse(caps).unwrap();
        assert_eq!(common.into_inner().status_flags(), STATUS);
        let end: OkPacketDeserializer<'_, ResultSetTerminator> =
            ParseBuf(&end).parse(caps).unwrap();
        assert_eq!(end.into_inner().warnings(), 0);
        let old: OkPacketDeserializer<'_, OldEofPacket> = ParseBuf(&old).parse(caps).unwrap();
        assert_eq!(old.into_inner().status_flags(), STATUS);
    }

    #[test]
    fn a_text_row_holds_values_and_nulls() {
        assert_eq!(text_row(&[Some("1".into()), None]), vec![1, b'1', 0xfb]);
    }
}
