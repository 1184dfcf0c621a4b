//! Tiny writers for the byte frames of the streams: SSE events (`event:` + `data:` or data-only,
//! LF or CRLF separated) and JSON string escaping for hand-assembled hot-path JSON.

use bytes::Bytes;
use serde_json::Value;

/// The OpenAI chat terminator.
pub(crate) const DONE: &[u8] = b"data: [DONE]\n\n";

/// `event: <name>\ndata: <json>\n\n`.
pub(crate) fn event(name: &str, data: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(name.len() + data.len() + 16);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\n\n");
    out.into()
}

/// `data: <json>\n\n`.
pub(crate) fn data(data: &[u8]) -> Bytes {
    framed(b"data: ", data, b"\n\n")
}

/// `data: <json>\r\n\r\n`, the framing of Gemini's `alt=sse`.
pub(crate) fn data_crlf(data: &[u8]) -> Bytes {
    framed(b"data: ", data, b"\r\n\r\n")
}

/// `prefix + data + suffix` in one allocation.
pub(crate) fn framed(prefix: &[u8], data: &[u8], suffix: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(prefix.len() + data.len() + suffix.len());
    out.extend_from_slice(prefix);
    out.extend_from_slice(data);
    out.extend_from_slice(suffix);
    out.into()
}

/// Serializes a JSON value (infallible for `Value`).
pub(crate) fn to_vec(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

/// Appends `s` as a quoted, escaped JSON string.
pub(crate) fn push_json_str(out: &mut Vec<u8>, s: &str) {
    // Writing a `str` into a `Vec` cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames() {
        assert_eq!(&event("ping", b"{}")[..], b"event: ping\ndata: {}\n\n");
        assert_eq!(&data(b"{}")[..], b"data: {}\n\n");
        assert_eq!(&data_crlf(b"{}")[..], b"data: {}\r\n\r\n");
        let mut out = Vec::new();
        push_json_str(&mut out, "a\"b\n\u{1}é");
        assert_eq!(String::from_utf8(out).unwrap(), r#""a\"b\n\u0001é""#);
    }
}
