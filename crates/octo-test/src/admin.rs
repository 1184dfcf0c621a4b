//! Talking to a gateway's admin listener (admin API, web panel, `/metrics`): one call with a
//! bearer token, a panel session, a JSON body or any header, read whole ([`AdminCall`],
//! [`AdminReply`]), and the shortcuts most tests need: a `GET` with a token
//! ([`Gateway::admin_get`]), a `/metrics` sample ([`Gateway::metric`]) and a request-log record
//! once the log writer has written it ([`Gateway::logged_record`]).

use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::gateway::Gateway;
use crate::http::{client, metric_sample, text};

/// How long [`Gateway::logged_record`] waits for the log writer (it batches every 100 ms).
const RECORD_DEADLINE: Duration = Duration::from_secs(20);

/// The panel's session cookie.
const SESSION_COOKIE: &str = "octollm_session";

/// The header carrying a session's CSRF token on changes.
const CSRF_HEADER: &str = "x-octollm-csrf";

/// One call on a gateway's admin listener, built from [`Gateway::admin`]; nothing is sent until
/// [`send`](Self::send).
#[must_use = "nothing is sent until `send`"]
#[derive(Debug)]
pub struct AdminCall {
    /// `METHOD url`, for messages.
    what: String,
    request: reqwest::RequestBuilder,
}

impl AdminCall {
    /// With `Authorization: Bearer <token>`.
    pub fn token(self, token: &str) -> Self {
        self.map(|r| r.bearer_auth(token))
    }

    /// With `Authorization: Bearer <token>` when given.
    pub fn maybe_token(self, token: Option<&str>) -> Self {
        match token {
            Some(t) => self.token(t),
            None => self,
        }
    }

    /// With the panel's session cookie set to `session`.
    pub fn session(self, session: &str) -> Self {
        self.header("cookie", &format!("{SESSION_COOKIE}={session}"))
    }

    /// With the session's CSRF token (changes made with a session need it).
    pub fn csrf(self, token: &str) -> Self {
        self.header(CSRF_HEADER, token)
    }

    /// With `body` as `application/json`.
    pub fn json(self, body: &Value) -> Self {
        let bytes = serde_json::to_vec(body).unwrap();
        self.map(|r| r.header("content-type", "application/json").body(bytes))
    }

    /// With `body` as `application/json` when given.
    pub fn maybe_json(self, body: Option<&Value>) -> Self {
        match body {
            Some(b) => self.json(b),
            None => self,
        }
    }

    /// With the header `name: value`.
    pub fn header(self, name: &str, value: &str) -> Self {
        self.map(|r| r.header(name, value))
    }

    fn map(self, f: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder) -> Self {
        AdminCall {
            what: self.what,
            request: f(self.request),
        }
    }

    /// Sends the call and reads the answer whole; panics when it cannot be sent.
    pub async fn send(self) -> AdminReply {
        let resp = self
            .request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", self.what));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        AdminReply {
            what: self.what,
            status,
            headers,
            body: text(resp).await,
        }
    }
}

/// What the admin listener answered, read whole.
#[derive(Debug)]
pub struct AdminReply {
    /// `METHOD url`, for messages.
    what: String,
    /// The status code.
    pub status: u16,
    /// The response headers.
    pub headers: HeaderMap,
    /// The body as text.
    pub body: String,
}

impl AdminReply {
    /// The body as JSON; panics, naming the call and showing the body, when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {}", self.what, self.body))
    }

    /// The body as JSON, `null` when it is empty (`204 No Content`).
    pub fn json_or_null(&self) -> Value {
        if self.body.is_empty() {
            Value::Null
        } else {
            self.json()
        }
    }

    /// The header `name` as text, if present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `(status, body)`, for destructuring.
    pub fn status_and_body(self) -> (u16, String) {
        (self.status, self.body)
    }
}

impl Gateway {
    /// The admin listener's `http://ADDR`; panics when the gateway printed none.
    pub fn admin_base(&self) -> &str {
        self.admin_url
            .as_deref()
            .expect("an admin listener (the gateway printed none)")
    }

    /// A call of `method` on `path` (`/api/v1/…`, `/metrics`, a panel file) on the admin
    /// listener.
    pub fn admin(&self, method: &str, path: &str) -> AdminCall {
        let url = format!("{}{path}", self.admin_base());
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .unwrap_or_else(|e| panic!("`{method}` is not an HTTP method: {e}"));
        AdminCall {
            what: format!("{method} {url}"),
            request: client().request(method, &url),
        }
    }

    /// `GET path` on the admin listener with `Authorization: Bearer <token>`.
    pub async fn admin_get(&self, path: &str, token: &str) -> AdminReply {
        self.admin("GET", path).token(token).send().await
    }

    /// The value of the unlabelled sample `name` on the admin listener's `/metrics` (read with
    /// `token`); panics unless it answers 200 with the sample.
    pub async fn metric(&self, token: &str, name: &str) -> f64 {
        let page = self.admin_get("/metrics", token).await;
        assert_eq!(page.status, 200, "GET /metrics: {}", page.body);
        metric_sample(&page.body, name)
    }

    /// The request-log record `id` (`GET /api/v1/logs/{id}` with `token`), asked again while it
    /// is not written yet (404) for up to 20 s; panics on any other answer.
    pub async fn logged_record(&self, token: &str, id: &str) -> Value {
        let path = format!("/api/v1/logs/{id}");
        let deadline = Instant::now() + RECORD_DEADLINE;
        loop {
            let reply = self.admin_get(&path, token).await;
            match reply.status {
                200 => return reply.json(),
                404 if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                status => panic!("GET {path}: {status} {}", reply.body),
            }
        }
    }
}
