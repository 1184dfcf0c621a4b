//! The call to an OpenAI-compatible moderation endpoint (`POST /v1/moderations`).
//!
//! Request: `{"model": M, "input": [text, …]}` with `authorization: Bearer <key>`. Answer:
//! `{"results": [{"flagged": bool, "categories": {name: bool, …}}, …]}`; the texts are flagged
//! when any result is, and the categories are the union of those set to `true`. A text longer
//! than [`MAX_PART_CHARS`] is sent as several consecutive parts (providers cap each input).

use std::time::Duration;

use octo_core::Error;
use serde_json::{Value, json};

/// The longest part sent as one `input` entry, in characters.
pub const MAX_PART_CHARS: usize = 8_000;

/// What the moderation endpoint said.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Verdict {
    /// Whether any text was flagged.
    pub flagged: bool,
    /// The flagged categories (sorted, deduplicated), e.g. `["violence"]`.
    pub categories: Vec<String>,
}

/// A client of one moderation endpoint.
#[derive(Clone)]
pub struct Moderator {
    client: reqwest::Client,
    url: String,
    key: Option<String>,
    model: String,
    timeout: Duration,
    headers: http::HeaderMap,
}

impl std::fmt::Debug for Moderator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Moderator")
            .field("url", &self.url)
            .field("model", &self.model)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Moderator {
    /// A client posting to `url` (the full URL of the moderations call) with `key`, asking for
    /// `model`, each call bounded by `timeout`.
    ///
    /// # Errors
    /// A [`BuildError`](octo_core::BuildError) when the URL is not http(s) or the client cannot
    /// be built.
    pub fn new(
        url: impl Into<String>,
        key: Option<String>,
        model: impl Into<String>,
        timeout: Duration,
    ) -> Result<Self, octo_core::BuildError> {
        let url = url.into();
        let parsed = reqwest::Url::parse(&url).map_err(|e| {
            octo_core::BuildError::invalid(format!("`{url}` is not a moderation URL: {e}"))
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(octo_core::BuildError::invalid(format!(
                "`{url}` must start with http:// or https://"
            )));
        }
        let client = reqwest::Client::builder()
            .tcp_nodelay(true)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("octollm/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| octo_core::BuildError::invalid(format!("moderation client: {e}")))?;
        Ok(Moderator {
            client,
            url,
            key,
            model: model.into(),
            timeout,
            headers: http::HeaderMap::new(),
        })
    }

    /// Extra headers on every moderation call (a backend's `headers`).
    pub fn with_headers(mut self, headers: http::HeaderMap) -> Self {
        self.headers = headers;
        self
    }

    /// Asks whether `texts` may pass. Empty texts are not sent (and pass).
    ///
    /// # Errors
    /// An upstream error (retryable) when the endpoint cannot be reached, times out, answers
    /// with an error status or with a body that is not a moderation result; its message never
    /// carries the key.
    pub async fn check(&self, texts: &[String]) -> Result<Verdict, Error> {
        let input = split_parts(texts);
        if input.is_empty() {
            return Ok(Verdict::default());
        }
        let mut req = self
            .client
            .post(&self.url)
            .timeout(self.timeout)
            .headers(self.headers.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(json!({"model": self.model, "input": input}).to_string());
        if let Some(key) = &self.key {
            req = req.bearer_auth(key);
        }
        let resp = req.send().await.map_err(|e| {
            let what = if e.is_timeout() {
                format!("did not answer within {:?}", self.timeout)
            } else {
                "could not be reached".to_owned()
            };
            Error::upstream(format!("the moderation endpoint {} {what}", self.url))
        })?;
        let status = resp.status();
        let body = tokio::time::timeout(self.timeout, resp.bytes())
            .await
            .map_err(|_| {
                Error::upstream(format!(
                    "the moderation endpoint {} did not finish its answer within {:?}",
                    self.url, self.timeout
                ))
            })?
            .map_err(|_| {
                Error::upstream(format!(
                    "the moderation endpoint {} broke off its answer",
                    self.url
                ))
            })?;
        if !status.is_success() {
            return Err(Error::upstream(format!(
                "the moderation endpoint {} answered HTTP {}",
                self.url,
                status.as_u16()
            )));
        }
        parse_verdict(&body).ok_or_else(|| {
            Error::upstream(format!(
                "the moderation endpoint {} answered something that is not a moderation result",
                self.url
            ))
        })
    }
}

/// `texts` as `input` parts of at most [`MAX_PART_CHARS`] characters, empty ones dropped.
fn split_parts(texts: &[String]) -> Vec<&str> {
    let mut parts = Vec::new();
    for t in texts {
        let mut rest = t.as_str();
        while !rest.is_empty() {
            let cut = rest
                .char_indices()
                .nth(MAX_PART_CHARS)
                .map_or(rest.len(), |(i, _)| i);
            parts.push(&rest[..cut]);
            rest = &rest[cut..];
        }
    }
    parts
}

/// Reads `{"results": [...]}`; `None` when it is not that shape.
pub fn parse_verdict(body: &[u8]) -> Option<Verdict> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let results = v.get("results")?.as_array()?;
    let mut verdict = Verdict::default();
    for r in results {
        let flagged = r.get("flagged")?.as_bool()?;
        verdict.flagged |= flagged;
        if let Some(cats) = r.get("categories").and_then(Value::as_object) {
            for (name, on) in cats {
                if on.as_bool() == Some(true) && !verdict.categories.contains(name) {
                    verdict.categories.push(name.clone());
                }
            }
        }
    }
    verdict.categories.sort();
    Some(verdict)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_union_results() {
        let v = parse_verdict(
            br#"{"id":"m","results":[
                {"flagged":false,"categories":{"hate":false}},
                {"flagged":true,"categories":{"violence":true,"hate":false,"harassment":true}},
                {"flagged":true,"categories":{"violence":true}}]}"#,
        )
        .unwrap();
        assert!(v.flagged);
        assert_eq!(v.categories, ["harassment", "violence"]);
        assert_eq!(
            parse_verdict(br#"{"results":[]}"#),
            Some(Verdict::default())
        );
        assert_eq!(parse_verdict(br#"{"error":{"message":"x"}}"#), None);
        assert_eq!(parse_verdict(br#"{"results":[{"categories":{}}]}"#), None);
        assert_eq!(parse_verdict(b"not json"), None);
    }

    #[test]
    fn long_texts_are_split_and_empty_ones_dropped() {
        let long = "é".repeat(MAX_PART_CHARS * 2 + 1);
        let texts = vec![String::new(), long.clone(), "x".to_owned()];
        let parts = split_parts(&texts);
        assert_eq!(parts.len(), 4);
        assert_eq!(parts.concat(), format!("{long}x"));
        assert!(parts.iter().all(|p| p.chars().count() <= MAX_PART_CHARS));
    }
}
