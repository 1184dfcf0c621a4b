//! # octo-server
//!
//! The library behind the `octollm-server` binary: the YAML [`config`] schema and loader, the
//! [`gateway`] builder that turns a config into engines and routes, and [`run`], which serves it.
//! Embedders who want YAML-driven routing inside their own process can call these directly.

pub mod config;
pub mod demo;
pub mod gateway;
pub mod model_router;

use std::future::Future;
use std::net::SocketAddr;

use octo_core::http::{SharedRouter, serve};
use tokio::net::TcpListener;

pub use config::{Config, ConfigError};
pub use gateway::{Gateway, build};

/// Binds `listen` and serves `gateway` until `shutdown` resolves. `on_bound` is called with the
/// actual address once the socket is bound (useful with port 0).
///
/// # Errors
/// When the address cannot be bound.
pub async fn run(
    gateway: Gateway,
    listen: SocketAddr,
    on_bound: impl FnOnce(SocketAddr),
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {listen}: {e}")))?;
    on_bound(listener.local_addr()?);
    serve(
        listener,
        SharedRouter::new(gateway.router),
        gateway.serve,
        shutdown,
    )
    .await
}
