//! The HTTP client under [`HttpEndpoint`](super::HttpEndpoint): hyper-util's pooled client for
//! plain `http://` upstreams, reqwest for the rest.
//!
//! Why two. reqwest is the right tool for the public providers: TLS with the platform's
//! certificate verifier, HTTP/2 by ALPN, proxies from the environment. But it wraps hyper-util's
//! pooled client in layers a gateway does not use (redirect and retry services, URL parsing twice
//! more per request, proxy matching, a header-map clone) that cost about 27% of the gateway's
//! instructions per request (`docs/performance.md`). Upstreams reached over plain `http://` —
//! local models, sidecars, other gateways, the benchmark's mock — are where that overhead is a
//! visible share of the request, so they get hyper-util's client directly. TLS upstreams stay on
//! reqwest: their round trip is tens to hundreds of milliseconds, so the saving is invisible there,
//! while duplicating reqwest's TLS set-up (root store, verifier, ALPN) would be a second place for
//! certificate behaviour to diverge.
//!
//! What the hyper-util transport keeps identical to the reqwest one:
//! - **Timeouts.** `connect` bounds name resolution *and* the TCP connect together (reqwest's
//!   connect timeout wraps its whole connector the same way), so a DNS server that never answers
//!   ends in `connect` time; it is also handed to the connector, which divides it across the
//!   addresses a name resolves to. `first_byte`, `idle` and `total` are the endpoint's own, the
//!   same for both.
//! - **Sockets.** `TCP_NODELAY`, TCP keep-alive 15 s / 15 s / 3 probes, `TCP_USER_TIMEOUT` 30 s,
//!   idle pooled connections closed after 90 s: reqwest's defaults.
//! - **HTTP/2.** With `http_version: h2c`, HTTP/2 by prior knowledge with the same 256 KiB stream /
//!   1 GiB connection windows.
//! - **Redirects** are never followed (reqwest is configured with `Policy::none()`), and nothing
//!   is retried beyond hyper-util's own resend of a request that never left on a pooled connection
//!   the server had just closed (reqwest has the same below its layers).
//! - **Basic auth** from `user:password@` in the base URL: an `Authorization: Basic` header unless
//!   the request already carries an `Authorization` (the backend's key), as reqwest's builder does;
//!   the credentials never appear in the request target or `Host`.
//! - **`User-Agent`** `octollm/VERSION`.
//!
//! **Proxies.** reqwest sends a request through `HTTP_PROXY` / `ALL_PROXY` unless `NO_PROXY` names
//! the host. The hyper-util transport connects directly, so `transport: auto` asks the very matcher
//! reqwest uses (hyper-util's `Matcher::from_system`, the same environment variables read the same
//! way, once at start) and chooses reqwest whenever a proxy applies to the backend's base URL.
//! `transport: hyper` forces the direct connection (a proxy from the environment is then ignored,
//! and a warning says so at start).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Uri};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::GaiResolver;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

/// Which HTTP client an endpoint uses (`backends.X.transport`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Transport {
    /// hyper-util's client for `http://` upstreams that no proxy from the environment applies
    /// to, reqwest otherwise.
    #[default]
    Auto,
    /// hyper-util's client, always (only for `http://` upstreams; proxies are not used).
    Hyper,
    /// reqwest, always.
    Reqwest,
}

impl Transport {
    /// The name used in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Auto => "auto",
            Transport::Hyper => "hyper",
            Transport::Reqwest => "reqwest",
        }
    }
}

/// What `choice` means for an upstream at `base` with the environment's proxy settings `proxies`:
/// `Ok(true)` for the hyper-util transport, `Ok(false)` for reqwest, `Err` when `hyper` was asked
/// for a TLS upstream.
pub(crate) fn use_hyper(choice: Transport, base: &Uri, proxies: &Matcher) -> Result<bool, String> {
    let plain = base.scheme_str() == Some("http");
    match choice {
        Transport::Reqwest => Ok(false),
        Transport::Hyper if !plain => Err(
            "`transport: hyper` serves plain http:// upstreams only; https:// upstreams use reqwest (`auto`)".into(),
        ),
        Transport::Hyper => {
            if proxies.intercept(base).is_some() {
                tracing::warn!(
                    base_url = %redact_userinfo(base),
                    "`transport: hyper` connects directly: the proxy the environment names for this upstream (HTTP_PROXY / ALL_PROXY) is not used; `auto` or `reqwest` would use it"
                );
            }
            Ok(true)
        }
        Transport::Auto => Ok(plain && proxies.intercept(base).is_none()),
    }
}

