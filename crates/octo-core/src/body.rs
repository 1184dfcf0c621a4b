//! The lazily parsed JSON body shared by requests, responses and stream events.
//!
//! A gateway mostly forwards bytes. [`Body`] keeps the bytes it was given and parses them into a
//! [`serde_json::Value`] only when an engine asks ([`Body::json`]); the parse is cached. An engine that
//! changes the document ([`Body::json_mut`], [`Body::set_json`]) marks the body dirty, and the bytes
//! are re-serialised once, when next asked for. An untouched body therefore leaves the gateway as the
//! exact bytes that entered it.
//!
//! Two cheap operations avoid building a document tree at all:
//! - [`Body::peek`] reads the top-level `model` and `stream` scalars with a structure-only scan that
//!   jumps from quote to quote over every other value (a 1 MiB `messages` array is neither
//!   validated nor allocated; see the `body::scan` module docs for what is checked);
//! - [`Body::set_top_level`] replaces one top-level value by splicing bytes, so renaming the model keeps
//!   every other byte of the request identical.
//!
//! [`full_parse_count`] counts full parses process-wide; tests use it to prove a passthrough never
//! parsed the body.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::{Bytes, BytesMut};
use serde_json::Value;

use crate::error::Error;

mod scan;

static FULL_PARSES: AtomicU64 = AtomicU64::new(0);

/// How many times any [`Body`] in this process has been parsed into a document tree.
///
/// A diagnostic for tests and benchmarks; it never decreases.
pub fn full_parse_count() -> u64 {
    FULL_PARSES.load(Ordering::Relaxed)
}

/// A JSON body that is parsed only on demand and re-serialised only when changed.
///
/// Cloning is cheap: the bytes are reference counted and a cached parse is shared until one clone
/// mutates it.
///
/// ```
/// use octo_core::Body;
///
/// let mut body = Body::from_static(br#"{"model":"a","stream":true,"messages":[]}"#);
/// let peek = body.peek().unwrap();
/// assert_eq!(peek.model.as_deref(), Some("a"));
/// assert!(peek.stream);
/// assert!(!body.is_parsed());
///
/// body.set_top_level("model", &"b".into()).unwrap();
/// assert_eq!(&body.bytes()[..], br#"{"model":"b","stream":true,"messages":[]}"#);
///
/// body.json_mut().unwrap()["stream"] = false.into();
/// assert!(body.is_dirty());
/// assert_eq!(&body.bytes()[..], br#"{"messages":[],"model":"b","stream":false}"#);
/// ```
#[derive(Clone, Default)]
pub struct Body {
    /// The wire bytes; `None` while the document has changed since they were produced.
    bytes: Option<Bytes>,
    /// The cached parse, if any; authoritative when `bytes` is `None`.
    value: Option<Arc<Value>>,
    /// The routing scalars of `bytes`, once [`Body::peek`] has scanned them (each scan of a large
    /// body costs time proportional to its size, and several engines peek).
    peeked: OnceLock<Peek>,
}

/// The top-level routing scalars of a request body, read without building a tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peek {
    /// The `model` field, if present.
    pub model: Option<String>,
    /// The `stream` field; `false` when absent or `null`.
    pub stream: bool,
}

impl Body {
    /// An empty body (zero bytes; not valid JSON).
    pub fn empty() -> Self {
        Self::from_bytes(Bytes::new())
    }

    /// A body holding `bytes` as received.
    pub fn from_bytes(bytes: impl Into<Bytes>) -> Self {
        Body {
            bytes: Some(bytes.into()),
            value: None,
            peeked: OnceLock::new(),
        }
    }

    /// A body over static bytes.
    pub fn from_static(bytes: &'static [u8]) -> Self {
        Self::from_bytes(Bytes::from_static(bytes))
    }

    /// A body built from a document; serialised when its bytes are first needed.
    pub fn from_json(value: Value) -> Self {
        Body {
            bytes: None,
            value: Some(Arc::new(value)),
            peeked: OnceLock::new(),
        }
    }

    /// Whether a parsed document is cached (or the body was built from one).
    pub fn is_parsed(&self) -> bool {
        self.value.is_some()
    }

    /// Whether the document changed since the bytes were produced.
    pub fn is_dirty(&self) -> bool {
        self.bytes.is_none()
    }

