//! A stand-in OpenTelemetry collector for the operations-on gateway: an HTTP/1.1 server on its
//! own thread that answers `200 {}` to every request (OTLP/HTTP's `POST /v1/traces` included)
//! and counts what it received, so the gateway's trace exporter runs its whole path — batching,
//! encoding, sending — without a real collector.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// A running sink; stops when dropped.
pub struct OtlpSink {
    /// Where it listens (`http://ADDR` is the OTLP endpoint).
    pub addr: SocketAddr,
    requests: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
    stop: Option<oneshot::Sender<()>>,
}

impl OtlpSink {
    /// Binds a loopback port and serves on a new thread (single-threaded Tokio runtime).
    ///
    /// # Errors
    /// When the port cannot be bound or the runtime cannot start.
    pub fn start() -> std::io::Result<OtlpSink> {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let requests = Arc::new(AtomicU64::new(0));
        let bytes = Arc::new(AtomicU64::new(0));
        let (stop, stopped) = oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (r, b) = (requests.clone(), bytes.clone());
        std::thread::Builder::new()
            .name("otlp-sink".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = TcpListener::from_std(std_listener) else {
                        return;
                    };
                    tokio::select! {
                        () = serve(listener, r, b) => {}
                        _ = stopped => {}
                    }
                });
            })?;
        Ok(OtlpSink {
            addr,
            requests,
            bytes,
            stop: Some(stop),
        })
    }

    /// The OTLP/HTTP endpoint to configure (`telemetry.otlp_endpoint`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests received so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Request body bytes received so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

impl Drop for OtlpSink {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn serve(listener: TcpListener, requests: Arc<AtomicU64>, bytes: Arc<AtomicU64>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (requests, bytes) = (requests.clone(), bytes.clone());
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let (requests, bytes) = (requests.clone(), bytes.clone());
            async move {
                let body = req.into_body().collect().await.map(|b| b.to_bytes());
                requests.fetch_add(1, Ordering::Relaxed);
                if let Ok(body) = body {
                    bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                }
                let mut resp = Response::new(Full::new(Bytes::from_static(b"{}")));
                resp.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                Ok::<_, Infallible>(resp)
            }
        });
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{Conn, RequestSpec};

    #[test]
    fn answers_200_and_counts() {
        let sink = OtlpSink::start().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (status, body) = rt.block_on(async {
            let mut c = Conn::connect(sink.addr).await.unwrap();
            c.send(&RequestSpec::post("/v1/traces", "abcd"))
                .await
                .unwrap()
        });
        assert_eq!(status, 200);
        assert_eq!(&body[..], b"{}");
        assert_eq!(sink.requests(), 1);
        assert_eq!(sink.bytes(), 4);
    }
}