/// The environment's proxy settings, read the way reqwest reads them.
pub(crate) fn env_proxies() -> Matcher {
    Matcher::from_system()
}

/// `uri` without `user:password@`, for a log line.
fn redact_userinfo(uri: &Uri) -> String {
    format!(
        "{}://{}{}",
        uri.scheme_str().unwrap_or("http"),
        uri.host().unwrap_or(""),
        uri.port().map(|p| format!(":{p}")).unwrap_or_default()
    )
}

/// How many streams the gateway cancelled an HTTP/2 upstream connection remembers (for h2's
/// 1 s), so that frames still in flight for them are dropped without a reset each. A remembered
/// stream is one slab entry (a few hundred bytes).
const H2_REMEMBERED_RESETS: usize = 10_000;

/// hyper-util's pooled client over a connector whose whole connect (DNS included) is bounded.
pub(crate) type HyperClient = Client<TimedConnector, Full<Bytes>>;

/// Builds the pooled client. `h2c`: HTTP/2 by prior knowledge, every request a stream on one
/// connection.
pub(crate) fn hyper_client(
    connect: Duration,
    h2c: bool,
    stream_window: u32,
    connection_window: u32,
) -> HyperClient {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect));
    http.set_keepalive(Some(Duration::from_secs(15)));
    http.set_keepalive_interval(Some(Duration::from_secs(15)));
    http.set_keepalive_retries(Some(3));
    #[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
    http.set_tcp_user_timeout(Some(Duration::from_secs(30)));
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .http2_initial_stream_window_size(stream_window)
        .http2_initial_connection_window_size(connection_window)
        // A client that leaves mid-stream makes the gateway cancel its upstream stream; DATA the
        // upstream had already sent for it still arrives. h2 remembers only 50 cancelled streams
        // (for 1 s): a frame for any other one is answered with RST_STREAM(STREAM_CLOSED), and
        // each such reset counts toward a per-connection limit (1,024 by default, never reset)
        // after which h2 closes the whole connection with GOAWAY(ENHANCE_YOUR_CALM) — breaking
        // every other stream on it ("broke off the response"). That limit guards a server against
        // an abusive client; here the peer is the operator's upstream and the resets are ours, so
        // it is lifted, and cancelled streams are remembered in bulk so late frames are dropped
        // quietly. `docs/performance.md`, "Many open streams".
        .http2_max_concurrent_reset_streams(H2_REMEMBERED_RESETS)
        .http2_max_local_error_reset_streams(None);
    if h2c {
        builder.http2_only(true);
    }
    builder.build(TimedConnector {
        inner: http,
        timeout: connect,
    })
}

/// The connect deadline passed (name resolution and TCP connect together). Its text is reqwest's
/// for the same case.
#[derive(Debug)]
pub(crate) struct ConnectTimeout;

impl std::fmt::Display for ConnectTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("operation timed out")
    }
}

impl std::error::Error for ConnectTimeout {}

/// hyper-util's [`HttpConnector`] with one deadline over resolution and connect: its own connect
/// timeout starts after the name is resolved, and its resolver (`getaddrinfo` on a blocking
/// thread) has none.
#[derive(Clone)]
pub(crate) struct TimedConnector<R = GaiResolver> {
    inner: HttpConnector<R>,
    timeout: Duration,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<R> tower_service::Service<Uri> for TimedConnector<R>
where
    HttpConnector<R>: tower_service::Service<Uri, Response = TokioIo<TcpStream>>,
    <HttpConnector<R> as tower_service::Service<Uri>>::Error: Into<BoxError>,
    <HttpConnector<R> as tower_service::Service<Uri>>::Future: Send + 'static,
{
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let connecting = self.inner.call(dst);
        let timeout = self.timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, connecting).await {
                Ok(done) => done.map_err(Into::into),
                Err(_) => Err(Box::new(ConnectTimeout) as BoxError),
            }
        })
    }
}

