//! The load generator's HTTP client: one keep-alive HTTP/1.1 connection per worker, built directly
//! on `hyper::client::conn::http1` (no pool, no per-request allocation beyond hyper's own), with
//! `TCP_NODELAY`. Every target — the mock, the floor, the gateway — is measured through it.
//! [`H2Conn`] is the HTTP/2 (h2c, prior knowledge) counterpart, many streams over one connection,
//! used by the many-open-streams memory measurement.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

/// A boxed error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One request to send again and again.
#[derive(Debug, Clone)]
pub struct RequestSpec {
    /// Path (and query) on the target.
    pub path: String,
    /// The body.
    pub body: Bytes,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
}

impl RequestSpec {
    /// A JSON `POST` of `body` to `path`.
    pub fn post(path: impl Into<String>, body: impl Into<Bytes>) -> Self {
        RequestSpec {
            path: path.into(),
            body: body.into(),
            headers: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

/// When each event of a streamed response arrived.
#[derive(Debug, Clone)]
pub struct StreamTiming {
    /// HTTP status.
    pub status: StatusCode,
    /// From sending the request to the first body byte.
    pub first_byte: Duration,
    /// Arrival time of each complete SSE event (`\n\n`-terminated), from sending the request.
    pub events: Vec<Duration>,
}

/// A keep-alive HTTP/1.1 connection to one target.
pub struct Conn {
    addr: SocketAddr,
    host: HeaderValue,
    send: SendRequest<Full<Bytes>>,
}

impl Conn {
    /// Connects (with `TCP_NODELAY`) and performs the HTTP/1.1 handshake.
    ///
    /// # Errors
    /// When the connection cannot be made.
    pub async fn connect(addr: SocketAddr) -> Result<Conn, BoxError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn {
            addr,
            host: HeaderValue::from_str(&addr.to_string())?,
            send,
        })
    }

    /// Reconnects when the connection was closed.
    async fn ready(&mut self) -> Result<(), BoxError> {
        if self.send.is_closed() || self.send.ready().await.is_err() {
            *self = Conn::connect(self.addr).await?;
        }
        Ok(())
    }

    fn build(&self, spec: &RequestSpec) -> Result<Request<Full<Bytes>>, BoxError> {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(spec.path.as_str())
            .header(header::HOST, self.host.clone())
            .header(header::CONTENT_TYPE, "application/json");
        for (k, v) in &spec.headers {
            req = req.header(*k, v.as_str());
        }
        Ok(req.body(Full::new(spec.body.clone()))?)
    }

    /// Sends `spec` and reads the whole response; returns the status and body.
    ///
    /// # Errors
    /// When the connection fails or the body cannot be read.
    pub async fn send(&mut self, spec: &RequestSpec) -> Result<(StatusCode, Bytes), BoxError> {
        self.ready().await?;
        let req = self.build(spec)?;
        let resp = self.send.send_request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    /// Sends `spec` and times the streamed response event by event (bounded by `timeout`).
    ///
    /// # Errors
    /// When the connection fails, the body cannot be read or `timeout` passes.
    pub async fn stream(
        &mut self,
        spec: &RequestSpec,
        timeout: Duration,
    ) -> Result<StreamTiming, BoxError> {
        self.ready().await?;
        let req = self.build(spec)?;
        let start = Instant::now();
        let deadline = tokio::time::Instant::from_std(start + timeout);
        let run = async {
            let resp = self.send.send_request(req).await?;
            let status = resp.status();
            let mut body = resp.into_body();
            let mut first_byte = None;
            let mut events = Vec::with_capacity(80);
            // The last byte of the previous chunk, to find `\n\n` split across chunks.
            let mut last = 0u8;
            while let Some(frame) = body.frame().await {
                let now = start.elapsed();
                let Ok(data) = frame?.into_data() else {
                    continue;
                };
                if data.is_empty() {
                    continue;
                }
                first_byte.get_or_insert(now);
                let mut prev = last;
                for &b in data.iter() {
                    if b == b'\n' && prev == b'\n' {
                        events.push(now);
                    }
                    prev = b;
                }
                last = prev;
            }
            Ok::<_, BoxError>(StreamTiming {
                status,
                first_byte: first_byte.unwrap_or_else(|| start.elapsed()),
                events,
            })
        };
        match tokio::time::timeout_at(deadline, run).await {
            Ok(r) => r,
            Err(_) => Err("stream timed out".into()),
        }
    }

    /// Sends `spec` and returns once the response head has arrived, handing back the body so the
    /// caller can keep the stream open (for the many-open-streams memory test).
    ///
    /// # Errors
    /// When the connection fails.
    pub async fn open(
        &mut self,
        spec: &RequestSpec,
    ) -> Result<(StatusCode, hyper::body::Incoming), BoxError> {
        self.ready().await?;
        let req = self.build(spec)?;
        let resp = self.send.send_request(req).await?;
        let status = resp.status();
        Ok((status, resp.into_body()))
    }
}

/// An HTTP/2 connection without TLS (h2c, prior knowledge) to one target; clones share it, each
/// request is a stream on it.
#[derive(Clone)]
pub struct H2Conn {
    host: HeaderValue,
    send: hyper::client::conn::http2::SendRequest<Full<Bytes>>,
}

impl H2Conn {
    /// Connects (with `TCP_NODELAY`) and performs the HTTP/2 handshake.
    ///
    /// # Errors
    /// When the connection cannot be made.
    pub async fn connect(addr: SocketAddr) -> Result<H2Conn, BoxError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(H2Conn {
            host: HeaderValue::from_str(&addr.to_string())?,
            send,
        })
    }

    /// Sends `spec` on a new stream and returns once the response head has arrived, handing back
    /// the body (see [`Conn::open`]).
    ///
    /// # Errors
    /// When the connection or the stream fails.
    pub async fn open(
        &self,
        spec: &RequestSpec,
    ) -> Result<(StatusCode, hyper::body::Incoming), BoxError> {
        let mut send = self.send.clone();
        send.ready().await?;
        // HTTP/2 carries the authority in the URI (`:authority`), not in a `host` header.
        let uri = format!("http://{}{}", self.host.to_str()?, spec.path);
        let mut req = Request::builder()
            .method(Method::POST)
            .version(http::Version::HTTP_2)
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/json");
        for (k, v) in &spec.headers {
            req = req.header(*k, v.as_str());
        }
        let resp = send
            .send_request(req.body(Full::new(spec.body.clone()))?)
            .await?;
        let status = resp.status();
        Ok((status, resp.into_body()))
    }
}

/// A `GET` on a fresh connection; returns the status and body (for probes and `/debug/overhead`).
///
/// # Errors
/// When the connection fails or `timeout` passes.
pub async fn get(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<(StatusCode, Bytes), BoxError> {
    let run = async {
        let mut conn = Conn::connect(addr).await?;
        let req = Request::builder()
            .method(Method::GET)
            .uri(path)
            .header(header::HOST, conn.host.clone())
            .body(Full::new(Bytes::new()))?;
        let resp = conn.send.send_request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok::<_, BoxError>((status, body))
    };
    tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| BoxError::from("timed out"))?
}
