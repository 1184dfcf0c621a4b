//! Small JSON and error helpers shared by the protocol codecs.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::{Map, Value};

use octo_core::{Error, Protocol};

/// `v[key]` as a string.
pub(crate) fn s<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// `v[a][b]` on objects: what `Value::pointer("/a/b")` finds for keys without `/` or `~`, without
/// the pointer's parsing (it allocates a `String` per segment).
pub(crate) trait At {
    /// The member `b` of the member `a`; `None` when either is missing or not an object's.
    fn at(&self, a: &str, b: &str) -> Option<&Value>;
}

impl At for Value {
    fn at(&self, a: &str, b: &str) -> Option<&Value> {
        self.get(a)
            .and_then(|x| x.as_object())
            .and_then(|x| x.get(b))
    }
}

/// Deserialises an optional string borrowed from the input when it has no escapes, owned
/// otherwise, for `Option<Cow<str>>` fields of the stream decoders' event structs: serde's derive
/// borrows a `Cow<str>` only when it is not wrapped in an `Option`, so without this every string
/// of every upstream event was copied into a fresh `String`.
pub(crate) fn borrowed_str<'de, D>(d: D) -> Result<Option<Cow<'de, str>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct Str<'a>(Cow<'a, str>);

    impl<'de> serde::Deserialize<'de> for Str<'de> {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Visit;

            impl<'de> serde::de::Visitor<'de> for Visit {
                type Value = Cow<'de, str>;

                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a string")
                }

                fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                    Ok(Cow::Borrowed(v))
                }

                fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                    Ok(Cow::Owned(v.to_owned()))
                }

                fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                    Ok(Cow::Owned(v))
                }
            }

            d.deserialize_str(Visit).map(Str)
        }
    }

    Ok(Option::<Str<'de>>::deserialize(d)?.map(|s| s.0))
}

/// `v[a]`, else `v[b]` (Gemini accepts camelCase and snake_case).
pub(crate) fn get2<'a>(v: &'a Value, a: &str, b: &str) -> Option<&'a Value> {
    v.get(a).or_else(|| v.get(b)).filter(|x| !x.is_null())
}

/// `v[key]` as an array (empty when absent or not an array).
pub(crate) fn arr<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// The strings of an array (other items skipped); empty when `v` is not an array.
pub(crate) fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// `v[key]` as a non-negative integer.
pub(crate) fn u(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(as_u64)
}

/// A non-negative integer, also from a float with no fraction (some SDKs send `1024.0`).
pub(crate) fn as_u64(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| {
        v.as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0 && f.fract() == 0.0 && *f < 1e18)
            .map(|f| f as u64)
    })
}

/// `v[key]` as a number.
pub(crate) fn f(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64)
}

/// `v[key]` as a bool.
pub(crate) fn b(v: &Value, key: &str) -> Option<bool> {
    v.get(key).and_then(Value::as_bool)
}

/// Inserts `value` under `key` when it is `Some`.
pub(crate) fn put<T: Into<Value>>(m: &mut Map<String, Value>, key: &str, value: Option<T>) {
    if let Some(v) = value {
        m.insert(key.to_owned(), v.into());
    }
}

/// A float as JSON (non-finite values become `null`).
pub(crate) fn num(x: f64) -> Value {
    serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
}

/// A 400 naming the offending parameter, OpenAI style.
pub(crate) fn bad(param: &str, message: impl Into<String>) -> Error {
    Error::bad_request(message)
        .with_param(param)
        .with_code("invalid_request")
}

/// A 400 for a field the target protocol cannot express without changing the meaning.
pub(crate) fn unsupported(param: &str, message: impl Into<String>) -> Error {
    Error::bad_request(message)
        .with_param(param)
        .with_code("unsupported_parameter")
}

/// A debug note that `field` was dropped because `target` cannot express it.
pub(crate) fn dropped(field: &str, target: Protocol) {
    tracing::debug!(field, upstream = %target, "dropping a field the upstream protocol cannot express");
}

