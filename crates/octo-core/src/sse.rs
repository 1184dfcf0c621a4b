//! Server-sent events: a byte-level decoder that keeps raw frames, and protocol-aware keep-alives.
//!
//! [`SseParser`] is sans-IO: feed it chunks as they arrive ([`SseParser::push`]), pull complete
//! events ([`SseParser::next_event`]), and call [`SseParser::finish`] at end of input to flush a last
//! event that lacks its blank line. It follows the WHATWG event-stream rules: LF, CR and CRLF line
//! ends (a CRLF split across two chunks included), comments, `event:`/`id:`/`data:` fields with one
//! optional space after the colon, multi-line data joined with `\n`, unknown fields ignored, and
//! frames without data not dispatched.
//!
//! A frame in canonical form (consistent LF or CRLF line ends, `field: value` lines, only
//! `event`/`id`/`data` fields, one data line) keeps its raw bytes in the [`Event`], so passthrough forwards it
//! untouched; anything else is re-encoded canonically, which also strips upstream comments before they
//! can reach a strict client. [`SseDecoder`] wraps a byte stream into an event stream.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::Stream;

use crate::error::Error;
use crate::event::Event;
use crate::protocol::Protocol;

/// The default cap on one event's size (16 MiB): a larger frame is an error, not unbounded memory.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// An incremental SSE decoder.
///
/// ```
/// use octo_core::sse::SseParser;
///
/// let mut p = SseParser::new();
/// p.push(b"event: ping\r");
/// assert!(p.next_event().unwrap().is_none());
/// p.push(b"\ndata: {}\r\n\r\n: comment\n\ndata: tail");
/// let ev = p.next_event().unwrap().unwrap();
/// assert_eq!(ev.name(), Some("ping"));
/// assert!(p.next_event().unwrap().is_none());
/// let last = p.finish().unwrap().unwrap();
/// assert_eq!(&last.data_body().to_bytes()[..], b"tail");
/// ```
#[derive(Debug)]
pub struct SseParser {
    buf: BytesMut,
    /// Where the scan for the end of the current frame resumes (start of an unfinished line).
    scan_from: usize,
    /// How far the unfinished line at `scan_from` is known to hold no line ending: a long line
    /// arriving in many chunks is scanned once, not once per chunk (which was quadratic).
    scanned: usize,
    max_event_bytes: usize,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new()
    }
}

impl SseParser {
    /// A parser with [`DEFAULT_MAX_EVENT_BYTES`].
    pub fn new() -> Self {
        Self::with_max_event_bytes(DEFAULT_MAX_EVENT_BYTES)
    }

