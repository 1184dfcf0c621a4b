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
    let converted = answer.convert(&json);
    if let Ok(v) = &converted {
        let _ = v.to_string();
    }
    // The read straight from bytes takes only what the document's read accepts, and writes JSON
    // with the same members (ids generated for an answer without one differ between the two).
    if let Some(out) = answer.convert_bytes(body) {
        let fast: serde_json::Value = serde_json::from_slice(&out).expect("JSON");
        let tree = converted.expect("the document's read accepts what the bytes' read accepts");
        let keys = |v: &serde_json::Value| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>());
        assert_eq!(keys(&fast), keys(&tree));
    }
});
