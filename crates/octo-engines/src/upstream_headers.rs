//! [`UpstreamHeaders`]: headers engines ask the upstream client to send.
//!
//! The upstream client builds its request headers from scratch (so client credentials never leak);
//! an engine that wants an extra header on the upstream request (a rule's `set_headers`, an
//! add-header engine) records it in this request extension instead of touching
//! [`Request::headers`](octo_core::Request::headers), which are the *client's* headers. Because the
//! extension lives in the request each attempt owns, a retry never inherits another attempt's
//! headers.

use http::HeaderMap;
use octo_core::Request;

/// Extra headers for the upstream request, kept in [`Request::extensions`](octo_core::Request).
///
/// The upstream client appends these after its own headers.
///
/// ```
/// use http::{HeaderMap, HeaderValue};
/// use octo_core::{ApiFormat, Body, Request};
/// use octo_engines::UpstreamHeaders;
///
/// let mut req = Request::post(ApiFormat::ChatCompletions, "/v1/chat/completions", Body::from_static(b"{}"));
/// let mut h = HeaderMap::new();
/// h.insert("x-team", HeaderValue::from_static("red"));
/// UpstreamHeaders::set_all(&mut req, &h);
/// assert_eq!(req.extensions.get::<UpstreamHeaders>().unwrap().0["x-team"], "red");
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpstreamHeaders(pub HeaderMap);

impl UpstreamHeaders {
    /// Sets every header of `headers` on `req`'s upstream headers: a name already present is
    /// replaced (all its values), other names are kept.
    pub fn set_all(req: &mut Request, headers: &HeaderMap) {
        if headers.is_empty() {
            return;
        }
        let target = &mut req.extensions.get_or_insert_default::<UpstreamHeaders>().0;
        for name in headers.keys() {
            target.remove(name);
            for value in headers.get_all(name) {
                target.append(name.clone(), value.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use octo_core::{ApiFormat, Body};

    #[test]
    fn set_all_replaces_names_and_keeps_others() {
        let mut req = Request::post(ApiFormat::Messages, "/v1/messages", Body::empty());
        let mut first = HeaderMap::new();
        first.append("x-a", HeaderValue::from_static("1"));
        first.append("x-a", HeaderValue::from_static("2"));
        first.append("x-b", HeaderValue::from_static("b"));
        UpstreamHeaders::set_all(&mut req, &first);
        let mut second = HeaderMap::new();
        second.insert("x-a", HeaderValue::from_static("3"));
        UpstreamHeaders::set_all(&mut req, &second);
        let h = &req.extensions.get::<UpstreamHeaders>().unwrap().0;
        assert_eq!(h.get_all("x-a").iter().collect::<Vec<_>>(), ["3"]);
        assert_eq!(h["x-b"], "b");
    }
}
