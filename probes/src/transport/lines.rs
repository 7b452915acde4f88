//! Line-based text protocols (NATS, SMTP): lines read with a size cap and written
//! whole, on a connection that may later be handed back for a TLS upgrade.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Io, classify_stream};
use crate::run::ProbeError;
use crate::taxonomy::{ErrorType, Phase};

/// A connection read line by line.
pub struct Lines {
    io: Box<dyn Io>,
    buf: Vec<u8>,
    max_line: usize,
}

impl Lines {
    /// Reads lines of at most `max_line` bytes from `io`.
    pub fn new(io: Box<dyn Io>, max_line: usize) -> Lines {
        Lines {
            io,
            buf: Vec::new(),
            max_line,
        }
    }

    /// The next line without its line ending; the peer closing first is
    /// `connection_reset` with `closed` as the message.
    pub async fn line(&mut self, phase: Phase, closed: &str) -> Result<String, ProbeError> {
        loop {
            if let Some(end) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                let text = String::from_utf8_lossy(&line);
                return Ok(text.trim_end_matches(['\r', '\n']).to_owned());
            }
            if self.buf.len() > self.max_line {
                return Err(ProbeError::new(
                    ErrorType::UnexpectedResponse,
                    phase,
                    format!("the server sent a line longer than {} bytes", self.max_line),
                ));
            }
            let mut chunk = [0u8; 4096];
            let n = self
                .io
                .read(&mut chunk)
                .await
                .map_err(|e| classify_stream(phase, &e))?;
            if n == 0 {
                return Err(ProbeError::new(ErrorType::ConnectionReset, phase, closed));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Writes `text` as is (the caller ends it with `\r\n`).
    pub async fn send(&mut self, text: &str, phase: Phase) -> Result<(), ProbeError> {
        self.io
            .write_all(text.as_bytes())
            .await
            .map_err(|e| classify_stream(phase, &e))?;
        self.io
            .flush()
            .await
            .map_err(|e| classify_stream(phase, &e))
    }

    /// The connection, for a TLS upgrade. Bytes the server sent ahead of the
    /// handshake would be trusted as if they came over TLS (the STARTTLS injection
    /// of CVE-2011-0411), so they are an error.
    pub fn into_inner(self, phase: Phase) -> Result<Box<dyn Io>, ProbeError> {
        if !self.buf.is_empty() {
            return Err(ProbeError::new(
                ErrorType::UnexpectedResponse,
                phase,
                "the server sent data ahead of the TLS handshake; refusing to trust it",
            ));
        }
        Ok(self.io)
    }

    /// Closes the connection (best effort).
    pub async fn shutdown(&mut self) {
        let _ = self.io.shutdown().await;
    }
}
