//! Fuzzes the cap on PostgreSQL backend messages (`postgres::bounded::Bounded`):
//! the framing followed over the bytes as they arrive, in pieces of any size. It
//! must not panic; once a header announces more than `MAX_MESSAGE`, the read fails
//! and the kept violation names the cap, whatever the split.
//!
//! Input: one byte that sets the size of the pieces, then the server's bytes.

#![no_main]

use depprobe_probes::kinds::postgres::bounded::{Bounded, MAX_MESSAGE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, wire)) = data.split_first() else {
        return;
    };
    let mut bounded = Bounded::new(());
    let refused = wire
        .chunks(usize::from(split).max(1))
        .any(|piece| bounded.follow(piece).is_err());
    let kept = bounded.violation().lock().map(|v| v.clone()).unwrap_or(None);
    assert_eq!(refused, kept.is_some());
    if let Some(what) = kept {
        assert!(what.contains(&format!("{} MiB", MAX_MESSAGE >> 20)), "{what}");
    }
});
