//! Fuzzes the decoder of an OTLP/HTTP receiver's answer to an export
//! (`read_export_response`, protobuf `Export*ServiceResponse`). The body is the
//! receiver's, so anything: it must be decoded or refused, never a panic, and what
//! is decoded comes from the body (a message no longer than it).
//!
//! Input: one byte choosing the signal (even: metrics, odd: traces), then the body.

#![no_main]

use depprobe_probes::kinds::otlp::read_export_response;
use depprobe_probes::kinds::otlp::spec::OtlpSignal;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&signal, body)) = data.split_first() else {
        return;
    };
    let signal = if signal % 2 == 0 {
        OtlpSignal::Metrics
    } else {
        OtlpSignal::Traces
    };
    if let Ok(accepted) = read_export_response(signal, body) {
        assert!(accepted.message.len() <= body.len());
    }
});
