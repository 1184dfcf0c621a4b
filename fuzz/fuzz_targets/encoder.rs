//! Every client protocol's stream encoder, fed arbitrary canonical events in any order: never
//! panics, writes only JSON events, and closes the stream with the client's terminator. The first
//! byte picks the client protocol; the rest is read by `octo_convert::fuzzing::encode_arbitrary`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use octo_core::Protocol;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let client = Protocol::CHAT_PROTOCOLS[usize::from(selector) % 4];
    octo_convert::fuzzing::encode_arbitrary(client, rest);
});
