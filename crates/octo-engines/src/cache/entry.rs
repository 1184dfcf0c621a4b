//! A stored answer and its byte encoding (the same in every store).
//!
//! An entry is a complete answer in the client's protocol: a full JSON body, or the stream's
//! events in order (name, id, data), plus the usage and finish reason the upstream reported for
//! it, so a hit is logged with the usage of what it replays. The encoding is a small
//! length-prefixed binary format; decoding slices the stored buffer, so a hit copies no event
//! data.

use bytes::{BufMut, Bytes, BytesMut};
use octo_core::Event;
use octo_core::usage::Usage;

const MAGIC: &[u8; 4] = b"OCE1";

/// What a stored answer holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// A full body and its content type.
    Full {
        /// The `content-type` the answer had (`application/json` when it had none).
        content_type: Option<String>,
        /// The body as sent to the client.
        body: Bytes,
    },
    /// A complete stream's events, in order.
    Stream(Vec<StoredEvent>),
}

/// One event of a stored stream.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// The `event:` name.
    pub name: Option<String>,
    /// The `id:` field.
    pub id: Option<String>,
    /// The data.
    pub data: Bytes,
}

impl StoredEvent {
    /// The event as the stream sends it.
    pub fn to_event(&self) -> Event {
        let mut ev = match &self.name {
            Some(name) => Event::named(name.clone(), self.data.clone()),
            None => Event::data(self.data.clone()),
        };
        if let Some(id) = &self.id {
            ev = ev.with_id(id.clone());
        }
        ev
    }

    /// Bytes this event takes in an encoded entry.
    pub fn encoded_len(&self) -> usize {
        12 + self.name.as_ref().map_or(0, String::len)
            + self.id.as_ref().map_or(0, String::len)
            + self.data.len()
    }
}

/// A stored answer with its usage.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The answer.
    pub answer: Answer,
    /// The usage the upstream reported for it.
    pub usage: Option<Usage>,
    /// Why generation stopped, in the upstream's words.
    pub finish_reason: Option<String>,
}

impl Entry {
    /// The encoded form.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(64 + self.payload_len());
        out.put_slice(MAGIC);
        match &self.usage {
            Some(u) => {
                out.put_u8(1);
                for n in [
                    u.input_tokens,
                    u.cache_read_tokens,
                    u.cache_write_tokens,
                    u.output_tokens,
                    u.reasoning_tokens,
                ] {
                    out.put_u64_le(n);
                }
            }
            None => out.put_u8(0),
        }
        put_opt_str(&mut out, self.finish_reason.as_deref());
        match &self.answer {
            Answer::Full { content_type, body } => {
                out.put_u8(0);
                put_opt_str(&mut out, content_type.as_deref());
                put_blob(&mut out, body);
            }
            Answer::Stream(events) => {
                out.put_u8(1);
                out.put_u32_le(u32::try_from(events.len()).unwrap_or(u32::MAX));
                for ev in events {
                    put_opt_str(&mut out, ev.name.as_deref());
                    put_opt_str(&mut out, ev.id.as_deref());
                    put_blob(&mut out, &ev.data);
                }
            }
        }
        out.freeze()
    }

    fn payload_len(&self) -> usize {
        match &self.answer {
            Answer::Full { body, .. } => body.len(),
            Answer::Stream(events) => events.iter().map(StoredEvent::encoded_len).sum(),
        }
    }

    /// Decodes an entry; `None` when the bytes are not one (another version, a corrupt value).
    pub fn decode(bytes: &Bytes) -> Option<Entry> {
        let mut r = Reader { buf: bytes, pos: 0 };
        if r.take(4)? != &MAGIC[..] {
            return None;
        }
        let usage = match r.u8()? {
            0 => None,
            1 => Some(Usage {
                input_tokens: r.u64()?,
                cache_read_tokens: r.u64()?,
                cache_write_tokens: r.u64()?,
                output_tokens: r.u64()?,
                reasoning_tokens: r.u64()?,
            }),
            _ => return None,
        };
        let finish_reason = r.opt_str()?;
        let answer = match r.u8()? {
            0 => Answer::Full {
                content_type: r.opt_str()?,
                body: r.blob()?,
            },
            1 => {
                let n = r.u32()? as usize;
                // Each event takes at least 12 bytes: a corrupt count cannot allocate much.
                let mut events = Vec::with_capacity(n.min(bytes.len() / 12));
                for _ in 0..n {
                    events.push(StoredEvent {
                        name: r.opt_str()?,
                        id: r.opt_str()?,
                        data: r.blob()?,
                    });
                }
                Answer::Stream(events)
            }
            _ => return None,
        };
        (r.pos == bytes.len()).then_some(Entry {
            answer,
            usage,
            finish_reason,
        })
    }
}

/// `u32::MAX` marks an absent string.
fn put_opt_str(out: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => {
            out.put_u32_le(u32::try_from(s.len()).unwrap_or(u32::MAX - 1));
            out.put_slice(s.as_bytes());
        }
        None => out.put_u32_le(u32::MAX),
    }
}

fn put_blob(out: &mut BytesMut, b: &[u8]) {
    out.put_u32_le(u32::try_from(b.len()).unwrap_or(u32::MAX - 1));
    out.put_slice(b);
}

struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn opt_str(&mut self) -> Option<Option<String>> {
        let n = self.u32()?;
        if n == u32::MAX {
            return Some(None);
        }
        let s = std::str::from_utf8(self.take(n as usize)?).ok()?;
        Some(Some(s.to_owned()))
    }
    fn blob(&mut self) -> Option<Bytes> {
        let n = self.u32()? as usize;
        let start = self.pos;
        self.take(n)?;
        Some(self.buf.slice(start..start + n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream_entry() -> Entry {
        Entry {
            answer: Answer::Stream(vec![
                StoredEvent {
                    name: Some("message_start".into()),
                    id: None,
                    data: Bytes::from_static(br#"{"type":"message_start"}"#),
                },
                StoredEvent {
                    name: None,
                    id: Some("7".into()),
                    data: Bytes::from_static(b"[DONE]"),
                },
            ]),
            usage: Some(Usage {
                input_tokens: 3,
                output_tokens: 9,
                ..Usage::default()
            }),
            finish_reason: Some("end_turn".into()),
        }
    }

    #[test]
    fn round_trips() {
        let full = Entry {
            answer: Answer::Full {
                content_type: None,
                body: Bytes::from_static(b"{\"a\":1}"),
            },
            usage: None,
            finish_reason: None,
        };
        for e in [full, stream_entry()] {
            assert_eq!(Entry::decode(&e.encode()), Some(e));
        }
    }

    #[test]
    fn corrupt_or_foreign_bytes_are_not_an_entry() {
        let good = stream_entry().encode();
        for cut in 0..good.len() {
            assert_eq!(Entry::decode(&good.slice(..cut)), None, "cut at {cut}");
        }
        let mut longer = good.to_vec();
        longer.push(0);
        assert_eq!(Entry::decode(&Bytes::from(longer)), None);
        assert_eq!(Entry::decode(&Bytes::from_static(b"OCE2....")), None);
    }

    #[test]
    fn stored_events_replay_with_their_name_and_id() {
        let Answer::Stream(events) = stream_entry().answer else {
            unreachable!()
        };
        assert_eq!(
            &events[0].to_event().to_frame()[..],
            b"event: message_start\ndata: {\"type\":\"message_start\"}\n\n"
        );
        assert_eq!(
            &events[1].to_event().to_frame()[..],
            b"id: 7\ndata: [DONE]\n\n"
        );
    }
}
