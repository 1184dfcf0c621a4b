//! Every full-response decoder (and every client encoder) never panics: the first byte picks the
//! (client, upstream) pair, the rest is the upstream's body.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use octo_engines::convert::testing::convert_response;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let (client, upstream) = common::pair(selector);
    if let Ok(v) = convert_response(client, upstream, body) {
        let _ = v.to_string();
    }
});
