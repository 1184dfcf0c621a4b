//! Every full-response decoder (and every client encoder) never panics: the first byte picks the
//! (client, upstream) pair, the rest is the upstream's body.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use octo_convert::ResponseConverter;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let (client, upstream) = common::pair(selector);
    let Ok(json) = serde_json::from_slice(body) else {
        return;
    };
    let answer = ResponseConverter::new(client, upstream, "model").expect("chat protocols");
    if let Ok(v) = answer.convert(&json) {
        let _ = v.to_string();
    }
});
