//! Any bytes given to a client's frame decoder: an error or a message, never a panic;
//! a decoded message re-encodes to a frame that decodes to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_core::codec::DecodeLimits;
use weft_core::protocol::ServerMessage;

fuzz_target!(|frame: &[u8]| {
    let limits = DecodeLimits::default();
    if let Ok(message) = ServerMessage::decode(frame, &limits) {
        let again = ServerMessage::decode(&message.encode(), &limits);
        assert_eq!(again.as_ref(), Ok(&message), "re-encoding changed the message");
    }
});
