//! Any bytes given as a `POST /v1/sync` body: the envelope decoder and then each frame's
//! decoder return errors or messages, never panic; a decoded envelope re-encodes to the
//! same frames.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_core::codec::DecodeLimits;
use weft_core::protocol::{ClientMessage, decode_envelope, encode_envelope};

fuzz_target!(|body: &[u8]| {
    let limits = DecodeLimits::default();
    if let Ok(frames) = decode_envelope(body, &limits) {
        let owned: Vec<Vec<u8>> = frames.iter().map(|f| f.to_vec()).collect();
        let again = encode_envelope(&owned);
        let decoded: Vec<Vec<u8>> =
            decode_envelope(&again, &limits).expect("re-encoded envelope decodes").iter().map(|f| f.to_vec()).collect();
        assert_eq!(decoded, owned, "re-encoding changed the frames");
        for frame in frames {
            let _ = ClientMessage::decode(frame, &limits);
        }
    }
});