    /// The number of wire bytes, if known without serialising.
    pub fn known_len(&self) -> Option<usize> {
        self.bytes.as_ref().map(Bytes::len)
    }

    /// The wire bytes, serialising a changed document once and caching the result.
    pub fn bytes(&mut self) -> Bytes {
        if let Some(b) = &self.bytes {
            return b.clone();
        }
        let b = self.serialize();
        self.bytes = Some(b.clone());
        b
    }

    /// The wire bytes without caching a serialisation (for `&self` callers).
    pub fn to_bytes(&self) -> Bytes {
        match &self.bytes {
            Some(b) => b.clone(),
            None => self.serialize(),
        }
    }

    /// Consumes the body into its wire bytes.
    pub fn into_bytes(mut self) -> Bytes {
        self.bytes()
    }

    fn serialize(&self) -> Bytes {
        let value = self.value.as_deref().unwrap_or(&Value::Null);
        // Serialising a `Value` into a Vec cannot fail: keys are strings and writes are infallible.
        Bytes::from(serde_json::to_vec(value).unwrap_or_default())
    }

    /// The parsed document; parses (once) on first use.
    ///
    /// # Errors
    /// A 400 [`Error`] that names the line and column when the bytes are not valid JSON.
    pub fn json(&mut self) -> Result<&Value, Error> {
        self.ensure_parsed()?;
        Ok(self.value.as_deref().unwrap_or(&Value::Null))
    }

    /// The parsed document for editing; the body becomes dirty.
    ///
    /// # Errors
    /// As [`Body::json`].
    pub fn json_mut(&mut self) -> Result<&mut Value, Error> {
        self.ensure_parsed()?;
        self.bytes = None;
        self.peeked = OnceLock::new();
        let arc = self.value.get_or_insert_with(|| Arc::new(Value::Null));
        Ok(Arc::make_mut(arc))
    }

    /// Replaces the document.
    pub fn set_json(&mut self, value: Value) {
        self.bytes = None;
        self.peeked = OnceLock::new();
        self.value = Some(Arc::new(value));
    }

    /// Replaces the bytes, dropping any cached parse.
    pub fn set_bytes(&mut self, bytes: impl Into<Bytes>) {
        self.bytes = Some(bytes.into());
        self.value = None;
        self.peeked = OnceLock::new();
    }

    fn ensure_parsed(&mut self) -> Result<(), Error> {
        if self.value.is_some() {
            return Ok(());
        }
        let bytes = self.bytes.as_deref().unwrap_or_default();
        FULL_PARSES.fetch_add(1, Ordering::Relaxed);
        let value: Value = serde_json::from_slice(bytes).map_err(|e| invalid_json(&e))?;
        self.value = Some(Arc::new(value));
        Ok(())
    }

    /// Reads the top-level `model` and `stream` without building a document tree.
    ///
    /// A structure-only scan (the private `scan` module): it checks that the body is one JSON object with
    /// terminated strings and balanced brackets, and reads the two values exactly; everything
    /// else is skipped unvalidated (the upstream validates what it is forwarded). A duplicate
    /// top-level `model` or `stream` is refused. The result is cached: later peeks (and clones
    /// of this body) do not scan again.
    ///
    /// # Errors
    /// A 400 [`Error`] when the body is not a JSON object, is truncated or malformed where the
    /// scan looks, or `model`/`stream` have the wrong type.
    pub fn peek(&self) -> Result<Peek, Error> {
        self.peek_ref().cloned()
    }

    /// As [`Body::peek`], borrowing the cached answer instead of copying it (no allocation once
    /// the body has been peeked).
    ///
    /// # Errors
    /// As [`Body::peek`].
    pub fn peek_ref(&self) -> Result<&Peek, Error> {
        if let Some(p) = self.peeked.get() {
            return Ok(p);
        }
        // A cached parse is authoritative (and only changes through `json_mut`/`set_json`, which
        // drop this cache, or `set_top_level`, which keeps it right).
        let peek = match &self.value {
            Some(v) => peek_value(v)?,
            None => {
                let bytes = self.bytes.as_deref().unwrap_or_default();
                let s = scan::scan(bytes).map_err(|e| scan_error(bytes, e))?;
                Peek {
                    model: s.model.map(Cow::into_owned),
                    stream: s.stream.unwrap_or(false),
                }
            }
        };
        Ok(self.peeked.get_or_init(|| peek))
    }

