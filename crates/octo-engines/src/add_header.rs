//! Setting headers on the upstream request, per rule or per model, without forwarding client
//! headers.
//!
//! [`HttpEndpoint`](crate::client::HttpEndpoint) builds every upstream request's headers from
//! scratch (so client credentials never leak), which means a header set on the client's
//! [`Request::headers`] never reaches the upstream. Engines that want to send one put it in the
//! request's [`UpstreamHeaders`] extension instead; the endpoint appends those after its own and
//! the backend's configured headers. [`AddHeaders`] is the engine that does it.
//!
//! OctoLLM's `AddHeaderEngine` set headers on the *shared* request, so they leaked into retries and
//! other backends. Here the extension lives in the request an engine owns: a
//! [`TargetSet`](crate::retry::TargetSet) gives each attempt a fresh copy, so headers an engine
//! inside one target adds never reach another target.
//!
//! Headers that would break the exchange or impersonate the gateway's own credentials
//! ([`PROTECTED_HEADERS`]) cannot be set this way: [`AddHeaders::new`] refuses them, and the
//! endpoint ignores them if they are put in the extension directly.

use async_trait::async_trait;
use http::{HeaderMap, HeaderName, HeaderValue};
use octo_core::{ArcEngine, Engine, Error, Request, Response};

/// Header names an engine may not set on the upstream request: the gateway's credentials, framing
/// and hop-by-hop headers.
pub const PROTECTED_HEADERS: [&str; 12] = [
    "authorization",
    "x-api-key",
    "x-goog-api-key",
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
];

/// Whether `name` is one of the [`PROTECTED_HEADERS`].
pub fn is_protected(name: &HeaderName) -> bool {
    PROTECTED_HEADERS.contains(&name.as_str())
}

/// Extra headers for the upstream request, as a request extension.
///
/// [`HttpEndpoint`](crate::client::HttpEndpoint) sends them after the auth header and the backend's
/// configured headers; a name set here replaces the backend's value for that name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamHeaders(pub HeaderMap);

/// Sets headers for the upstream, then calls the inner engine.
///
/// When several `AddHeaders` are nested, the inner one wins for a name both set.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::sync::Arc;
/// use http::HeaderMap;
/// use octo_core::{engine_fn, Protocol, Body, Engine, Request, Response};
/// use octo_engines::add_header::{AddHeaders, UpstreamHeaders};
///
/// let inner = Arc::new(engine_fn(|req: Request| async move {
///     let h = req.extensions.get::<UpstreamHeaders>().unwrap();
///     assert_eq!(h.0["x-team"], "search");
///     Ok(Response::json(200, Body::from_static(b"{}")))
/// }));
/// let mut headers = HeaderMap::new();
/// headers.insert("x-team", "search".parse().unwrap());
/// let engine = AddHeaders::new(headers, inner).unwrap();
/// let req = Request::post(Protocol::OpenAiChat, "/v1/chat/completions", Body::from_static(b"{}"));
/// engine.process(req).await.unwrap();
/// # }
/// ```
pub struct AddHeaders {
    headers: HeaderMap,
    inner: ArcEngine,
}

impl std::fmt::Debug for AddHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AddHeaders")
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl AddHeaders {
    /// Adds `headers` to every request passed to `inner`.
    ///
    /// # Errors
    /// A 500-kind error naming the header when one of them is [protected](PROTECTED_HEADERS).
    pub fn new(headers: HeaderMap, inner: ArcEngine) -> Result<Self, Error> {
        if let Some(name) = headers.keys().find(|n| is_protected(n)) {
            return Err(Error::internal(format!(
                "header `{name}` cannot be set on upstream requests: credentials, framing and hop-by-hop headers are the gateway's (configure keys as the backend's `api_keys`)"
            )));
        }
        Ok(AddHeaders { headers, inner })
    }

    /// Builds the header map from string pairs.
    ///
    /// # Errors
    /// When a name or value is not valid in HTTP, or a name is protected.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
        inner: ArcEngine,
    ) -> Result<Self, Error> {
        let mut headers = HeaderMap::new();
        for (k, v) in pairs {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| Error::internal(format!("`{k}` is not a valid header name")))?;
            let value = HeaderValue::from_str(v).map_err(|_| {
                Error::internal(format!(
                    "the value of header `{k}` is not a valid header value"
                ))
            })?;
            headers.append(name, value);
        }
        Self::new(headers, inner)
    }
}

#[async_trait]
impl Engine for AddHeaders {
    async fn process(&self, mut req: Request) -> Result<Response, Error> {
        match req.extensions.get_mut::<UpstreamHeaders>() {
            Some(existing) => {
                for name in self.headers.keys() {
                    existing.0.remove(name);
                }
                for (name, value) in &self.headers {
                    existing.0.append(name.clone(), value.clone());
                }
            }
            None => {
                req.extensions.insert(UpstreamHeaders(self.headers.clone()));
            }
        }
        self.inner.process(req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use octo_core::{Body, Protocol, engine_fn};
    use std::sync::{Arc, Mutex};

    fn capture() -> (ArcEngine, Arc<Mutex<Option<UpstreamHeaders>>>) {
        let seen = Arc::new(Mutex::new(None));
        let s = seen.clone();
        let engine = Arc::new(engine_fn(move |req: Request| {
            let s = s.clone();
            async move {
                *s.lock().unwrap() = req.extensions.get::<UpstreamHeaders>().cloned();
                Ok(Response::json(200, Body::from_static(b"{}")))
            }
        }));
        (engine, seen)
    }

    fn req() -> Request {
        Request::post(
            Protocol::Anthropic,
            "/v1/messages",
            Body::from_static(b"{}"),
        )
    }

    #[tokio::test]
    async fn nested_engines_merge_and_the_inner_one_wins() {
        let (sink, seen) = capture();
        let inner = AddHeaders::from_pairs([("x-a", "inner"), ("x-c", "1")], sink).unwrap();
        let outer =
            AddHeaders::from_pairs([("x-a", "outer"), ("x-b", "2")], Arc::new(inner)).unwrap();
        let r = req();
        outer.process(r.clone()).await.unwrap();
        let h = seen.lock().unwrap().clone().unwrap().0;
        assert_eq!(h["x-a"], "inner");
        assert_eq!(h.get_all("x-a").iter().count(), 1);
        assert_eq!(h["x-b"], "2");
        assert_eq!(h["x-c"], "1");
        // The caller's request is untouched: headers never leak into another attempt.
        assert!(r.extensions.get::<UpstreamHeaders>().is_none());
        assert!(r.headers.is_empty());
    }

    #[test]
    fn protected_and_invalid_headers_are_refused() {
        let (sink, _) = capture();
        for name in ["Authorization", "x-api-key", "host", "content-length"] {
            let e = AddHeaders::from_pairs([(name, "x")], sink.clone()).unwrap_err();
            assert!(e.message().contains(&name.to_ascii_lowercase()), "{e}");
        }
        assert!(AddHeaders::from_pairs([("bad name", "x")], sink.clone()).is_err());
        assert!(AddHeaders::from_pairs([("x-ok", "bad\nvalue")], sink).is_err());
    }
}
