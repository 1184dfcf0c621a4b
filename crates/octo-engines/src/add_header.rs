//! Headers for the upstream request, as a request extension.
//!
//! [`HttpEndpoint`](crate::client::HttpEndpoint) builds every upstream request's headers from
//! scratch (so client credentials never leak), which means a header set on the client's
//! [`Request::headers`](octo_core::Request::headers) never reaches the upstream. Engines that want
//! to send one (a rule's `set_headers`, an add-header engine) put it in the request's
//! [`UpstreamHeaders`] extension instead, and the endpoint appends those after its own headers.
//! Because the extension lives in the request an engine owns, and a retrying engine gives each
//! attempt its own copy, headers never leak from one attempt or target to another.
//!
//! This module has the same API as the add-header module of the balancing work (which also adds
//! the `AddHeaders` engine and makes the endpoint send these headers): when both land, that module
//! replaces this one.

use http::{HeaderMap, HeaderName};

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
/// ```
/// use http::{HeaderMap, HeaderValue};
/// use octo_core::{ApiFormat, Body, Request};
/// use octo_engines::add_header::UpstreamHeaders;
///
/// let mut req = Request::post(ApiFormat::ChatCompletions, "/v1/chat/completions", Body::from_static(b"{}"));
/// req.extensions.get_or_insert_default::<UpstreamHeaders>().0.insert("x-team", HeaderValue::from_static("red"));
/// assert_eq!(req.extensions.get::<UpstreamHeaders>().unwrap().0["x-team"], "red");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamHeaders(pub HeaderMap);
