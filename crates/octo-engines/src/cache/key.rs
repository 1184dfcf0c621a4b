//! The cache key: what makes two requests ask for the same answer.
//!
//! A key is the SHA-256 of, in order: a format version; the client protocol; the exposed model;
//! whether the client asked for a stream (a streamed request hits only a streamed entry, because
//! entries are replayed event by event); the caller's org (so entries are never shared across
//! orgs; requests without an org share the anonymous scope); the rule that routed the request; the
//! cache's scope (a fingerprint of the model's config, so a changed model misses); the client's
//! protocol headers that the upstream reads (`anthropic-version`, `anthropic-beta`,
//! `openai-beta`); and the request body in a canonical form: object keys sorted, no whitespace,
//! and without the top-level fields in [`IGNORED_FIELDS`], which do not change the answer.
//!
//! Two bodies that differ only in key order, whitespace or an ignored field get the same key;
//! anything else (a different temperature, one more message, `stream_options`) gets another.

use std::fmt;

use octo_core::{Error, Request};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Top-level request fields left out of the key: they label, store or route the request at the
/// provider but do not change the answer's content.
///
/// - `user`, `safety_identifier`: end-user ids (OpenAI).
/// - `metadata`: free-form tags (OpenAI, Anthropic's `metadata.user_id`).
/// - `store`: whether OpenAI keeps the completion.
/// - `prompt_cache_key`, `prompt_cache_retention`: OpenAI's prompt-cache routing hints.
/// - `labels`: billing labels (Gemini on Vertex AI).
pub const IGNORED_FIELDS: [&str; 7] = [
    "user",
    "safety_identifier",
    "metadata",
    "store",
    "prompt_cache_key",
    "prompt_cache_retention",
    "labels",
];

/// Client headers that reach the upstream and so may change the answer.
const KEYED_HEADERS: [&str; 3] = ["anthropic-version", "anthropic-beta", "openai-beta"];

/// The key format; bump it when the key's inputs change so old entries are not read.
const VERSION: &str = "octollm-cache-v1";

/// A cache key: 32 bytes of SHA-256.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey(pub [u8; 32]);

impl CacheKey {
    /// Lowercase hex, as the Redis store writes it.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 15)]));
        }
        s
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({})", &self.to_hex()[..16])
    }
}

/// Who is asking and through what, besides the body: the parts of the key that do not come from
/// the request itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyScope<'a> {
    /// The caller's org (`None`: unauthenticated).
    pub org: Option<&'a str>,
    /// The rule that routed the request, if any.
    pub rule: Option<&'a str>,
    /// The cache's own scope (a fingerprint of the model's settings).
    pub scope: &'a str,
}

/// Why a request is not looked up in the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bypass {
    /// The answer depends on state held at the provider (a Responses `conversation`) or is not
    /// the answer itself (`background: true` returns a queued response).
    ProviderState,
}

/// The key of `req` within `scope`, or why it has none.
///
/// # Errors
/// A 400 when the body is not JSON (the same error the request would get later).
///
/// ```
/// use octo_core::{Body, Protocol, Request};
/// use octo_engines::cache::{KeyScope, cache_key};
///
/// let mut a = Request::post(Protocol::OpenAiChat, "/v1/chat/completions",
///     Body::from_static(br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"user":"u1"}"#));
/// let mut b = Request::post(Protocol::OpenAiChat, "/v1/chat/completions",
///     Body::from_static(br#"{ "user": "u2", "messages": [{"content":"hi","role":"user"}], "model": "m" }"#));
/// let scope = KeyScope { org: Some("acme"), ..KeyScope::default() };
/// assert_eq!(cache_key(&mut a, scope).unwrap(), cache_key(&mut b, scope).unwrap());
/// let other_org = KeyScope { org: Some("umbrella"), ..scope };
/// assert_ne!(cache_key(&mut a, scope).unwrap(), cache_key(&mut a, other_org).unwrap());
/// ```
pub fn cache_key(
    req: &mut Request,
    scope: KeyScope<'_>,
) -> Result<Result<CacheKey, Bypass>, Error> {
    let peek = req.peek()?;
    let protocol = req.protocol;
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(VERSION.as_bytes());
    field(protocol.config_name().as_bytes());
    field(peek.model.as_deref().unwrap_or("").as_bytes());
    field(if peek.stream { b"stream" } else { b"full" });
    field(scope.org.map_or(b"\0anonymous" as &[u8], str::as_bytes));
    field(scope.rule.unwrap_or("").as_bytes());
    field(scope.scope.as_bytes());
    for name in KEYED_HEADERS {
        for value in req.headers.get_all(name) {
            field(name.as_bytes());
            field(value.as_bytes());
        }
    }
    let body = req.body.json()?;
    if protocol == octo_core::Protocol::OpenAiResponses
        && (body.get("background").and_then(Value::as_bool) == Some(true)
            || body.get("conversation").is_some_and(|c| !c.is_null()))
    {
        return Ok(Err(Bypass::ProviderState));
    }
    let mut canonical = Vec::with_capacity(256);
    match body {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map
                .keys()
                .filter(|k| !IGNORED_FIELDS.contains(&k.as_str()))
                .collect();
            keys.sort();
            canonical.push(b'{');
            for k in keys {
                write_canonical(&Value::String(k.clone()), &mut canonical);
                canonical.push(b':');
                write_canonical(&map[k.as_str()], &mut canonical);
                canonical.push(b',');
            }
            canonical.push(b'}');
        }
        other => write_canonical(other, &mut canonical),
    }
    field(&canonical);
    Ok(Ok(CacheKey(h.finalize().into())))
}

