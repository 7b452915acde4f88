//! Fuzzes the reading of an OCSP response (`read_staple`): a server staples any
//! bytes it likes and an online responder answers with any body, so the response
//! must be read, verified or refused, never a panic, and an answer that counts must
//! be about the leaf (a response that does not parse never revokes anything).
//!
//! Input: four bytes of time (`depprobe_fuzz::moment`), two bytes (big-endian) of
//! the chain's length, the chain DER after DER (`depprobe_fuzz::der_chain`: leaf,
//! then its issuer), then the response.

#![no_main]

use depprobe_fuzz::{der_chain, moment};
use depprobe_probes::transport::tls::ocsp::read_staple;
use libfuzzer_sys::fuzz_target;
use rustls_pki_types::CertificateDer;

fuzz_target!(|data: &[u8]| {
    let Some((time, rest)) = data.split_first_chunk::<4>() else {
        return;
    };
    let Some((len, rest)) = rest.split_first_chunk::<2>() else {
        return;
    };
    let len = usize::from(u16::from_be_bytes(*len)).min(rest.len());
    let (chain, response) = rest.split_at(len);
    let chain: Vec<CertificateDer<'static>> = der_chain(chain)
        .into_iter()
        .map(|c| CertificateDer::from(c.to_vec()))
        .collect();
    if let Ok(answer) = read_staple(response, &chain, &[], moment(*time)) {
        // Only a response that carries a signature over a status can count.
        assert!(response.len() > 64, "{answer:?} from {} bytes", response.len());
    }
});
