//! AMQP 0-9-1 frames on a probe's connection: written and parsed by `amq-protocol`,
//! read with a size cap and the run's deadline.

use amq_protocol::frame::{AMQPFrame, WriteContext, gen_frame, parse_frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::run::ProbeError;
use crate::taxonomy::{ErrorType, Phase};
use crate::transport::{Io, classify_stream};

/// The most bytes buffered for one frame before the tune: the broker's greeting is
/// a few hundred bytes; a peer that sends more is not an AMQP broker.
const MAX_FRAME: usize = 64 * 1024;

/// A connection speaking AMQP frames.
pub(super) struct Wire {
    io: Box<dyn Io>,
    buf: Vec<u8>,
}

/// What ended a read that produced no frame.
pub(super) enum Ended {
    /// The broker closed the connection.
    Closed,
    /// A failure, already classified.
    Failed(ProbeError),
}

impl From<ProbeError> for Ended {
    fn from(e: ProbeError) -> Self {
        Ended::Failed(e)
    }
}

impl Wire {
    pub(super) fn new(io: Box<dyn Io>) -> Wire {
        Wire {
            io,
            buf: Vec::with_capacity(4096),
        }
    }

    /// Writes raw bytes (the protocol header).
    pub(super) async fn send_raw(&mut self, bytes: &[u8], phase: Phase) -> Result<(), ProbeError> {
        self.io
            .write_all(bytes)
            .await
            .map_err(|e| classify_stream(phase, &e))?;
        self.io
            .flush()
            .await
            .map_err(|e| classify_stream(phase, &e))
    }

    /// Writes one frame.
    pub(super) async fn send(&mut self, frame: &AMQPFrame, phase: Phase) -> Result<(), ProbeError> {
        let bytes = gen_frame(frame)(WriteContext::from(Vec::new()))
            .map_err(|e| {
                ProbeError::new(
                    ErrorType::UnexpectedResponse,
                    phase,
                    format!("an AMQP frame could not be written: {e}"),
                )
            })?
            .into_inner()
            .0;
        self.send_raw(&bytes, phase).await
    }

    /// The next frame that is not a heartbeat.
    pub(super) async fn next(&mut self, phase: Phase) -> Result<AMQPFrame, Ended> {
        loop {
            if !self.buf.is_empty() {
                match parse_frame(self.buf.as_slice()) {
                    Ok((rest, frame)) => {
                        let used = self.buf.len() - rest.len();
                        self.buf.drain(..used);
                        if matches!(frame, AMQPFrame::Heartbeat) {
                            continue;
                        }
                        return Ok(frame);
                    }
                    Err(e) if e.is_incomplete() => {}
                    Err(_) => {
                        return Err(ProbeError::new(
                            ErrorType::UnexpectedResponse,
                            phase,
                            format!(
                                "the server's reply is not AMQP 0-9-1 (first bytes: {})",
                                crate::transport::http_client::snippet(
                                    &self.buf[..self.buf.len().min(16)]
                                )
                            ),
                        )
                        .into());
                    }
                }
            }
            if self.buf.len() >= MAX_FRAME {
                return Err(ProbeError::new(
                    ErrorType::UnexpectedResponse,
                    phase,
                    format!(
                        "the server sent more than {MAX_FRAME} bytes without a complete AMQP frame"
                    ),
                )
                .into());
            }
            let mut chunk = [0u8; 4096];
            let n = self
                .io
                .read(&mut chunk)
                .await
                .map_err(|e| classify_stream(phase, &e))?;
            if n == 0 {
                return Err(Ended::Closed);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Closes the TCP/TLS stream (best effort).
    pub(super) async fn shutdown(&mut self) {
        let _ = self.io.shutdown().await;
    }
}
