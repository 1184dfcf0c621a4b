//! The accept loop: hyper 1.x with hyper-util's auto builder, graceful shutdown and a drain deadline.
//!
//! Every accepted socket gets `TCP_NODELAY` (token streams are many small writes) and is served over
//! HTTP/1.1 or cleartext HTTP/2, whichever the client speaks. HTTP/1 connections must send their
//! headers within [`ServeConfig::header_read_timeout`]. On shutdown the listener closes, in-flight
//! requests finish, and whatever is still running after [`ServeConfig::drain_timeout`] is dropped.
//! The router is read through a [`SharedRouter`] per request, so a new one can be swapped in while
//! serving (config reload) without touching requests already in flight.

use std::future::Future;
use std::io;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use super::router::Router;

/// Server-level limits and timeouts.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// How long an HTTP/1 client may take to send its request head.
    pub header_read_timeout: Duration,
    /// How long in-flight requests may run after shutdown begins.
    pub drain_timeout: Duration,
    /// The largest request head (HTTP/1 read buffer; HTTP/2 header list), in bytes.
    pub max_header_bytes: usize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            header_read_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(30),
            max_header_bytes: 64 * 1024,
        }
    }
}

/// A router that can be replaced while the server runs.
#[derive(Debug)]
pub struct SharedRouter {
    current: RwLock<Arc<Router>>,
}

impl SharedRouter {
    /// Wraps the initial router.
    pub fn new(router: Router) -> Arc<Self> {
        Arc::new(SharedRouter {
            current: RwLock::new(Arc::new(router)),
        })
    }

    /// The router new requests use.
    pub fn load(&self) -> Arc<Router> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Swaps in a new router; requests already running keep the old one.
    pub fn store(&self, router: Router) {
        let new = Arc::new(router);
        match self.current.write() {
            Ok(mut guard) => *guard = new,
            Err(poisoned) => *poisoned.into_inner() = new,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then drains.
///
/// # Errors
/// Only if the listener itself fails in a way that is not a per-connection error.
pub async fn serve(
    listener: TcpListener,
    router: Arc<SharedRouter>,
    config: ServeConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_buf_size(config.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    tracing::error!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        let router = router.clone();
        let service = service_fn(move |req| {
            let router = router.load();
            // Boxed: hyper keeps a request's service future inside the HTTP/2 stream's task (or
            // the HTTP/1.1 connection's dispatcher) for as long as the response body streams.
            // Inline, the whole handler state machine (about 1.7 KiB) stayed allocated per open
            // stream; boxed, only a pointer does, and the handler's memory is freed as soon as
            // the response head is ready.
            Box::pin(async move {
                Ok::<_, std::convert::Infallible>(router.handle(req, Some(peer)).await)
            })
        });
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!("shutting down: draining in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("drained"),
        () = tokio::time::sleep(config.drain_timeout) => {
            tracing::warn!(timeout = ?config.drain_timeout, "drain deadline passed; dropping remaining connections");
        }
    }
    Ok(())
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Resolves on SIGINT (Ctrl-C) or, on Unix, SIGTERM.
///
/// On Unix the handlers are installed when this function is called, not when the future is
/// first polled: call it before announcing that the server listens, so that a signal sent right
/// after the announcement drains the server instead of killing the process the default way.
/// Must be called from within a Tokio runtime.
///
/// ```no_run
/// # async fn run() {
/// let stop = octo_core::http::shutdown_signal();
/// println!("listening"); // a SIGTERM from here on is caught
/// stop.await;
/// # }
/// ```
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt()).ok();
        let terminate = signal(SignalKind::terminate()).ok();
        async move {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(interrupt) => {},
                () = wait(terminate) => {},
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