    /// A parser refusing events larger than `max` bytes.
    pub fn with_max_event_bytes(max: usize) -> Self {
        SseParser {
            buf: BytesMut::new(),
            scan_from: 0,
            scanned: 0,
            max_event_bytes: max,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, chunk: &[u8]) {
        if self.buf.is_empty() && self.scan_from == 0 && chunk.starts_with(b"\xEF\xBB\xBF") {
            self.buf.extend_from_slice(&chunk[3..]);
        } else {
            self.buf.extend_from_slice(chunk);
        }
    }

    /// The next complete event, if one is buffered.
    ///
    /// # Errors
    /// When the pending frame exceeds the size limit.
    pub fn next_event(&mut self) -> Result<Option<Event>, Error> {
        loop {
            let Some(frame_end) = self.find_frame_end() else {
                if self.buf.len() > self.max_event_bytes {
                    return Err(self.too_large());
                }
                return Ok(None);
            };
            let frame = self.buf.split_to(frame_end).freeze();
            self.scan_from = 0;
            self.scanned = 0;
            if let Some(ev) = build_event(frame, true) {
                return Ok(Some(ev));
            }
        }
    }

    /// Flushes what is left at end of input as a last event (a frame missing its blank line).
    ///
    /// # Errors
    /// When the leftover exceeds the size limit.
    pub fn finish(&mut self) -> Result<Option<Event>, Error> {
        if let Some(ev) = self.next_event()? {
            return Ok(Some(ev));
        }
        if self.buf.is_empty() {
            return Ok(None);
        }
        let frame = self.buf.split().freeze();
        self.scan_from = 0;
        self.scanned = 0;
        Ok(build_event(frame, false))
    }

    fn too_large(&self) -> Error {
        Error::upstream(format!(
            "upstream SSE event exceeds {} bytes",
            self.max_event_bytes
        ))
    }

    /// Index just past the blank line ending the first frame, if the buffer holds one.
    fn find_frame_end(&mut self) -> Option<usize> {
        let buf = &self.buf[..];
        let mut line_start = self.scan_from;
        loop {
            let from = line_start.max(self.scanned);
            let Some(rel) = memchr::memchr2(b'\n', b'\r', &buf[from..]) else {
                self.scan_from = line_start;
                self.scanned = buf.len();
                return None;
            };
            let end = from + rel;
            let next = if buf[end] == b'\n' {
                end + 1
            } else if end + 1 == buf.len() {
                // A CR at the end of the buffer: its LF may be in the next chunk.
                self.scan_from = line_start;
                self.scanned = end;
                return None;
            } else if buf[end + 1] == b'\n' {
                end + 2
            } else {
                end + 1
            };
            if end == line_start {
                return Some(next);
            }
            line_start = next;
            self.scan_from = line_start;
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineEnding {
    Lf,
    CrLf,
    Cr,
}

/// Splits a frame into lines and builds its event; `None` for frames without data.
fn build_event(frame: Bytes, terminated: bool) -> Option<Event> {
    let mut canonical = terminated;
    let mut name = None;
    let mut id = None;
    let mut data: Vec<Bytes> = Vec::new();
    let mut first_ending = None;
    let mut pos = 0;
    let len = frame.len();
    while pos < len {
        let rel = frame[pos..].iter().position(|&b| b == b'\n' || b == b'\r');
        let (end, next) = match rel {
            None => (len, len),
            Some(r) => {
                let end = pos + r;
                let (next, ending) = if frame[end] == b'\n' {
                    (end + 1, LineEnding::Lf)
                } else if end + 1 < len && frame[end + 1] == b'\n' {
                    (end + 2, LineEnding::CrLf)
                } else {
                    (end + 1, LineEnding::Cr)
                };
                // Raw frames are kept for LF-only or CRLF-only frames; mixed or lone CR are re-encoded.
                if ending == LineEnding::Cr || *first_ending.get_or_insert(ending) != ending {
                    canonical = false;
                }
                (end, next)
            }
        };
        let line = frame.slice(pos..end);
        pos = next;
        if line.is_empty() {
            continue;
        }
        if line[0] == b':' {
            canonical = false;
            continue;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(c) => {
                let after = c + 1;
                let value_start = if line.get(after) == Some(&b' ') {
                    after + 1
                } else {
                    canonical = false;
                    after
                };
                (line.slice(..c), line.slice(value_start..))
            }
            None => {
                canonical = false;
                (line.clone(), Bytes::new())
            }
        };
        match &field[..] {
            b"data" => data.push(value),
            b"event" => {
                if name.is_some() {
                    canonical = false;
                }
                name = (!value.is_empty()).then_some(value);
            }
            b"id" => {
                if !value.contains(&0) {
                    id = Some(value);
                }
            }
            _ => canonical = false,
        }
    }
    let data = match data.len() {
        0 => return None,
        1 => data.pop().unwrap_or_default(),
        _ => {
            canonical = false;
            let mut joined = BytesMut::new();
            for (i, part) in data.iter().enumerate() {
                if i > 0 {
                    joined.extend_from_slice(b"\n");
                }
                joined.extend_from_slice(part);
            }
            joined.freeze()
        }
    };
    if name
        .as_ref()
        .is_some_and(|n| std::str::from_utf8(n).is_err())
    {
        name = None;
        canonical = false;
    }
    let raw = canonical.then_some(frame);
    Some(Event::from_parts(name, id, data, raw))
}

/// Adapts a stream of byte chunks into a stream of [`Event`]s.
///
/// Errors from the byte stream are passed through and end the stream.
#[pin_project::pin_project]
pub struct SseDecoder<S> {
    #[pin]
    inner: S,
    parser: SseParser,
    done: bool,
}

impl<S> SseDecoder<S> {
    /// Decodes `inner` with a default [`SseParser`].
    pub fn new(inner: S) -> Self {
        Self::with_parser(inner, SseParser::new())
    }

    /// Decodes `inner` with `parser`.
    pub fn with_parser(inner: S, parser: SseParser) -> Self {
        SseDecoder {
            inner,
            parser,
            done: false,
        }
    }
}

impl<S> Stream for SseDecoder<S>
where
    S: Stream<Item = Result<Bytes, Error>>,
{
    type Item = Result<Event, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        loop {
            if *this.done {
                return Poll::Ready(None);
            }
            match this.parser.next_event() {
                Ok(Some(ev)) => return Poll::Ready(Some(Ok(ev))),
                Ok(None) => {}
                Err(e) => {
                    *this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
            }
            match this.inner.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => this.parser.push(&chunk),
                Poll::Ready(Some(Err(e))) => {
                    *this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => {
                    *this.done = true;
                    return Poll::Ready(this.parser.finish().transpose());
                }
            }
        }
    }
}

/// What to send on an idle stream so intermediaries and clients keep the connection open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeepAlive {
    /// Idle time after which a keep-alive frame is written.
    pub interval: Duration,
    /// The frame written.
    pub frame: Bytes,
}

impl KeepAlive {
    /// The default idle interval.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);

    /// The keep-alive appropriate for a client speaking `format`, or `None` where the protocol has no
    /// safe one.
    ///
    /// OpenAI clients ignore SSE comments; Anthropic clients expect `ping` events; the google-genai SDK
    /// rejects comments and unknown data, so Gemini streams get no keep-alive at all.
    pub fn for_format(format: Protocol, interval: Duration) -> Option<KeepAlive> {
        let frame: &'static [u8] = match format {
            Protocol::OpenAiChat | Protocol::OpenAiResponses => b": keep-alive\n\n",
            Protocol::Anthropic => b"event: ping\ndata: {\"type\": \"ping\"}\n\n",
            _ => return None,
        };
        Some(KeepAlive {
            interval,
            frame: Bytes::from_static(frame),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn collect_all(input: &[u8], split_at: &[usize]) -> Vec<Event> {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        let mut last = 0;
        for &cut in split_at.iter().chain(std::iter::once(&input.len())) {
            p.push(&input[last..cut]);
            last = cut;
            while let Some(ev) = p.next_event().unwrap() {
                out.push(ev);
            }
        }
        if let Some(ev) = p.finish().unwrap() {
            out.push(ev);
        }
        out
    }

    fn summary(evs: &[Event]) -> Vec<(Option<String>, Option<String>, String)> {
        evs.iter()
            .map(|e| {
                (
                    e.name().map(str::to_owned),
                    e.id().map(str::to_owned),
                    String::from_utf8(e.data_body().to_bytes().to_vec()).unwrap(),
                )
            })
            .collect()
    }

    const SAMPLE: &[u8] = b"event: message_start\r\ndata: {\"a\":1}\r\n\r\n: keep-alive\r\n\r\nid: 9\ndata:x\ndata: y\n\nretry: 10\ndata:  two spaces\n\nevent: only-name\n\ndata: last";

    #[test]
    fn every_split_point_gives_the_same_events() {
        let whole = summary(&collect_all(SAMPLE, &[]));
        assert_eq!(
            whole,
            vec![
                (Some("message_start".into()), None, "{\"a\":1}".into()),
                (None, Some("9".into()), "x\ny".into()),
                (None, None, " two spaces".into()),
                (None, None, "last".into()),
            ]
        );
        for cut in 0..=SAMPLE.len() {
            assert_eq!(
                summary(&collect_all(SAMPLE, &[cut])),
                whole,
                "split at {cut}"
            );
        }
        for a in 0..SAMPLE.len() {
            let b = (a + 7).min(SAMPLE.len());
            assert_eq!(
                summary(&collect_all(SAMPLE, &[a, b])),
                whole,
                "split at {a},{b}"
            );
        }
    }

    #[test]
    fn byte_by_byte_feeding_works() {
        let cuts: Vec<usize> = (1..SAMPLE.len()).collect();
        assert_eq!(summary(&collect_all(SAMPLE, &cuts)).len(), 4);
    }

    #[test]
    fn canonical_frames_keep_raw_bytes_and_others_are_reencoded() {
        let input = b"event: a\ndata: {\"x\":1}\n\ndata:{\"y\":2}\n\ndata: z\r\n\r\ndata: w\r\n\n";
        let evs = collect_all(input, &[]);
        assert_eq!(&evs[0].to_frame()[..], b"event: a\ndata: {\"x\":1}\n\n");
        assert!(evs[0].raw_frame().is_some());
        assert!(evs[1].raw_frame().is_none());
        assert_eq!(&evs[1].to_frame()[..], b"data: {\"y\":2}\n\n");
        // Consistent CRLF (as Gemini sends) is kept byte for byte; mixed endings are normalised.
        assert_eq!(&evs[2].to_frame()[..], b"data: z\r\n\r\n");
        assert_eq!(&evs[3].to_frame()[..], b"data: w\n\n");
    }

    #[test]
    fn comments_never_survive_reencoding() {
        let evs = collect_all(b"data: a\n: sneaky\n\n", &[]);
        assert_eq!(&evs[0].to_frame()[..], b"data: a\n\n");
    }

    #[test]
    fn lone_cr_line_endings_work() {
        let evs = collect_all(b"data: a\r\rdata: b\r\r", &[]);
        assert_eq!(summary(&evs).len(), 2);
    }

    #[test]
    fn long_lines_beyond_64k_work_and_the_cap_is_enforced() {
        let big = "x".repeat(200_000);
        let input = format!("data: {big}\n\n");
        let evs = collect_all(input.as_bytes(), &[1000, 70_000]);
        assert_eq!(evs[0].data_body().known_len(), Some(200_000));
        let mut p = SseParser::with_max_event_bytes(1024);
        p.push(&[b'y'; 2048]);
        assert!(p.next_event().is_err());
    }

    #[test]
    fn a_long_line_in_many_chunks_is_read_whole() {
        let mut p = SseParser::new();
        p.push(b"data: ");
        for _ in 0..1000 {
            p.push(b"xy");
            assert!(p.next_event().unwrap().is_none());
        }
        p.push(b"\r");
        assert!(p.next_event().unwrap().is_none());
        p.push(b"\n\r\n");
        let ev = p.next_event().unwrap().unwrap();
        assert_eq!(ev.data_body().to_bytes().len(), 2000);
        p.push(b"data: z\n\n");
        assert_eq!(
            &p.next_event().unwrap().unwrap().data_body().to_bytes()[..],
            b"z"
        );
    }

    #[test]
    fn keep_alive_is_protocol_aware() {
        assert!(KeepAlive::for_format(Protocol::Gemini, KeepAlive::DEFAULT_INTERVAL).is_none());
        let an = KeepAlive::for_format(Protocol::Anthropic, KeepAlive::DEFAULT_INTERVAL).unwrap();
        assert!(an.frame.starts_with(b"event: ping"));
    }

    #[tokio::test]
    async fn decoder_flushes_the_final_frame_and_passes_errors() {
        let chunks: Vec<Result<Bytes, Error>> = vec![
            Ok(Bytes::from_static(b"data: 1\n\nda")),
            Ok(Bytes::from_static(b"ta: 2")),
        ];
        let evs: Vec<_> = SseDecoder::new(futures::stream::iter(chunks))
            .collect()
            .await;
        assert_eq!(evs.len(), 2);
        let chunks: Vec<Result<Bytes, Error>> = vec![
            Ok(Bytes::from_static(b"data: 1\n\n")),
            Err(Error::upstream("reset")),
        ];
        let evs: Vec<_> = SseDecoder::new(futures::stream::iter(chunks))
            .collect()
            .await;
        assert!(evs[0].is_ok() && evs[1].is_err());
    }
}