    /// The raw JSON text of one top-level value (`None` when the key is absent), found with the
    /// structure-only scan: the rest of the body is neither parsed nor copied.
    ///
    /// ```
    /// use octo_core::Body;
    /// let b = Body::from_static(br#"{"model":"m","stream_options":{"x":1},"messages":[]}"#);
    /// assert_eq!(b.top_level_raw("stream_options").unwrap().as_deref(), Some(&br#"{"x":1}"#[..]));
    /// assert_eq!(b.top_level_raw("absent").unwrap(), None);
    /// ```
    ///
    /// # Errors
    /// A 400 [`Error`] when the body is not a JSON object.
    pub fn top_level_raw(&self, key: &str) -> Result<Option<Bytes>, Error> {
        match &self.bytes {
            Some(bytes) if !self.is_dirty() => {
                Ok(top_level_span(bytes, key)?.map(|r| bytes.slice(r)))
            }
            _ => {
                let v = self.value.as_ref().and_then(|v| v.get(key).cloned());
                Ok(v.map(|v| Bytes::from(serde_json::to_vec(&v).unwrap_or_default())))
            }
        }
    }

    /// Sets one top-level key, splicing bytes when the body is clean so that every other byte is kept.
    ///
    /// A key that is absent is inserted first in the object.
    ///
    /// # Errors
    /// A 400 [`Error`] when the body is not a JSON object.
    pub fn set_top_level(&mut self, key: &str, value: &Value) -> Result<(), Error> {
        let Some(bytes) = self.bytes.clone() else {
            return self.set_in_tree(key, value);
        };
        let span = top_level_span(&bytes, key)?;
        let encoded = serde_json::to_vec(value).unwrap_or_default();
        let mut out = BytesMut::with_capacity(bytes.len() + encoded.len() + key.len() + 4);
        match span {
            Some(range) => {
                out.extend_from_slice(&bytes[..range.start]);
                out.extend_from_slice(&encoded);
                out.extend_from_slice(&bytes[range.end..]);
            }
            None => {
                let open = bytes.iter().position(|&b| b == b'{').unwrap_or(0);
                let rest = &bytes[open + 1..];
                let empty = rest.iter().all(|b| b.is_ascii_whitespace() || *b == b'}');
                out.extend_from_slice(&bytes[..=open]);
                out.extend_from_slice(&serde_json::to_vec(key).unwrap_or_default());
                out.extend_from_slice(b":");
                out.extend_from_slice(&encoded);
                if !empty {
                    out.extend_from_slice(b",");
                }
                out.extend_from_slice(rest);
            }
        }
        if let Some(arc) = self.value.as_mut() {
            if let Some(obj) = Arc::make_mut(arc).as_object_mut() {
                obj.insert(key.to_owned(), value.clone());
            }
        }
        self.bytes = Some(out.freeze());
        // Keep a cached peek valid without scanning the new bytes again.
        let peeked = std::mem::take(&mut self.peeked).into_inner();
        if let Some(mut p) = peeked {
            let still_valid = match (key, value) {
                ("model", Value::String(m)) => {
                    p.model = Some(m.clone());
                    true
                }
                ("model", Value::Null) => {
                    p.model = None;
                    true
                }
                ("stream", Value::Bool(b)) => {
                    p.stream = *b;
                    true
                }
                ("stream", Value::Null) => {
                    p.stream = false;
                    true
                }
                // A wrongly typed routing scalar: let the next peek report it.
                ("model" | "stream", _) => false,
                _ => true,
            };
            if still_valid {
                let _ = self.peeked.set(p);
            }
        }
        Ok(())
    }

    fn set_in_tree(&mut self, key: &str, value: &Value) -> Result<(), Error> {
        match self.json_mut()?.as_object_mut() {
            Some(obj) => {
                obj.insert(key.to_owned(), value.clone());
                Ok(())
            }
            None => {
                Err(Error::bad_request("request body must be a JSON object")
                    .with_code("invalid_json"))
            }
        }
    }
}

