//! Drives a client protocol's stream encoder with canonical events made from arbitrary bytes,
//! for the `encoder` fuzz target (`fuzz/`). Only built with the `fuzzing` cargo feature.
//!
//! The decoders only ever produce well-ordered canonical events from real upstreams; the encoders
//! must still survive any order (a tool-call fragment before its start, a block end with nothing
//! open, a usage snapshot after the finish), because an upstream's stream can be any of those.
//! [`encode_arbitrary`] reads one canonical event per step from the bytes and checks what a client
//! relies on: every event the encoder writes is JSON (or the `[DONE]` marker) and frames, and the
//! stream is closed by the client protocol's terminator.

use std::collections::VecDeque;

use octo_core::usage::Usage;
use octo_core::{Error, Event, Protocol};

use crate::ResponseConverter;
use crate::canonical::{StopReason, StreamEvent, StreamStart};

/// Reads canonical events from `data`, encodes them for `client` (the first byte picks how the
/// stream ends: finished, or failed after the events), and returns the client's events.
///
/// # Panics
/// When the encoder panics, writes an event whose data is not JSON, or ends a stream without
/// the client protocol's terminator: that is what the fuzz target looks for.
pub fn encode_arbitrary(client: Protocol, data: &[u8]) -> Vec<Event> {
    let upstream = if client == Protocol::OpenAiChat {
        Protocol::Anthropic
    } else {
        Protocol::OpenAiChat
    };
    let answer = ResponseConverter::new(client, upstream, "model").expect("chat protocols");
    let mut encoder = answer.encoder();
    let mut out = VecDeque::new();
    let mut bytes = Bytes(data);
    let fail = bytes.byte() & 1 == 1;
    while let Some(event) = bytes.event() {
        encoder.encode(event, &mut out);
        encoder.flush(&mut out);
    }
    let failed = fail && encoder.fail(&Error::upstream("fuzz: the upstream failed"), &mut out);
    if !fail {
        encoder.finish(&mut out);
    }
    let out: Vec<Event> = out.into();
    for event in &out {
        let frame = event.to_frame();
        assert!(frame.ends_with(b"\n\n"), "an unterminated frame: {frame:?}");
        if event.is_done_marker() {
            continue;
        }
        let data = event.data_body().to_bytes();
        if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&data) {
            panic!("{client}: an event that is not JSON ({e}): {data:?}");
        }
    }
    if !fail || failed {
        assert_terminated(client, &out, failed);
    }
    out
}

/// The client protocol's stream ends as its clients expect.
fn assert_terminated(client: Protocol, out: &[Event], failed: bool) {
    let last = out.last();
    let last_json = || {
        last.and_then(|e| {
            serde_json::from_slice::<serde_json::Value>(&e.data_body().to_bytes()).ok()
        })
        .unwrap_or_default()
    };
    match client {
        Protocol::OpenAiChat => {
            assert!(
                last.is_some_and(Event::is_done_marker),
                "chat stream without [DONE]"
            );
        }
        Protocol::Anthropic => {
            assert_eq!(
                last_json()["type"],
                "message_stop",
                "anthropic stream without message_stop"
            );
        }
        Protocol::OpenAiResponses => {
            let kind = last_json()["type"].as_str().unwrap_or_default().to_owned();
            let expected: &[&str] = if failed {
                &["response.failed"]
            } else {
                &["response.completed", "response.incomplete"]
            };
            assert!(
                expected.contains(&kind.as_str()),
                "responses stream ends with {kind:?}"
            );
        }
        // Gemini streams have no terminator.
        _ => {}
    }
}

/// A cursor over the fuzzer's bytes.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else {
            return 0;
        };
        self.0 = rest;
        b
    }

    fn number(&mut self) -> u64 {
        let n = u64::from(self.byte());
        // Mostly small, sometimes huge (overflow in sums).
        if n >= 250 { u64::MAX - (n - 250) } else { n }
    }

    /// A string of up to 31 bytes (lossily UTF-8), from the length byte's low bits.
    fn string(&mut self) -> String {
        let len = usize::from(self.byte() & 31).min(self.0.len());
        let (text, rest) = self.0.split_at(len);
        self.0 = rest;
        String::from_utf8_lossy(text).into_owned()
    }

    fn maybe_string(&mut self) -> Option<String> {
        (self.byte() & 1 == 1).then(|| self.string())
    }

    fn event(&mut self) -> Option<StreamEvent> {
        if self.0.is_empty() {
            return None;
        }
        Some(match self.byte() % 11 {
            0 => StreamEvent::Start(StreamStart {
                id: self.maybe_string(),
                model: self.maybe_string(),
                created: (self.byte() & 1 == 1).then(|| self.number()),
            }),
            1 => StreamEvent::Text(self.string()),
            2 => StreamEvent::Refusal(self.string()),
            3 => StreamEvent::Thinking(self.string()),
            4 => StreamEvent::ThinkingSignature(self.string()),
            5 => StreamEvent::RedactedThinking(self.string()),
            6 => StreamEvent::ToolCallStart {
                key: u64::from(self.byte() & 3),
                id: self.string(),
                name: self.string(),
                signature: self.maybe_string(),
            },
            7 => StreamEvent::ToolCallArgs {
                key: u64::from(self.byte() & 3),
                fragment: self.string(),
            },
            8 => StreamEvent::BlockEnd,
            9 => StreamEvent::Usage(Usage {
                input_tokens: self.number(),
                cache_read_tokens: self.number(),
                cache_write_tokens: self.number(),
                output_tokens: self.number(),
                reasoning_tokens: self.number(),
            }),
            _ => StreamEvent::Finish {
                reason: match self.byte() % 5 {
                    0 => StopReason::EndTurn,
                    1 => StopReason::StopSequence,
                    2 => StopReason::MaxTokens,
                    3 => StopReason::ToolUse,
                    _ => StopReason::ContentFilter,
                },
                stop_sequence: self.maybe_string(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arbitrary_bytes_encode_for_every_client() {
        let inputs: [&[u8]; 5] = [
            b"",
            b"\x00\x00\x01\x03abc\x01\x02hi\x08\x0a\x00\x00",
            b"\x00\x06\x01\x02id\x03fn_\x00\x07\x01\x02{}\x07\x02\x01}\x08\x09\xff\xfa\x01\x02\x03",
            b"\x01\x07\x00\x01x\x08\x08\x0a\x03\x01\x01z",
            b"\x00\x04\x03sig\x05\x02rr\x03\x04thnk\x02\x02no",
        ];
        for client in Protocol::CHAT_PROTOCOLS {
            for input in inputs {
                encode_arbitrary(client, input);
            }
        }
    }
}