/// The `Authorization: Basic` header for the `user:password@` of `url` (percent-decoded, as
/// reqwest does), if it has one.
pub(crate) fn basic_auth(url: &reqwest::Url) -> Option<HeaderValue> {
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    use base64::Engine as _;
    let user = percent_decode(url.username());
    let password = url.password().map(percent_decode).unwrap_or_default();
    let mut plain = user;
    plain.push(b':');
    plain.extend_from_slice(&password);
    let encoded = base64::engine::general_purpose::STANDARD.encode(plain);
    let mut value = HeaderValue::try_from(format!("Basic {encoded}")).ok()?;
    value.set_sensitive(true);
    Some(value)
}

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(hex) = b.get(i + 1..i + 3)
            && let Ok(hex) = std::str::from_utf8(hex)
            && let Ok(v) = u8::from_str_radix(hex, 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// The request target of `url` for the hyper-util client: scheme, host, port, path and query,
/// without `user:password@` (which would otherwise reach an HTTP/2 `:authority`).
pub(crate) fn uri_of(url: &reqwest::Url) -> Option<Uri> {
    let host = url.host_str()?;
    let mut s = String::with_capacity(url.as_str().len());
    s.push_str(url.scheme());
    s.push_str("://");
    s.push_str(host);
    if let Some(port) = url.port() {
        s.push(':');
        s.push_str(&port.to_string());
    }
    s.push_str(url.path());
    if let Some(q) = url.query() {
        s.push('?');
        s.push_str(q);
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(s: &str) -> Uri {
        s.parse().unwrap()
    }

    #[test]
    fn auto_picks_hyper_for_plain_http_without_a_proxy() {
        let none = Matcher::builder().build();
        assert_eq!(
            use_hyper(Transport::Auto, &uri("http://127.0.0.1:8000"), &none),
            Ok(true)
        );
        assert_eq!(
            use_hyper(Transport::Auto, &uri("https://api.openai.com"), &none),
            Ok(false)
        );
        assert_eq!(
            use_hyper(Transport::Reqwest, &uri("http://127.0.0.1:8000"), &none),
            Ok(false)
        );
        assert!(use_hyper(Transport::Hyper, &uri("https://api.openai.com"), &none).is_err());
    }

    #[test]
    fn auto_picks_reqwest_when_a_proxy_applies() {
        let proxy = Matcher::builder()
            .http("http://proxy.internal:3128")
            .no("localhost, .svc.cluster.local, 10.0.0.0/8")
            .build();
        let hyper = |base: &str| use_hyper(Transport::Auto, &uri(base), &proxy).unwrap();
        assert!(!hyper("http://vllm.example:8000"), "proxied: reqwest");
        assert!(hyper("http://localhost:8000"), "NO_PROXY names it");
        assert!(hyper("http://vllm.ml.svc.cluster.local:8000"));
        assert!(hyper("http://10.1.2.3:8000"));
        // Forced: direct, proxy ignored.
        assert_eq!(
            use_hyper(Transport::Hyper, &uri("http://vllm.example:8000"), &proxy),
            Ok(true)
        );
    }

    /// A resolver whose answer never comes (a DNS server that does not answer).
    #[derive(Clone)]
    struct Silent;

    impl tower_service::Service<hyper_util::client::legacy::connect::dns::Name> for Silent {
        type Response = std::vec::IntoIter<std::net::SocketAddr>;
        type Error = std::io::Error;
        type Future = std::future::Pending<Result<Self::Response, Self::Error>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: hyper_util::client::legacy::connect::dns::Name) -> Self::Future {
            std::future::pending()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_connect_deadline_covers_name_resolution() {
        use tower_service::Service as _;
        let mut connector = TimedConnector {
            inner: HttpConnector::new_with_resolver(Silent),
            timeout: Duration::from_secs(5),
        };
        let start = tokio::time::Instant::now();
        let e = connector
            .call(uri("http://never.resolves.example:80"))
            .await
            .err()
            .unwrap();
        assert!(e.is::<ConnectTimeout>(), "{e}");
        assert_eq!(start.elapsed(), Duration::from_secs(5));
    }

    /// A bare HTTP/2 server on one connection (frames by hand, so it can do what hyper's server
    /// never does: send DATA on streams the client has already cancelled, as frames in flight
    /// would). It answers the first `n` requests with a head and no end, waits until the client
    /// has reset all `n`, sends one DATA frame on each, then a PING, and reports whether the
    /// PING's ACK came back before any GOAWAY.
    async fn late_data_server(listener: tokio::net::TcpListener, n: usize) -> Result<(), String> {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
            let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
            let mut f = vec![len[1], len[2], len[3], kind, flags];
            f.extend_from_slice(&stream.to_be_bytes());
            f.extend_from_slice(payload);
            f
        }
        const DATA: u8 = 0;
        const HEADERS: u8 = 1;
        const RST_STREAM: u8 = 3;
        const SETTINGS: u8 = 4;
        const PING: u8 = 6;
        const GOAWAY: u8 = 7;
        let (mut sock, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let mut preface = [0u8; 24];
        sock.read_exact(&mut preface)
            .await
            .map_err(|e| e.to_string())?;
        // SETTINGS_MAX_CONCURRENT_STREAMS = n + 1.
        let mut settings = vec![0, 3];
        settings.extend_from_slice(&u32::try_from(n + 1).unwrap().to_be_bytes());
        sock.write_all(&frame(SETTINGS, 0, 0, &settings))
            .await
            .map_err(|e| e.to_string())?;
        let (mut streams, mut resets) = (Vec::new(), 0);
        loop {
            let mut head = [0u8; 9];
            sock.read_exact(&mut head)
                .await
                .map_err(|e| format!("connection ended: {e}"))?;
            let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
            let (kind, flags) = (head[3], head[4]);
            let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
            let mut payload = vec![0u8; len];
            sock.read_exact(&mut payload)
                .await
                .map_err(|e| e.to_string())?;
            let mut out = Vec::new();
            match kind {
                SETTINGS if flags & 1 == 0 => out = frame(SETTINGS, 1, 0, &[]),
                // `:status: 200` (HPACK static index 8), END_HEADERS, the body left open.
                HEADERS if streams.len() < n => {
                    streams.push(stream);
                    out = frame(HEADERS, 4, stream, &[0x88]);
                }
                RST_STREAM => {
                    resets += 1;
                    if resets == n {
                        for &s in &streams {
                            out.extend(frame(DATA, 0, s, b"data: {}\n\n"));
                        }
                        out.extend(frame(PING, 0, 0, b"late-dat"));
                    }
                }
                PING if flags & 1 == 1 => return Ok(()),
                GOAWAY => {
                    return Err(format!(
                        "the client closed the connection: GOAWAY {:?}",
                        String::from_utf8_lossy(payload.get(8..).unwrap_or_default())
                    ));
                }
                _ => {}
            }
            if !out.is_empty() {
                sock.write_all(&out).await.map_err(|e| e.to_string())?;
            }
        }
    }

    /// Clients that leave mid-stream make the gateway cancel upstream streams whose DATA is
    /// already on its way. With h2's defaults, more than 1,024 such late frames on a connection
    /// (beyond the 50 cancelled streams it remembers) close the whole connection with
    /// GOAWAY(ENHANCE_YOUR_CALM), breaking every other stream on it.
    #[tokio::test]
    async fn late_frames_for_cancelled_h2_streams_do_not_close_the_connection() {
        let n = 1_200;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(late_data_server(listener, n));
        let client = hyper_client(Duration::from_secs(5), true, 256 * 1024, 1 << 30);
        let requests = (0..n).map(|_| {
            let req = http::Request::get(format!("http://{addr}/v1/chat/completions"))
                .body(Full::new(Bytes::new()))
                .unwrap();
            client.request(req)
        });
        let responses = futures::future::join_all(requests).await;
        for r in &responses {
            assert_eq!(r.as_ref().unwrap().status(), 200);
        }
        // The clients leave: every upstream body is dropped, every stream cancelled.
        drop(responses);
        let verdict = tokio::time::timeout(Duration::from_secs(60), server)
            .await
            .expect("the server saw neither the PING's ACK nor a GOAWAY")
            .unwrap();
        assert_eq!(verdict, Ok(()));
    }

    #[test]
    fn basic_auth_from_the_url_is_decoded_and_sensitive() {
        let url = reqwest::Url::parse("http://us%40er:p%3Ass@h:1/v1").unwrap();
        let v = basic_auth(&url).unwrap();
        assert!(v.is_sensitive());
        use base64::Engine as _;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(&v.as_bytes()[6..])
            .unwrap();
        assert_eq!(decoded, b"us@er:p:ss");
        assert!(basic_auth(&reqwest::Url::parse("http://h:1/").unwrap()).is_none());
        let user_only = basic_auth(&reqwest::Url::parse("http://u@h/").unwrap()).unwrap();
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(&user_only.as_bytes()[6..])
                .unwrap(),
            b"u:"
        );
    }

    #[test]
    fn request_targets_drop_credentials() {
        let url = reqwest::Url::parse("http://u:p@h:1/v1beta/models/a%2Fb:x?alt=sse").unwrap();
        assert_eq!(
            uri_of(&url).unwrap().to_string(),
            "http://h:1/v1beta/models/a%2Fb:x?alt=sse"
        );
        let v6 = reqwest::Url::parse("http://[::1]:8080/v1/messages").unwrap();
        assert_eq!(uri_of(&v6).unwrap().host(), Some("[::1]"));
    }
}
