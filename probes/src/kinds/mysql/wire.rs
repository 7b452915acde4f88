//! MySQL packet framing over depprobe's own stream: a 3-byte length, a sequence id,
//! the payload. The payloads themselves are read and written with `mysql_common`.
//!
//! Reads are exact (no read-ahead), so that the plaintext stream can be handed to the
//! TLS handshake right after the SSL request with nothing of the server's left behind.
//! A payload is refused beyond [`MAX_PAYLOAD`]: a probe never needs a large one, and a
//! hostile peer must not make it allocate.

use std::io;

use mysql_common::constants::CapabilityFlags;
use mysql_common::io::ParseBuf;
use mysql_common::packets::ErrPacket;
use mysql_common::proto::MySerialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::run::ProbeError;
use crate::taxonomy::{ErrorType, Phase};
use crate::transport::classify_stream;

/// The largest payload read (greeting, auth data, a column, a row).
pub const MAX_PAYLOAD: usize = 1 << 20;

/// A stream the session runs over: TCP, then maybe TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One MySQL connection's framing.
pub struct Wire<S> {
    /// The stream.
    pub io: S,
    seq: u8,
}

/// The error the server sent: its code, SQLSTATE and message.
#[derive(Clone, Debug)]
pub struct ServerError {
    /// The MySQL error number (1045: access denied).
    pub code: u16,
    /// "error 1045 (28000): Access denied for user ...".
    pub text: String,
}

impl<S: Io> Wire<S> {
    /// Framing over `io`, expecting the server's first packet.
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

    /// Sends `COM_QUIT` and closes the stream, within a short wait: the server
    /// then ends the session as a normal one, not as an aborted connection.
    pub async fn quit(&mut self) {
        // COM_QUIT: a packet of one byte (0x01) with sequence id 0.
        crate::transport::goodbye(&mut self.io, &[1, 0, 0, 0, 0x01]).await;
    }

    /// Starts a new command: the next packet sent has sequence id 0.
    pub fn reset(&mut self) {
        self.seq = 0;
    }

    /// Reads one packet's payload; an I/O failure is classified for `phase`.
    pub async fn read(&mut self, phase: Phase) -> Result<Vec<u8>, ProbeError> {
        let mut header = [0u8; 4];
        self.io
            .read_exact(&mut header)
            .await
            .map_err(|e| eof_or(phase, &e))?;
        let len = u32::from_le_bytes([header[0], header[1], header[2], 0]) as usize;
        if len > MAX_PAYLOAD {
            return Err(ProbeError::new(
                ErrorType::UnexpectedResponse,
                phase,
                format!(
                    "the server sent a packet of {len} bytes, more than the {MAX_PAYLOAD} a probe reads: is this a MySQL port?"
                ),
            ));
        }
        self.seq = header[3].wrapping_add(1);
        let mut payload = vec![0u8; len];
        self.io
            .read_exact(&mut payload)
            .await
            .map_err(|e| eof_or(phase, &e))?;
        Ok(payload)
    }

    /// Sends `payload` as one packet.
    pub async fn write(&mut self, payload: &[u8], phase: Phase) -> Result<(), ProbeError> {
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|l| *l < 0xff_ffff)
            .ok_or_else(|| {
                ProbeError::new(
                    ErrorType::QueryFailed,
                    phase,
                    "a packet of 16 MiB or more cannot be sent in one piece (is the query that long?)",
                )
            })?;
        let mut packet = Vec::with_capacity(payload.len() + 4);
        packet.extend_from_slice(&len.to_le_bytes()[..3]);
        packet.push(self.seq);
        packet.extend_from_slice(payload);
        self.seq = self.seq.wrapping_add(1);
        self.io
            .write_all(&packet)
            .await
            .map_err(|e| classify_stream(phase, &e))?;
        self.io
            .flush()
            .await
            .map_err(|e| classify_stream(phase, &e))
    }

    /// Serializes `packet` with `mysql_common` and sends it.
    pub async fn send<P: MySerialize>(
        &mut self,
        packet: &P,
        phase: Phase,
    ) -> Result<(), ProbeError> {
        let mut payload = Vec::new();
        packet.serialize(&mut payload);
        self.write(&payload, phase).await
    }
}

