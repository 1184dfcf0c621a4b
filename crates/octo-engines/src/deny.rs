//! The deny engine: refuse a request with a configured status and message.
//!
//! A rule that matches a request it must refuse ends in [`Deny`]. The refusal is an [`Error`], so
//! the front renders it in the client's own protocol (OpenAI, Anthropic or Gemini error shape) with
//! the configured status. OctoLLM's `DenyEngine` answered raw text, and with no status configured
//! sent status 0 — a 200 under gin; here the default is 400, and only 4xx/5xx statuses are
//! accepted. A deny is never retryable: a balancer around it will not fail over.

use async_trait::async_trait;
use http::StatusCode;
use octo_core::{Engine, Error, ErrorKind, Request, Response};

/// Refuses every request; see the [module docs](self).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use octo_core::{Protocol, Body, Engine, Request};
/// use octo_engines::deny::Deny;
///
/// let deny = Deny::new(403, "streaming is not allowed").unwrap();
/// let req = Request::post(Protocol::Anthropic, "/v1/messages", Body::from_static(b"{}"));
/// let err = deny.process(req).await.unwrap_err();
/// assert_eq!(err.status(), 403);
/// let body: serde_json::Value = serde_json::from_slice(&err.render(Protocol::Anthropic).body).unwrap();
/// assert_eq!(body["error"]["type"], "permission_error");
/// assert_eq!(body["error"]["message"], "streaming is not allowed");
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Deny {
    status: StatusCode,
    message: String,
}

impl Deny {
    /// The status used when none is configured.
    pub const DEFAULT_STATUS: u16 = 400;

    /// Denies with `status` (400–599) and `message`.
    ///
    /// # Errors
    /// When `status` is not a 4xx or 5xx code (a "deny" that looks like success would be a bug).
    pub fn new(status: u16, message: impl Into<String>) -> Result<Self, Error> {
        let status = StatusCode::from_u16(status)
            .ok()
            .filter(|s| s.is_client_error() || s.is_server_error())
            .ok_or_else(|| {
                Error::internal(format!(
                    "deny status {status} is not an error status; use 400–599 (default {})",
                    Self::DEFAULT_STATUS
                ))
            })?;
        Ok(Deny {
            status,
            message: message.into(),
        })
    }

    /// Denies with the default status, 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Deny {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The error a request receives.
    pub fn error(&self) -> Error {
        let kind = match self.status.as_u16() {
            401 => ErrorKind::Unauthorized,
            403 => ErrorKind::Forbidden,
            404 => ErrorKind::NotFound,
            413 => ErrorKind::PayloadTooLarge,
            429 => ErrorKind::RateLimited,
            500..=599 => ErrorKind::Internal,
            _ => ErrorKind::BadRequest,
        };
        Error::new(kind, self.message.clone())
            .with_status(self.status)
            .with_retryable(false)
            .with_code("request_denied")
    }
}

#[async_trait]
impl Engine for Deny {
    async fn process(&self, _req: Request) -> Result<Response, Error> {
        Err(self.error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use octo_core::{Body, Protocol};
    use serde_json::Value;

    #[tokio::test]
    async fn renders_in_each_protocol_and_never_retries() {
        let deny = Deny::bad_request("prompt too long for this tier");
        let req = Request::post(
            Protocol::OpenAiChat,
            "/v1/chat/completions",
            Body::from_static(b"{}"),
        );
        let e = deny.process(req).await.unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(!e.is_retryable());
        let oa: Value = serde_json::from_slice(&e.render(Protocol::OpenAiChat).body).unwrap();
        assert_eq!(oa["error"]["message"], "prompt too long for this tier");
        assert_eq!(oa["error"]["code"], "request_denied");
        let ge: Value = serde_json::from_slice(&e.render(Protocol::Gemini).body).unwrap();
        assert_eq!(ge["error"]["status"], "INVALID_ARGUMENT");
        let e = Deny::new(429, "quota").unwrap().error();
        assert_eq!(e.status(), 429);
        assert!(!e.is_retryable());
        let e = Deny::new(503, "maintenance").unwrap().error();
        assert!(!e.is_retryable());
    }

    #[test]
    fn only_error_statuses_are_accepted() {
        assert!(Deny::new(200, "x").is_err());
        assert!(Deny::new(0, "x").is_err());
        assert!(Deny::new(302, "x").is_err());
        assert_eq!(Deny::new(451, "x").unwrap().status(), 451);
    }
}
