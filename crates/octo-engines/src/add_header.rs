//! Headers an engine adds to the upstream request, without forwarding client headers.
//!
//! [`HttpEndpoint`](crate::endpoint::HttpEndpoint) builds every upstream request's headers from
//! scratch (so client credentials never leak), which means a header set on the client's
//! [`Request::headers`](octo_core::Request::headers) never reaches the upstream. Engines that want
//! to send one (a rule's `set_headers`) put it in the request's [`UpstreamHeaders`] extension
//! instead; the endpoint appends those after its own and the backend's configured headers.
//!
//! The extension lives in the request an engine owns: a
//! [`TargetSet`](crate::balance::TargetSet) gives each attempt a fresh copy, so headers an engine
//! inside one target adds never reach another target.
//!
//! Headers that would break the exchange or impersonate the gateway's own credentials
//! ([`PROTECTED_HEADERS`]) cannot be set this way: the rules engine refuses them when it is built,
//! and the endpoint ignores them if they are put in the extension directly.

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
/// [`HttpEndpoint`](crate::endpoint::HttpEndpoint) sends them after the auth header and the backend's
/// configured headers; a name set here replaces the backend's value for that name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamHeaders(pub HeaderMap);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_framing_and_hop_by_hop_headers_are_protected() {
        for name in [
            "authorization",
            "x-api-key",
            "host",
            "content-length",
            "upgrade",
        ] {
            assert!(is_protected(&HeaderName::from_static(name)), "{name}");
        }
        assert!(!is_protected(&HeaderName::from_static("x-team")));
    }
}
