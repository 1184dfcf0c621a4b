//! Server-sent event bodies split into events: strictly, to check what a server wrote byte for
//! byte ([`parse_sse`]), or as the gateway's own parser reads them ([`events`]).

use octo_core::Event;
use octo_core::sse::SseParser;
use serde_json::Value;

/// One server-sent event, as [`parse_sse`] reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Sse {
    /// The `event:` line, if any.
    pub event: Option<String>,
    /// The `data:` payload (without the `data: ` prefix).
    pub data: String,
}

impl Sse {
    /// The payload parsed as JSON; panics if it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("SSE data is not JSON ({e}): {:?}", self.data))
    }
}

/// Splits an SSE body into events, accepting LF or CRLF and checking the exact `data: ` prefix.
/// Panics on a trailing partial event, a comment line or an event with several `data:` lines:
/// the servers under test never write them.
///
/// ```
/// let events = octo_test::parse_sse("event: ping\ndata: {}\n\ndata: [DONE]\n\n");
/// assert_eq!(events[0].event.as_deref(), Some("ping"));
/// assert_eq!(events[1].data, "[DONE]");
/// ```
pub fn parse_sse(body: &str) -> Vec<Sse> {
    let body = body.replace("\r\n", "\n");
    assert!(
        body.is_empty() || body.ends_with("\n\n"),
        "unterminated event in {body:?}"
    );
    body.split_terminator("\n\n")
        .map(|block| {
            let mut event = None;
            let mut data = None;
            for line in block.lines() {
                if let Some(name) = line.strip_prefix("event: ") {
                    event = Some(name.to_owned());
                } else if let Some(payload) = line.strip_prefix("data: ") {
                    assert!(data.is_none(), "multi-line data in {block:?}");
                    data = Some(payload.to_owned());
                } else {
                    panic!("unexpected SSE line {line:?}");
                }
            }
            Sse {
                event,
                data: data.expect("event without data"),
            }
        })
        .collect()
}

/// The events of an SSE body as [`SseParser`] reads them (comments skipped, a final event without
/// its blank line kept); panics on what the parser refuses.
///
/// ```
/// let events = octo_test::events("data: {\"a\":1}\n\n: keep-alive\n\ndata: [DONE]");
/// assert_eq!(events.len(), 2);
/// ```
pub fn events(text: &str) -> Vec<Event> {
    let mut parser = SseParser::new();
    parser.push(text.as_bytes());
    let mut out = Vec::new();
    while let Some(event) = parser.next_event().unwrap() {
        out.push(event);
    }
    if let Some(event) = parser.finish().unwrap() {
        out.push(event);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_sse_reads_crlf_and_event_names() {
        let events = parse_sse("event: a\r\ndata: {\"x\":1}\r\n\r\ndata: [DONE]\n\n");
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].event.as_deref(), Some("a"));
        assert_eq!(events[0].json()["x"], 1);
        assert_eq!(events[1].event, None);
    }

    #[test]
    #[should_panic(expected = "unterminated event")]
    fn parse_sse_refuses_a_partial_event() {
        parse_sse("data: x\n");
    }

    #[test]
    fn events_keeps_a_final_event_without_its_blank_line() {
        let events = events("data: a\n\ndata: b");
        assert_eq!(events.len(), 2);
    }
}
