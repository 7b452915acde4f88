//! Fuzzes the MongoDB relay's reply check (`relay::check_reply`), the bound that
//! stands before the driver's recursive BSON decoding. It must not panic, and a
//! reply it passes must decode with the recursive decoder without overflowing the
//! stack: every document the check lets through nests at most 100 deep.

#![no_main]

use depprobe_probes::kinds::mongodb::relay::check_reply;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The header the relay has already checked: the length is the message's.
    let mut message = data.to_vec();
    if message.len() >= 16 {
        let len = (message.len() as i32).to_le_bytes();
        message[..4].copy_from_slice(&len);
    }
    if check_reply(&message).is_ok() && message.len() > 21 {
        // An OP_MSG body section as the driver reads it, recursively.
        let _ = bson::Document::from_reader(&mut &message[21..]);
    }
});