/// The text of an OpenAI-style content: a string, or the `text` of each text part joined.
pub(crate) fn content_text(content: &Value) -> String {
    match content {
        Value::String(t) => t.clone(),
        Value::Array(parts) => {
            let mut out = String::new();
            for p in parts {
                if let Some(t) = p.get("text").and_then(Value::as_str) {
                    if !out.is_empty() {
                        out.push('\n');
                    }
                    out.push_str(t);
                }
            }
            out
        }
        _ => String::new(),
    }
}

/// JSON text parsed into an object for protocols that carry arguments as objects; anything that is
/// not a JSON object becomes `{}` (logged).
pub(crate) fn args_object(arguments: &str) -> Value {
    if arguments.trim().is_empty() {
        return Value::Object(Map::new());
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) | Err(_) => {
            tracing::debug!("tool-call arguments are not a JSON object; sending {{}}");
            Value::Object(Map::new())
        }
    }
}

/// An in-band error an upstream sent inside its stream (or a `failed` response), as an [`Error`]
/// that renders in any client protocol with the upstream's message, verbatim.
pub(crate) fn inband_error(upstream: Protocol, status: u16, body: &Value) -> Error {
    let status = http::StatusCode::from_u16(status)
        .ok()
        .filter(|s| s.is_client_error() || s.is_server_error())
        .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    let message = body
        .at("error", "message")
        .or_else(|| body.get("message"))
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .map_or_else(
            || format!("the {upstream} upstream reported an error"),
            str::to_owned,
        );
    tracing::debug!(upstream = %upstream, status = status.as_u16(), "in-band upstream error");
    Error::upstream(message).with_status(status)
}

/// The HTTP status an error `type` (OpenAI or Anthropic) stands for.
pub(crate) fn status_for_type(kind: &str) -> u16 {
    match kind {
        "invalid_request_error" | "invalid_request" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" | "permission_denied" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" | "rate_limit_exceeded" | "requests" => 429,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        _ => 500,
    }
}

/// The current Unix time in seconds.
pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A new id `<prefix><hex>` for an answer whose upstream gave none (`prefix` ends with its
/// separator: `msg_`, `chatcmpl-`).
pub(crate) fn fresh_id(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{nanos:x}{n:04x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Borrowing<'a> {
        #[serde(borrow, default, deserialize_with = "borrowed_str")]
        s: Option<Cow<'a, str>>,
    }

    #[test]
    fn strings_are_borrowed_unless_escaped() {
        let b: Borrowing<'_> = serde_json::from_str(r#"{"s":"plain"}"#).unwrap();
        assert!(matches!(b.s, Some(Cow::Borrowed("plain"))));
        let b: Borrowing<'_> = serde_json::from_str(r#"{"s":"a\nb"}"#).unwrap();
        assert!(matches!(b.s.as_deref(), Some("a\nb")));
        assert!(matches!(b.s, Some(Cow::Owned(_))));
        for absent in [r#"{}"#, r#"{"s":null}"#] {
            let b: Borrowing<'_> = serde_json::from_str(absent).unwrap();
            assert!(b.s.is_none(), "{absent}");
        }
        assert!(serde_json::from_str::<Borrowing<'_>>(r#"{"s":1}"#).is_err());
    }

    #[test]
    fn at_finds_what_pointer_finds_for_member_names() {
        let docs = [
            serde_json::json!({"a": {"b": 1}}),
            serde_json::json!({"a": {"c": 1}}),
            serde_json::json!({"a": [1, 2]}),
            serde_json::json!({"a": "x"}),
            serde_json::json!({"b": {"b": 1}}),
            serde_json::json!([{"a": {"b": 1}}]),
            serde_json::json!(null),
        ];
        for d in &docs {
            assert_eq!(d.at("a", "b"), d.pointer("/a/b"), "{d}");
        }
    }
}
