//! Every request decoder (and the encoder for every other upstream) never panics: the first byte
//! picks the (client, upstream) pair and the Gemini route, the rest is the client's body.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use octo_convert::{ConvertOptions, convert_request};
use octo_core::{Body, RouteParams};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let (client, upstream) = common::pair(selector);
    let route = RouteParams {
        model: (selector & 0x80 != 0).then(|| "m".to_owned()),
        stream: Some(selector & 0x40 != 0),
    };
    // The body is read as the gateway reads it.
    let mut body = Body::from_bytes(body.to_vec());
    let Ok(json) = body.json() else {
        return;
    };
    if let Ok(converted) =
        convert_request(client, upstream, json, &route, &ConvertOptions::default())
    {
        let _ = converted.body.to_string();
    }
});
