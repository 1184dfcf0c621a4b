//! The SSE parser never panics and never loses bytes it has already framed, whatever the input and
//! however it is chunked. The first byte sets the chunk size.
#![no_main]

use libfuzzer_sys::fuzz_target;
use octo_core::sse::SseParser;

fuzz_target!(|data: &[u8]| {
    let Some((&size, rest)) = data.split_first() else {
        return;
    };
    let size = usize::from(size).max(1);
    let mut parser = SseParser::with_max_event_bytes(4096);
    let mut events = 0usize;
    for chunk in rest.chunks(size) {
        parser.push(chunk);
        loop {
            match parser.next_event() {
                Ok(Some(ev)) => {
                    events += 1;
                    // Encoding any parsed event must work too.
                    let _ = ev.to_frame();
                    let _ = ev.name();
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    if let Ok(Some(ev)) = parser.finish() {
        events += 1;
        let _ = ev.to_frame();
    }
    assert!(events <= rest.len());
});
