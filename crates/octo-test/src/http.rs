//! Talking HTTP to the servers under test: clients that ignore proxy settings, a JSON `POST` with
//! extra headers, and the answer read whole.

use bytes::Bytes;
use reqwest::header::HeaderMap;
use serde_json::Value;

/// An HTTP/1.1 client that ignores proxy settings from the environment.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// An h2c (HTTP/2 with prior knowledge) client that ignores proxy settings.
pub fn h2_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap()
}

/// A request body [`post`] can send: JSON values and raw text or bytes (which need not be JSON,
/// for tests of refusals).
pub trait IntoBody {
    /// The bytes to send.
    fn into_body(self) -> reqwest::Body;
}

impl IntoBody for &Value {
    fn into_body(self) -> reqwest::Body {
        serde_json::to_vec(self).unwrap().into()
    }
}

impl IntoBody for Value {
    fn into_body(self) -> reqwest::Body {
        (&self).into_body()
    }
}

impl IntoBody for String {
    fn into_body(self) -> reqwest::Body {
        self.into()
    }
}

impl IntoBody for &String {
    fn into_body(self) -> reqwest::Body {
        self.clone().into()
    }
}

impl IntoBody for &'static str {
    fn into_body(self) -> reqwest::Body {
        self.into()
    }
}

impl IntoBody for Vec<u8> {
    fn into_body(self) -> reqwest::Body {
        self.into()
    }
}

impl IntoBody for Bytes {
    fn into_body(self) -> reqwest::Body {
        self.into()
    }
}

/// POSTs `body` to `url` as `application/json`, with extra headers; panics if the request cannot
/// be sent.
pub async fn post(
    client: &reqwest::Client,
    url: &str,
    body: impl IntoBody,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = client
        .post(url)
        .header("content-type", "application/json")
        .body(body.into_body());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"))
}

/// Reads the whole body as UTF-8.
pub async fn text(response: reqwest::Response) -> String {
    String::from_utf8(response.bytes().await.unwrap().to_vec()).expect("a UTF-8 body")
}

/// Reads the whole body as JSON; panics with the body if it is not JSON.
pub async fn json(response: reqwest::Response) -> Value {
    let bytes = response.bytes().await.unwrap();
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
}

/// The value of the unlabelled sample `name` in a Prometheus text exposition (`GET /metrics`);
/// panics, showing the page, when it is missing or not a number.
///
/// ```
/// let page = "# TYPE octollm_up gauge\noctollm_up 1\n";
/// assert_eq!(octo_test::http::metric_sample(page, "octollm_up"), 1.0);
/// ```
pub fn metric_sample(page: &str, name: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{page}"))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{name} in /metrics is not a number ({e}):\n{page}"))
}

/// A JSON answer read whole: status, headers and body.
#[derive(Debug)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The response headers.
    pub headers: HeaderMap,
    /// The body, parsed as JSON.
    pub json: Value,
}

impl Reply {
    /// Reads `response` to the end; panics with the body if it is not JSON.
    pub async fn read(response: reqwest::Response) -> Reply {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        Reply {
            status,
            headers,
            json: json(response).await,
        }
    }

    /// The header `name` as text, if present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `(status, headers, json)`, for destructuring.
    pub fn into_parts(self) -> (u16, HeaderMap, Value) {
        (self.status, self.headers, self.json)
    }
}
