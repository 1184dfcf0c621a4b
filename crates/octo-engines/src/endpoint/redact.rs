//! Upstream keys never leave the gateway inside an upstream's own error text.
//!
//! Providers echo the key they were presented in their error messages (OpenAI in part, others
//! whole), and the gateway passes upstream error bodies on — verbatim to a client of the same
//! protocol, re-shaped to another, into the request record, the access log and traces. A
//! [`Redactor`] holds one backend's configured keys and replaces every occurrence of one of them
//! with [`REDACTED`]: in a non-2xx body before it becomes an [`Error`](octo_core::Error), and in
//! the in-band error events of a stream (an upstream only knows the key it was sent, which is one
//! of its backend's).
//!
//! Only error text is searched (a 2xx answer's content is the model's, and it never saw the key):
//! the cost is nothing on the success path and one substring search per key on an error.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use memchr::memmem::Finder;
use octo_core::{Body, Error, Event};

/// What replaces a key in upstream error text.
pub const REDACTED: &str = "[redacted]";

/// Keys shorter than this are not searched for: replacing a two-letter "key" everywhere would
/// mangle every message, and such a key protects nothing anyway.
const MIN_KEY_LEN: usize = 4;

/// Replaces a backend's keys in upstream error text. Cheap to clone.
///
/// ```ignore
/// let r = Redactor::new(&["sk-secret-1".to_owned()]);
/// assert_eq!(&r.redact(Bytes::from_static(b"bad key sk-secret-1"))[..], b"bad key [redacted]");
/// ```
#[derive(Clone, Default)]
pub(crate) struct Redactor {
    keys: Arc<[Finder<'static>]>,
}

impl Redactor {
    /// A redactor of `keys` (longest first, so a key that contains another is replaced whole).
    pub(crate) fn new(keys: &[String]) -> Self {
        let mut keys: Vec<&String> = keys.iter().filter(|k| k.len() >= MIN_KEY_LEN).collect();
        keys.sort_by_key(|k| std::cmp::Reverse(k.len()));
        keys.dedup();
        Redactor {
            keys: keys
                .into_iter()
                .map(|k| Finder::new(k.as_bytes()).into_owned())
                .collect(),
        }
    }

    /// Whether there is nothing to redact (no keys).
    pub(crate) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// `text` with every key replaced; the same bytes (no copy) when no key occurs.
    pub(crate) fn redact(&self, text: Bytes) -> Bytes {
        if !self.keys.iter().any(|k| k.find(&text).is_some()) {
            return text;
        }
        let mut text = BytesMut::from(text);
        for key in self.keys.iter() {
            let needle = key.needle().len();
            let mut out = BytesMut::with_capacity(text.len());
            let mut rest = &text[..];
            while let Some(at) = key.find(rest) {
                out.extend_from_slice(&rest[..at]);
                out.extend_from_slice(REDACTED.as_bytes());
                rest = &rest[at + needle..];
            }
            out.extend_from_slice(rest);
            text = out;
        }
        text.freeze()
    }

    /// An event with the keys removed from its data when it is an in-band error; other events
    /// pass untouched (and keep their raw frame).
    pub(crate) fn event(&self, mut event: Event) -> Event {
        if !is_error_event(&event) {
            return event;
        }
        let data = event.data_body().to_bytes();
        let redacted = self.redact(data.clone());
        if redacted.as_ptr() != data.as_ptr() || redacted.len() != data.len() {
            *event.data_mut() = Body::from_bytes(redacted);
        }
        event
    }

    /// A stream item with [`Redactor::event`] applied (the decoder's own errors are the gateway's
    /// text and pass unchanged).
    pub(crate) fn item(&self, item: Result<Event, Error>) -> Result<Event, Error> {
        item.map(|event| self.event(event))
    }
}

/// An in-band error: an `error` or `response.failed` event (Anthropic, Responses), or data whose
/// JSON starts with an `error` member (OpenAI Chat, Gemini). Errs on the side of searching.
pub(crate) fn is_error_event(event: &Event) -> bool {
    match event.name() {
        Some("error" | "response.failed") => true,
        Some(_) => false,
        None => {
            // Built once: a searcher per event cost more than the search.
            static ERROR: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
                std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"error\""));
            let data = event.data_body().to_bytes();
            ERROR.find(&data).is_some()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redactor(keys: &[&str]) -> Redactor {
        Redactor::new(&keys.iter().map(|k| (*k).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn every_occurrence_of_every_key_is_replaced() {
        let r = redactor(&["sk-one-secret", "sk-two-secret"]);
        let out = r.redact(Bytes::from_static(
            b"Incorrect API key provided: sk-one-secret. sk-two-secret and sk-one-secret again",
        ));
        assert_eq!(
            &out[..],
            b"Incorrect API key provided: [redacted]. [redacted] and [redacted] again"
        );
    }

    #[test]
    fn text_without_a_key_is_not_copied() {
        let r = redactor(&["sk-one-secret"]);
        let text = Bytes::from_static(b"{\"error\":{\"message\":\"slow down\"}}");
        let out = r.redact(text.clone());
        assert_eq!(out.as_ptr(), text.as_ptr());
    }

    #[test]
    fn a_key_containing_another_is_replaced_whole_and_short_keys_are_ignored() {
        let r = redactor(&["abcd", "abcdefgh", "x"]);
        assert_eq!(
            &r.redact(Bytes::from_static(b"abcdefgh abcd x"))[..],
            b"[redacted] [redacted] x"
        );
        assert!(Redactor::new(&[]).is_empty());
        assert!(redactor(&["ab"]).is_empty());
    }

    #[test]
    fn only_error_events_are_searched() {
        let r = redactor(&["sk-one-secret"]);
        let content = Event::data(Bytes::from_static(
            b"{\"choices\":[{\"delta\":{\"content\":\"sk-one-secret\"}}]}",
        ));
        assert_eq!(
            r.event(content.clone()).data_body().to_bytes(),
            content.data_body().to_bytes()
        );
        let chat = Event::data(Bytes::from_static(
            b"{\"error\":{\"message\":\"bad key sk-one-secret\"}}",
        ));
        assert_eq!(
            r.event(chat).data_body().to_bytes(),
            Bytes::from_static(b"{\"error\":{\"message\":\"bad key [redacted]\"}}")
        );
        let anthropic = Event::named(
            "error",
            Bytes::from_static(b"{\"type\":\"error\",\"error\":{\"message\":\"sk-one-secret\"}}"),
        );
        let out = r.event(anthropic);
        assert!(!out.to_frame().windows(13).any(|w| w == b"sk-one-secret"));
        assert_eq!(out.name(), Some("error"));
    }
}
