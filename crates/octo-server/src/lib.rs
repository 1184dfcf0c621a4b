//! # octo-server
//!
//! The library behind the `octollm-server` binary: the YAML [`config`] schema and loader, the
//! [`gateway`] builder that turns a config into engines and routes, and [`run`], which serves it.
//! Embedders who want YAML-driven routing inside their own process can call these directly, and
//! [`embed`] runs the whole server (request log, control plane, admin panel) with a stop handle;
//! the binary and [`embed`] both start and stop through [`startup`].

pub mod admin;
pub mod answer_layers;
pub mod backend;
pub mod config;
pub mod control;
pub mod count_tokens;
pub mod demo;
pub mod embed;
pub mod gateway;
pub mod limits;
pub mod model_router;
pub mod models_list;
pub mod ops;
pub mod registry;
pub mod reload;
pub mod startup;
pub mod stored_responses;

use std::future::Future;
use std::net::SocketAddr;

use std::sync::Arc;

use octo_core::http::{ServeConfig, SharedRouter, serve};
use tokio::net::TcpListener;

pub use config::{Config, ConfigError};
pub use gateway::{Gateway, build, build_with};

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
    run_shared(
        SharedRouter::new(gateway.router),
        gateway.serve,
        listen,
        on_bound,
        shutdown,
    )
    .await
}

/// Like [`run`], over a router that may be replaced while serving (see [`reload`]).
///
/// # Errors
/// When the address cannot be bound.
pub async fn run_shared(
    router: Arc<SharedRouter>,
    serve_config: ServeConfig,
    listen: SocketAddr,
    on_bound: impl FnOnce(SocketAddr),
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {listen}: {e}")))?;
    on_bound(listener.local_addr()?);
    serve(listener, router, serve_config, shutdown).await
}
