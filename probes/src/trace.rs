//! W3C trace context for the requests a probe sends.
//!
//! A run's root span has its identity before the run starts, so that `http`,
//! `metrics` and `otlp` probes can send it in a `traceparent` header: a dependency
//! instrumented with OpenTelemetry then shows its own spans inside the probe's
//! trace. The agent exports the run's span with the same identity.

/// The trace and span identity of one run's root span.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceContext {
    /// The trace id (16 bytes, never all zero).
    pub trace_id: [u8; 16],
    /// The root span's id (8 bytes, never all zero).
    pub span_id: [u8; 8],
}

impl TraceContext {
    /// A new random identity (from the system's random source).
    pub fn random() -> TraceContext {
        let mut trace_id = [0u8; 16];
        let mut span_id = [0u8; 8];
        // Should the random source fail, fixed non-zero ids still form a valid
        // context; the ids only join the probe's span with the target's.
        if aws_lc_rs::rand::fill(&mut trace_id).is_err() {
            trace_id = *b"depprobe-tracing";
        }
        if aws_lc_rs::rand::fill(&mut span_id).is_err() {
            span_id = *b"depprobe";
        }
        if trace_id == [0; 16] {
            trace_id[15] = 1;
        }
        if span_id == [0; 8] {
            span_id[7] = 1;
        }
        TraceContext { trace_id, span_id }
    }

    /// The `traceparent` header value: version 00, sampled.
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-01", hex(&self.trace_id), hex(&self.span_id))
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_has_the_w3c_shape() {
        let t = TraceContext {
            trace_id: [0xab; 16],
            span_id: [0x01; 8],
        };
        assert_eq!(
            t.traceparent(),
            "00-abababababababababababababababab-0101010101010101-01"
        );
        let r = TraceContext::random();
        assert_ne!(r.trace_id, [0; 16]);
        assert_ne!(r, TraceContext::random());
    }
}
