//! Which headers go upstream and which come back.
//!
//! Upstream requests start from an empty header map: nothing from the client is forwarded unless it
//! is on the short protocol allowlist below, so client credentials (`authorization`, `x-api-key`,
//! `x-goog-api-key`), cookies and hop-by-hop headers cannot leak.

use http::{HeaderMap, HeaderName, HeaderValue, header};
use octo_core::Protocol;

/// The Anthropic API version sent when the client did not name one.
pub(crate) const DEFAULT_ANTHROPIC_VERSION: &str = "2023-06-01";

/// Client headers that carry protocol semantics and are safe to forward, each with the upstream
/// protocols it means something to: a converted request (say Claude Code's Anthropic request sent
/// to an OpenAI upstream) does not carry the client protocol's headers along.
const FORWARDED: [(&str, &[Protocol]); 3] = [
    ("anthropic-version", &[Protocol::Anthropic]),
    ("anthropic-beta", &[Protocol::Anthropic]),
    (
        "openai-beta",
        &[Protocol::OpenAiChat, Protocol::OpenAiResponses],
    ),
];

/// Copies the allowlisted protocol headers that belong to `format` (the upstream's protocol);
/// supplies `anthropic-version` when missing.
pub(crate) fn forwarded_client_headers(format: Protocol, client: &HeaderMap, out: &mut HeaderMap) {
    for (name, formats) in FORWARDED {
        if !formats.contains(&format) {
            continue;
        }
        for value in client.get_all(name) {
            out.append(HeaderName::from_static(name), value.clone());
        }
    }
    if format == Protocol::Anthropic && !out.contains_key("anthropic-version") {
        out.insert(
            "anthropic-version",
            HeaderValue::from_static(DEFAULT_ANTHROPIC_VERSION),
        );
    }
}

/// Adds the auth header `format` expects, carrying `key`.
pub(crate) fn auth_headers(format: Protocol, key: &str, out: &mut HeaderMap) -> Result<(), ()> {
    let (name, value) = match format {
        Protocol::Anthropic => (HeaderName::from_static("x-api-key"), key.to_owned()),
        Protocol::Gemini | Protocol::GeminiEmbeddings => {
            (HeaderName::from_static("x-goog-api-key"), key.to_owned())
        }
        _ => (header::AUTHORIZATION, format!("Bearer {key}")),
    };
    let mut value = HeaderValue::from_str(&value).map_err(|_| ())?;
    value.set_sensitive(true);
    out.insert(name, value);
    Ok(())
}

/// Upstream response headers not passed to the client (a `match`, which compiles to a switch on
/// the length: every answer's every header is checked).
fn dropped(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "content-length"
            | "content-encoding"
            | "set-cookie"
            | "alt-svc"
            | "server"
    )
}

/// Copies upstream response headers that make sense to the client.
pub(crate) fn copy_response_headers(upstream: &HeaderMap, out: &mut HeaderMap) {
    for (name, value) in upstream {
        if !dropped(name) {
            out.append(name.clone(), value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_credentials_are_never_forwarded() {
        let mut client = HeaderMap::new();
        client.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer sk-client"),
        );
        client.insert("x-api-key", HeaderValue::from_static("sk-client"));
        client.insert("x-goog-api-key", HeaderValue::from_static("sk-client"));
        client.insert(header::COOKIE, HeaderValue::from_static("a=b"));
        client.insert("anthropic-beta", HeaderValue::from_static("tools-2024"));
        let mut out = HeaderMap::new();
        forwarded_client_headers(Protocol::Anthropic, &client, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out["anthropic-beta"], "tools-2024");
        assert_eq!(out["anthropic-version"], DEFAULT_ANTHROPIC_VERSION);
    }

    #[test]
    fn protocol_headers_go_only_to_their_own_protocol() {
        let mut client = HeaderMap::new();
        client.insert("anthropic-version", HeaderValue::from_static("2023-06-01"));
        client.insert(
            "anthropic-beta",
            HeaderValue::from_static("claude-code-20250219"),
        );
        client.insert(
            "openai-beta",
            HeaderValue::from_static("responses=experimental"),
        );
        for format in [Protocol::OpenAiChat, Protocol::OpenAiResponses] {
            let mut out = HeaderMap::new();
            forwarded_client_headers(format, &client, &mut out);
            assert_eq!(out.len(), 1, "{format}: {out:?}");
            assert_eq!(out["openai-beta"], "responses=experimental");
        }
        let mut out = HeaderMap::new();
        forwarded_client_headers(Protocol::Anthropic, &client, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out["anthropic-beta"], "claude-code-20250219");
        assert_eq!(out["anthropic-version"], "2023-06-01");
        let mut out = HeaderMap::new();
        forwarded_client_headers(Protocol::Gemini, &client, &mut out);
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn auth_header_per_protocol() {
        let mut h = HeaderMap::new();
        auth_headers(Protocol::OpenAiChat, "k", &mut h).unwrap();
        auth_headers(Protocol::Anthropic, "k", &mut h).unwrap();
        auth_headers(Protocol::Gemini, "k", &mut h).unwrap();
        assert_eq!(h[header::AUTHORIZATION], "Bearer k");
        assert_eq!(h["x-api-key"], "k");
        assert_eq!(h["x-goog-api-key"], "k");
        assert!(auth_headers(Protocol::Anthropic, "bad\nkey", &mut h).is_err());
    }
}
