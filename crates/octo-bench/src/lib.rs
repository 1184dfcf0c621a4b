//! # octo-bench
//!
//! OctoLLM's end-to-end load harness. The `octo-loadtest` binary starts the mock upstream
//! (`octo-mock`), the floor (`octo-floor`, a bare hyper reverse proxy) and the gateway
//! (`octollm-server`) as separate processes, optionally pinned to CPUs, measures all three the same
//! way with its own keep-alive HTTP/1.1 client, prints a table and writes JSON. See
//! `docs/performance.md` for the method and the one command that runs it.
//!
//! - [`client`]: one hyper HTTP/1.1 connection per worker.
//! - [`scenario`]: closed loop, open loop, paced streams, many open streams.
//! - [`procs`]: spawning, pinning, `/proc` readings.
//! - [`stats`]: samples and percentiles.
//! - [`payload`]: request bodies of a given size.
//! - [`otlp_sink`]: a stand-in OTLP/HTTP collector for the operations-on gateway.

pub mod client;
pub mod otlp_sink;
pub mod payload;
pub mod procs;
pub mod scenario;
pub mod stats;