/// Writes `v` as JSON with object keys sorted at every depth.
fn write_canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for k in keys {
                write_canonical(&Value::String(k.clone()), out);
                out.push(b':');
                write_canonical(&map[k.as_str()], out);
                out.push(b',');
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for item in items {
                write_canonical(item, out);
                out.push(b',');
            }
            out.push(b']');
        }
        scalar => {
            // Serialising a scalar into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, scalar);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use octo_core::{Body, Protocol};

    fn req(protocol: Protocol, body: &str) -> Request {
        Request::post(protocol, "/x", Body::from_bytes(body.to_owned()))
    }

    fn key(r: &mut Request, scope: KeyScope<'_>) -> CacheKey {
        cache_key(r, scope).unwrap().unwrap()
    }

    #[test]
    fn canonical_form_ignores_order_whitespace_and_labels() {
        let s = KeyScope::default();
        let a = key(
            &mut req(
                Protocol::Anthropic,
                r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}],"metadata":{"user_id":"a"}}"#,
            ),
            s,
        );
        let b = key(
            &mut req(
                Protocol::Anthropic,
                r#"{"messages":[{"content":"x","role":"user"}],  "model":"m","max_tokens":5}"#,
            ),
            s,
        );
        assert_eq!(a, b);
    }

    #[test]
    fn anything_that_changes_the_answer_changes_the_key() {
        let s = KeyScope::default();
        let base = r#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#;
        let k = key(&mut req(Protocol::OpenAiChat, base), s);
        for other in [
            r#"{"model":"m","messages":[{"role":"user","content":"y"}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":0.5}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream":true}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream":true,"stream_options":{"include_usage":true}}"#,
            r#"{"model":"n","messages":[{"role":"user","content":"x"}]}"#,
            // A nested `user` is content, not the top-level label.
            r#"{"model":"m","messages":[{"role":"user","content":"x","user":"1"}]}"#,
        ] {
            assert_ne!(k, key(&mut req(Protocol::OpenAiChat, other), s), "{other}");
        }
        // Same body through another protocol's route, org, rule or scope.
        assert_ne!(k, key(&mut req(Protocol::OpenAiResponses, base), s));
        for scope in [
            KeyScope {
                org: Some("a"),
                ..s
            },
            KeyScope {
                rule: Some("r"),
                ..s
            },
            KeyScope { scope: "v2", ..s },
        ] {
            assert_ne!(k, key(&mut req(Protocol::OpenAiChat, base), scope));
        }
        // A protocol header the upstream reads.
        let mut beta = req(Protocol::OpenAiChat, base);
        beta.headers
            .insert("openai-beta", http::HeaderValue::from_static("x"));
        assert_ne!(k, key(&mut beta, s));
        // An empty org is not the anonymous scope.
        assert_ne!(
            key(
                &mut req(Protocol::OpenAiChat, base),
                KeyScope { org: Some(""), ..s }
            ),
            k
        );
    }

    #[test]
    fn gemini_stream_comes_from_the_path() {
        let body = r#"{"contents":[{"parts":[{"text":"x"}]}]}"#;
        let mut unary = req(Protocol::Gemini, body);
        unary.route.model = Some("g".into());
        unary.route.stream = Some(false);
        let mut streamed = unary.clone();
        streamed.route.stream = Some(true);
        let s = KeyScope::default();
        assert_ne!(key(&mut unary, s), key(&mut streamed, s));
    }

    #[test]
    fn provider_state_bypasses() {
        let s = KeyScope::default();
        for body in [
            r#"{"model":"m","input":"x","background":true}"#,
            r#"{"model":"m","input":"x","conversation":"conv_1"}"#,
        ] {
            assert_eq!(
                cache_key(&mut req(Protocol::OpenAiResponses, body), s).unwrap(),
                Err(Bypass::ProviderState)
            );
        }
        assert!(
            cache_key(
                &mut req(
                    Protocol::OpenAiResponses,
                    r#"{"model":"m","input":"x","background":false}"#
                ),
                s
            )
            .unwrap()
            .is_ok()
        );
    }

    #[test]
    fn malformed_json_is_a_400() {
        let err = cache_key(
            &mut req(Protocol::OpenAiChat, "{\"model\":"),
            KeyScope::default(),
        )
        .unwrap_err();
        assert_eq!(err.status().as_u16(), 400);
    }

    #[test]
    fn hex_is_64_digits() {
        let k = CacheKey([0xab; 32]);
        assert_eq!(k.to_hex(), "ab".repeat(32));
    }
}