/// The error for a failed [`scan`], worded like serde_json's (line and column included).
fn scan_error(bytes: &[u8], e: scan::ScanError) -> Error {
    let (what, detail, at) = match e {
        scan::ScanError::Syntax(detail, at) => ("request body is not valid JSON", detail, at),
        scan::ScanError::Shape(detail, at) => ("request body has the wrong shape", detail, at),
        // The scan stops at a wrongly typed first copy; a later duplicate is the clearer error.
        scan::ScanError::ModelType | scan::ScanError::StreamType => {
            return match scan::duplicate_routing_key(bytes) {
                Err(other) => scan_error(bytes, other),
                Ok(()) if matches!(e, scan::ScanError::ModelType) => model_type_error(),
                Ok(()) => stream_type_error(),
            };
        }
    };
    let before = &bytes[..at.min(bytes.len())];
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    let column = before.len()
        - before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
    Error::bad_request(format!("{what}: {detail} at line {line} column {column}"))
        .with_code("invalid_json")
}

fn model_type_error() -> Error {
    Error::bad_request("`model` must be a string").with_param("model")
}

fn stream_type_error() -> Error {
    Error::bad_request("`stream` must be a boolean").with_param("stream")
}

fn peek_value(v: &Value) -> Result<Peek, Error> {
    let obj = v
        .as_object()
        .ok_or_else(|| Error::bad_request("request body must be a JSON object"))?;
    let model = match obj.get("model") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(model_type_error()),
    };
    let stream = match obj.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(stream_type_error()),
    };
    Ok(Peek { model, stream })
}

fn invalid_json(e: &serde_json::Error) -> Error {
    let what = match e.classify() {
        serde_json::error::Category::Data => "request body has the wrong shape",
        _ => "request body is not valid JSON",
    };
    Error::bad_request(format!("{what}: {e}")).with_code("invalid_json")
}

/// The byte range of the value of top-level `key` in the JSON object `bytes` (last one wins), by
/// the same structure-only scan as [`Body::peek`].
fn top_level_span(bytes: &[u8], key: &str) -> Result<Option<Range<usize>>, Error> {
    scan::value_span(bytes, key).map_err(|e| scan_error(bytes, e))
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Body");
        match &self.bytes {
            Some(b) => d.field("len", &b.len()),
            None => d.field("dirty", &true),
        };
        d.field("parsed", &self.value.is_some()).finish()
    }
}

impl From<Bytes> for Body {
    fn from(b: Bytes) -> Self {
        Body::from_bytes(b)
    }
}