/// A closed connection during `phase` says so; other errors are classified.
fn eof_or(phase: Phase, e: &io::Error) -> ProbeError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        return ProbeError::new(
            ErrorType::ConnectionReset,
            phase,
            "the server closed the connection",
        );
    }
    classify_stream(phase, e)
}

/// The server error in an ERR packet (first byte 0xff).
pub fn server_error(payload: &[u8]) -> ServerError {
    let caps = CapabilityFlags::CLIENT_PROTOCOL_41;
    match ParseBuf(payload).parse::<ErrPacket<'_>>(caps) {
        Ok(ErrPacket::Error(e)) => {
            let state = e
                .sql_state_ref()
                .map(|s| format!(" ({})", s.as_str()))
                .unwrap_or_default();
            ServerError {
                code: e.error_code(),
                text: format!(
                    "error {}{state}: {}",
                    e.error_code(),
                    snippet(&e.message_str())
                ),
            }
        }
        _ => pre_greeting_error(payload).unwrap_or_else(|| ServerError {
            code: 0,
            text: "an error packet that could not be read".into(),
        }),
    }
}

/// An ERR packet as a server sends it before its greeting (`Host ... is not
/// allowed to connect`, `Too many connections`): the error number and the message,
/// with no SQL state, since no capabilities were agreed yet.
fn pre_greeting_error(payload: &[u8]) -> Option<ServerError> {
    let [0xff, low, high, rest @ ..] = payload else {
        return None;
    };
    let code = u16::from_le_bytes([*low, *high]);
    let (state, message) = match rest {
        [b'#', state @ .., ] if state.len() >= 5 => (
            format!(" ({})", String::from_utf8_lossy(&state[..5])),
            &state[5..],
        ),
        _ => (String::new(), rest),
    };
    Some(ServerError {
        code,
        text: format!(
            "error {code}{state}: {}",
            snippet(&String::from_utf8_lossy(message))
        ),
    })
}

/// At most 200 characters of `text`.
pub fn snippet(text: &str) -> String {
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_before_the_greeting_is_read_without_a_sql_state() {
        let mut payload = vec![0xff, 0x6a, 0x04];
        payload.extend_from_slice(b"Host '127.0.0.1' is not allowed to connect to this MariaDB server");
        let e = server_error(&payload);
        assert_eq!(e.code, 1130);
        assert_eq!(
            e.text,
            "error 1130: Host '127.0.0.1' is not allowed to connect to this MariaDB server"
        );
    }

    #[tokio::test]
    async fn a_huge_length_is_refused_before_reading_it() {
        let (client, mut server) = tokio::io::duplex(64);
        server.write_all(&[0xff, 0xff, 0xff, 0]).await.unwrap();
        let mut wire = Wire::new(client);
        let e = wire.read(Phase::Connect).await.unwrap_err();
        assert_eq!(e.class, ErrorType::UnexpectedResponse);
        assert!(e.message.contains("16777215 bytes"), "{}", e.message);
    }

    #[tokio::test]
    async fn packets_carry_the_next_sequence_id() {
        let (client, mut server) = tokio::io::duplex(64);
        server.write_all(&[2, 0, 0, 4, b'h', b'i']).await.unwrap();
        let mut wire = Wire::new(client);
        assert_eq!(wire.read(Phase::Auth).await.unwrap(), b"hi");
        wire.write(b"ok", Phase::Auth).await.unwrap();
        let mut got = [0u8; 6];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(got, [2, 0, 0, 5, b'o', b'k']);
    }

    #[test]
    fn an_err_packet_gives_code_and_state() {
        let mut p = vec![0xff, 0x15, 0x04, b'#'];
        p.extend_from_slice(b"28000Access denied for user 'probe'");
        let e = server_error(&p);
        assert_eq!(e.code, 1045);
        assert_eq!(e.text, "error 1045 (28000): Access denied for user 'probe'");
    }
}
