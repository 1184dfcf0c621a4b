//! Every stream decoder and encoder never panics: the first byte picks the (client, upstream) pair
//! and whether the client asked for usage, the rest is the upstream's SSE bytes. Every converted
//! stream must end with the client's terminator or an error.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use octo_convert::ResponseConverter;
use octo_core::sse::SseParser;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let (client, upstream) = common::pair(selector);
    let mut parser = SseParser::with_max_event_bytes(1 << 16);
    parser.push(body);
    let mut events = Vec::new();
    loop {
        match parser.next_event() {
            Ok(Some(ev)) => events.push(Ok(ev)),
            Ok(None) => break,
            Err(e) => {
                events.push(Err(e));
                break;
            }
        }
    }
    if let Ok(Some(ev)) = parser.finish() {
        events.push(Ok(ev));
    }
    let out = ResponseConverter::new(client, upstream, "model")
        .expect("chat protocols")
        .with_stream_usage(selector & 0x80 != 0)
        .stream()
        .convert_all(events);
    assert!(
        !out.is_empty(),
        "a converted stream always ends with something"
    );
    for item in out {
        match item {
            Ok(ev) => {
                let _ = ev.to_frame();
            }
            Err(e) => {
                let _ = e.render_stream_frame(client);
            }
        }
    }
});