impl From<Value> for Body {
    fn from(v: Value) -> Self {
        Body::from_json(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
    use serde_json::json;
    use serde_json::value::RawValue;

    #[test]
    fn peek_does_not_parse_and_reads_scalars() {
        let body = Body::from_static(
            br#"{"messages":[{"role":"user","content":"hi"}],"stream":true,"model":"m1"}"#,
        );
        let p = body.peek().unwrap();
        assert_eq!(
            p,
            Peek {
                model: Some("m1".into()),
                stream: true
            }
        );
        assert!(!body.is_parsed());
    }

    #[test]
    fn peek_handles_escapes_and_nulls() {
        let body = Body::from_static(br#"{"model":"a\"b","stream":null}"#);
        assert_eq!(body.peek().unwrap().model.as_deref(), Some("a\"b"));
        assert!(!body.peek().unwrap().stream);
    }

    #[test]
    fn malformed_json_is_a_400_naming_the_position() {
        let body = Body::from_static(br#"{"model": "x", "messages": [}"#);
        let e = body.peek().unwrap_err();
        assert_eq!(e.status().as_u16(), 400);
        assert!(e.message().contains("not valid JSON"), "{}", e.message());
        assert!(e.message().contains("column"), "{}", e.message());
        let e = Body::from_static(b"[1]").peek().unwrap_err();
        assert!(e.message().contains("wrong shape"), "{}", e.message());
        let e = Body::from_static(br#"{"stream":"yes"}"#)
            .peek()
            .unwrap_err();
        assert_eq!(e.status().as_u16(), 400);
    }

    #[test]
    fn peek_is_cached_across_clones_and_kept_by_splices() {
        let body = Body::from_static(br#"{"model":"a","stream":true,"x":[1]}"#);
        assert_eq!(body.peek().unwrap().model.as_deref(), Some("a"));
        let mut copy = body.clone();
        assert!(copy.peeked.get().is_some());
        copy.set_top_level("model", &json!("b")).unwrap();
        assert_eq!(
            copy.peeked.get().cloned(),
            Some(Peek {
                model: Some("b".into()),
                stream: true
            })
        );
        copy.set_top_level("stream", &json!(false)).unwrap();
        copy.set_top_level("x", &json!(2)).unwrap();
        let cached = copy.peek().unwrap();
        // The cached answer is the one a fresh scan gives.
        assert_eq!(cached, Body::from_bytes(copy.bytes()).peek().unwrap());
        assert_eq!(cached.model.as_deref(), Some("b"));
        assert!(!cached.stream);
        // A wrongly typed value drops the cache, so the next peek reports it.
        copy.set_top_level("stream", &json!("yes")).unwrap();
        assert!(copy.peek().is_err());
        // New bytes drop the cache.
        copy.set_bytes(Bytes::from_static(br#"{"model":"c"}"#));
        assert_eq!(copy.peek().unwrap().model.as_deref(), Some("c"));
        // The original is untouched.
        assert_eq!(body.peek().unwrap().model.as_deref(), Some("a"));
    }

    #[test]
    fn set_top_level_splices_bytes() {
        let mut body = Body::from_static(b"{ \"model\" : \"a\" ,\n \"x\": [1,2 ] }");
        body.set_top_level("model", &json!("upstream-b")).unwrap();
        assert_eq!(
            &body.bytes()[..],
            b"{ \"model\" : \"upstream-b\" ,\n \"x\": [1,2 ] }"
        );
        assert!(!body.is_parsed());
    }

    #[test]
    fn set_top_level_inserts_absent_keys() {
        let mut body = Body::from_static(br#"{"x":1}"#);
        body.set_top_level("model", &json!("m")).unwrap();
        assert_eq!(&body.bytes()[..], br#"{"model":"m","x":1}"#);
        let mut empty = Body::from_static(b"{ }");
        empty.set_top_level("model", &json!("m")).unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&empty.bytes()).unwrap(),
            json!({"model":"m"})
        );
    }

    #[test]
    fn set_top_level_keeps_cached_parse_coherent() {
        let mut body = Body::from_static(br#"{"model":"a"}"#);
        assert_eq!(body.json().unwrap()["model"], "a");
        body.set_top_level("model", &json!("b")).unwrap();
        assert_eq!(body.json().unwrap()["model"], "b");
        assert!(!body.is_dirty());
    }

    #[test]
    fn untouched_body_keeps_bytes_and_dirty_body_reserialises_once() {
        let raw: &'static [u8] = b"{\"b\": 1,   \"a\": 2}";
        let mut body = Body::from_static(raw);
        assert_eq!(body.json().unwrap()["a"], 2);
        assert_eq!(&body.bytes()[..], raw);
        body.json_mut().unwrap()["a"] = json!(3);
        assert!(body.is_dirty());
        let first = body.bytes();
        assert!(!body.is_dirty());
        assert_eq!(first, body.bytes());
    }

    #[test]
    fn clones_share_until_mutated() {
        let mut a = Body::from_static(br#"{"k":1}"#);
        a.json().unwrap();
        let mut b = a.clone();
        b.json_mut().unwrap()["k"] = json!(2);
        assert_eq!(a.json().unwrap()["k"], 1);
        assert_eq!(b.json().unwrap()["k"], 2);
    }

    /// The serde scan `set_top_level` used before the structure-only one: the reference for spans.
    fn serde_top_level_span(bytes: &[u8], key: &str) -> Result<Option<Range<usize>>, Error> {
        struct KeyIs<'k>(&'k str);
        impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
            type Value = bool;
            fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
                d.deserialize_str(self)
            }
        }
        impl Visitor<'_> for KeyIs<'_> {
            type Value = bool;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
                Ok(v == self.0)
            }
        }
        struct FindValue<'k>(&'k str);
        impl<'de> Visitor<'de> for FindValue<'_> {
            type Value = Option<&'de RawValue>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut found = None;
                while let Some(is_key) = map.next_key_seed(KeyIs(self.0))? {
                    if is_key {
                        found = Some(map.next_value::<&'de RawValue>()?);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(found)
            }
        }
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let found = de::Deserializer::deserialize_map(&mut de, FindValue(key))
            .and_then(|found| de.end().map(|()| found))
            .map_err(|e| invalid_json(&e))?;
        Ok(found.map(|raw| {
            let start = raw.get().as_ptr() as usize - bytes.as_ptr() as usize;
            start..start + raw.get().len()
        }))
    }

    /// The serde scan `peek` used before the structure-only scan: a borrowed derive that
    /// validates every byte. The reference the property tests compare against.
    fn serde_peek(bytes: &[u8]) -> Result<Peek, serde_json::Error> {
        #[derive(Deserialize)]
        struct Scalars<'a> {
            #[serde(borrow, default)]
            model: Option<Cow<'a, str>>,
            #[serde(default)]
            stream: Option<bool>,
        }
        let s: Scalars<'_> = serde_json::from_slice(bytes)?;
        Ok(Peek {
            model: s.model.map(Cow::into_owned),
            stream: s.stream.unwrap_or(false),
        })
    }

    /// Random JSON bodies for the property tests, as text: proptest strategies (shrinking to the
    /// smallest failing body) over the shapes the scan must get right — routing keys with and
    /// without the right types, nesting, escapes of every kind, whitespace between tokens.
    mod arb {
        use proptest::collection::vec;
        use proptest::prelude::*;
        use proptest::sample::select;

        /// Whitespace between tokens: mostly none (shrinks to none).
        pub(super) fn ws() -> impl Strategy<Value = &'static str> + Clone {
            const WS: [&str; 12] = [
                "", "", "", "", "", "", " ", "\n", "\t", "\r", " \n", "\r\n\t",
            ];
            select(&WS[..])
        }

        /// Text made of the pieces that trip scanners: routing key names, quotes, backslashes,
        /// brackets, multi-byte characters.
        pub(super) fn text() -> impl Strategy<Value = String> + Clone {
            const PIECES: [&str; 12] = [
                "model", "stream", "a", "\"", "\\", "}", "]", "{", "é", "😀", "\n", " x ",
            ];
            vec(select(&PIECES[..]), 0..5).prop_map(|pieces| pieces.concat())
        }

        /// A JSON string literal for `s`. Characters that must be escaped are; so is each other
        /// one whose four bits of `escapes` (cycled) are 14 or 15, one in eight: as `\uXXXX` (a
        /// surrogate pair beyond the BMP) or, for 14, a short form where there is one.
        pub(super) fn literal(s: &str, escapes: u64) -> String {
            let mut out = String::from("\"");
            for (i, c) in s.chars().enumerate() {
                let nibble = (escapes >> ((i % 16) * 4)) & 0xf;
                let must = c == '"' || c == '\\' || (c as u32) < 0x20;
                if !must && nibble < 14 {
                    out.push(c);
                    continue;
                }
                let short = nibble == 14;
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' if short => out.push_str("\\n"),
                    '/' if short => out.push_str("\\/"),
                    _ => {
                        let mut units = [0u16; 2];
                        for u in c.encode_utf16(&mut units) {
                            out.push_str(&format!("\\u{u:04x}"));
                        }
                    }
                }
            }
            out.push('"');
            out
        }

        /// A string literal of random [`text`], escaped at random.
        pub(super) fn string() -> impl Strategy<Value = String> + Clone {
            (text(), any::<u64>()).prop_map(|(t, e)| literal(&t, e))
        }

        /// Any JSON value, nested up to four levels: like the generator's own depth, the
        /// strategy is built once per test, so each case only draws from it.
        pub(super) fn value() -> BoxedStrategy<String> {
            const SCALARS: [&str; 7] = [
                "true",
                "false",
                "null",
                "0",
                "-1.5e3",
                "12345678901234567890",
                "0.25",
            ];
            let leaf = prop_oneof![
                2 => select(&SCALARS[..]).prop_map(String::from),
                3 => string(),
            ]
            .boxed();
            let mut value = leaf.clone();
            for _ in 0..4 {
                let array = vec((ws(), value.clone(), ws()), 0..4).prop_map(|items| {
                    let items: Vec<String> = items
                        .into_iter()
                        .map(|(a, v, b)| format!("{a}{v}{b}"))
                        .collect();
                    format!("[{}]", items.join(","))
                });
                value = prop_oneof![
                    5 => leaf.clone(),
                    1 => array,
                    1 => object_of(value),
                ]
                .boxed();
            }
            value
        }

        /// An object whose members are values from `value`; the routing keys `model` and
        /// `stream` come often, half the time with the type the scan reads.
        pub(super) fn object_of(value: BoxedStrategy<String>) -> impl Strategy<Value = String> {
            let key = |k: &'static str| Just(k.to_owned());
            let boolean = select(&["true", "false"][..]).prop_map(String::from);
            let member = prop_oneof![
                1 => (key("model"), prop_oneof![string(), value.clone()]),
                1 => (key("stream"), prop_oneof![boolean, value.clone()]),
                1 => (key("messages"), value.clone()),
                3 => (text(), value),
            ];
            let member = (ws(), member, any::<u64>(), ws(), ws(), ws())
                .prop_map(|(a, (k, v), e, b, c, d)| format!("{a}{}{b}:{c}{v}{d}", literal(&k, e)));
            vec(member, 0..5).prop_map(|members| format!("{{{}}}", members.join(",")))
        }

        /// A top-level object, with whitespace around it.
        pub(super) fn object() -> impl Strategy<Value = String> {
            (ws(), object_of(value()), ws()).prop_map(|(a, o, b)| format!("{a}{o}{b}"))
        }
    }

    /// Property-test settings: a fixed seed, so every run checks the same bodies (set
    /// `PROPTEST_RNG_SEED` and drop the fixed seed locally to explore others), and no regression
    /// files written into the source tree.
    fn proptest_config(cases: u32) -> proptest::test_runner::Config {
        proptest::test_runner::Config {
            cases,
            rng_seed: proptest::test_runner::RngSeed::Fixed(0x9e37_79b9_7f4a_7c15),
            failure_persistence: None,
            ..proptest::test_runner::Config::default()
        }
    }

    /// What the structure-only scan must agree with on a well-formed body: serde's scan when that
    /// succeeds; an error when serde refuses it (a wrong type or a duplicate routing key).
    fn check_agrees(bytes: &[u8]) {
        let ours = Body::from_bytes(Bytes::copy_from_slice(bytes)).peek();
        match serde_peek(bytes) {
            Ok(p) => assert_eq!(ours.ok(), Some(p), "{}", String::from_utf8_lossy(bytes)),
            Err(e) => assert!(
                ours.is_err(),
                "serde refused ({e}) but the scan accepted {}",
                String::from_utf8_lossy(bytes)
            ),
        }
    }

    /// Every strict prefix of an object (short of trailing whitespace) is refused as malformed.
    fn check_prefixes_fail(bytes: &[u8]) {
        let end = bytes.len()
            - bytes
                .iter()
                .rev()
                .take_while(|b| b.is_ascii_whitespace())
                .count();
        for cut in 0..end {
            let e = Body::from_bytes(Bytes::copy_from_slice(&bytes[..cut]))
                .peek()
                .expect_err(&String::from_utf8_lossy(&bytes[..cut]));
            assert_eq!(e.status().as_u16(), 400);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest_config(3000))]

        #[test]
        fn scan_agrees_with_serde_on_random_objects(doc in arb::object()) {
            check_agrees(doc.as_bytes());
            check_prefixes_fail(doc.as_bytes());
            for key in ["model", "stream", "messages", "\"", "é"] {
                let ours = top_level_span(doc.as_bytes(), key).unwrap();
                let serde = serde_top_level_span(doc.as_bytes(), key).unwrap();
                proptest::prop_assert_eq!(ours, serde, "{}: {}", key, doc);
            }
        }
    }

    /// Bytes a mutation inserts or overwrites: JSON's structural characters and the starts of
    /// its literals.
    const MUTATION_BYTES: &[u8] = b"{}[]\",:\\ ntf0u";

    /// One edit of a body: remove (`kind` 0) or overwrite (1) the byte at `at`, or insert `byte`
    /// there (2, and 0 or 1 at the end of the body).
    fn mutation() -> impl proptest::strategy::Strategy<Value = (u8, proptest::sample::Index, u8)> {
        use proptest::prelude::*;
        (
            0..3u8,
            any::<proptest::sample::Index>(),
            proptest::sample::select(MUTATION_BYTES),
        )
    }

    fn mutate(bytes: &mut Vec<u8>, (kind, at, byte): (u8, proptest::sample::Index, u8)) {
        let at = at.index(bytes.len() + 1);
        match kind {
            0 if at < bytes.len() => {
                bytes.remove(at);
            }
            1 if at < bytes.len() => bytes[at] = byte,
            _ => bytes.insert(at, byte),
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest_config(20_000))]

        #[test]
        fn scan_agrees_with_serde_wherever_both_accept_a_mutated_body(
            doc in arb::object_of(arb::value()),
            mutations in proptest::collection::vec(mutation(), 1..=2),
        ) {
            let mut bytes = doc.into_bytes();
            for m in mutations {
                mutate(&mut bytes, m);
            }
            let ours = Body::from_bytes(Bytes::copy_from_slice(&bytes)).peek();
            // Whatever serde's scan accepts, the structure-only scan accepts alike; except an
            // array, which the derive read as a tuple of (model, stream) and the scan refuses.
            let array = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
            if let (Ok(p), false) = (serde_peek(&bytes), array) {
                proptest::prop_assert_eq!(
                    ours.as_ref().ok(),
                    Some(&p),
                    "{}",
                    String::from_utf8_lossy(&bytes)
                );
            }
            // Whatever the scan accepts and a full parse reads, both read the same way.
            if let (Ok(p), Ok(v)) = (&ours, serde_json::from_slice::<Value>(&bytes)) {
                let full = peek_value(&v).ok();
                proptest::prop_assert_eq!(full.as_ref(), Some(p));
            }
            if let Err(e) = &ours {
                proptest::prop_assert_eq!(e.status().as_u16(), 400);
            }
        }
    }

    #[test]
    fn scan_agrees_with_serde_on_the_golden_bodies() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/golden");
        let mut seen = 0;
        for dir in std::fs::read_dir(root).unwrap() {
            let Ok(files) = std::fs::read_dir(dir.unwrap().path()) else {
                continue;
            };
            for file in files {
                let path = file.unwrap().path();
                if path.extension().is_some_and(|e| e == "json") {
                    let bytes = std::fs::read(&path).unwrap();
                    check_agrees(&bytes);
                    if bytes.len() < 4096 {
                        check_prefixes_fail(&bytes);
                    }
                    seen += 1;
                }
            }
        }
        assert!(seen > 20, "only {seen} golden bodies found");
    }

