//! Fuzzes what the `amqp` probe does with a broker's bytes before the tune
//! (`read_untrusted_frame`: the framing, the size cap, the depth measured without
//! recursion, then amq-protocol's recursive parser). It must neither panic nor
//! overflow the stack: the input may nest field tables as deep as its size allows.
//! A whole frame parsed is never longer than the input; anything refused says why.
//!
//! Input: the bytes as the broker sends them. Seeds hold a real `Connection.Start`
//! and a deeply nested one.

#![no_main]

use depprobe_probes::kinds::amqp::read_untrusted_frame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match read_untrusted_frame(data) {
        Ok(Some(len)) => assert!(len <= data.len()),
        Ok(None) => {}
        Err(e) => assert!(!e.message.is_empty()),
    }
});
