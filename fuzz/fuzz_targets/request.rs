//! Every request decoder (and the encoder for every other upstream) never panics: the first byte
//! picks the (client, upstream) pair and the Gemini route, the rest is the client's body.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use octo_core::RouteParams;
use octo_engines::convert::testing::convert_request;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let (client, upstream) = common::pair(selector);
    let route = RouteParams {
        model: (selector & 0x80 != 0).then(|| "m".to_owned()),
        stream: Some(selector & 0x40 != 0),
    };
    if let Ok(v) = convert_request(client, upstream, body, route) {
        let _ = v.to_string();
    }
});