    #[test]
    fn scan_errors_keep_the_invalid_json_shape() {
        let truncated: &'static [u8] = b"{\"model\": \"x\",\n \"messages\": [\"abc";
        let e = Body::from_static(truncated).peek().unwrap_err();
        assert_eq!(
            e.message(),
            "request body is not valid JSON: EOF while parsing a string at line 2 column 18"
        );
        // The position is where serde_json puts it.
        let serde = serde_json::from_slice::<Value>(truncated).unwrap_err();
        assert!(e.message().ends_with(&serde.to_string()), "{serde}");
        let e = Body::from_static(br#"{"model":"a","model":"b"}"#)
            .peek()
            .unwrap_err();
        assert!(
            e.message().contains("duplicate field `model`"),
            "{}",
            e.message()
        );
        let e = Body::from_static(br#"{"model":7}"#).peek().unwrap_err();
        assert_eq!(e.message(), "`model` must be a string");
        // The duplicate is named even when its first copy has the wrong type.
        let e = Body::from_static(br#"{"model":7,"model":"m"}"#)
            .peek()
            .unwrap_err();
        assert_eq!(
            e.message(),
            "request body has the wrong shape: duplicate field `model` at line 1 column 11"
        );
        let e = Body::from_static(b"").peek().unwrap_err();
        assert!(e.message().contains("not valid JSON"), "{}", e.message());
    }

    #[test]
    fn parse_counter_counts_full_parses_only() {
        let before = full_parse_count();
        let body = Body::from_static(br#"{"model":"x"}"#);
        body.peek().unwrap();
        let mut b2 = body.clone();
        b2.set_top_level("model", &json!("y")).unwrap();
        // Other tests may parse concurrently, so only check that our own parse is counted.
        b2.json().unwrap();
        assert!(full_parse_count() > before);
    }
}
