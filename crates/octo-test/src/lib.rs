//! Test support for OctoLLM, shared by every test, bench and example in the workspace, in the spirit
//! of `tower-test`: one place that knows how to start the pieces a test needs and how to talk to
//! them, so each test file holds only its scenario and assertions.
//!
//! - [`upstream`]: the mock upstream ([`mock`]) and an in-process upstream serving any engine
//!   ([`Upstream`]), both on ephemeral loopback ports.
//! - [`gateway`]: the real `octollm-server` binary on an ephemeral port with a YAML config
//!   ([`Gateway`]), and the standard config with one backend per protocol ([`config`]).
//! - [`request`]: a minimal valid request for each protocol ([`Prompt`]), as a path and body for
//!   HTTP or as an [`octo_core::Request`] for engines.
//! - [`fault`]: a raw-TCP upstream for byte-level faults ([`FaultServer`]).
//! - [`process`]: a process's memory and open files, and waiting until they are back at a
//!   baseline.
//! - [`relay`]: a TCP relay in front of a service that can be made to stall ([`Relay`]), for the
//!   "slow database / slow Redis" faults.
//! - [`http`]: a reqwest client without proxies, a JSON `POST` and the answer read whole
//!   ([`Reply`]).
//! - [`admin`]: calls on a gateway's admin listener ([`Gateway::admin`], [`AdminReply`]), a
//!   `/metrics` sample and a request-log record once it is written.
//! - [`temp`]: a temp directory of a test's own, removed on drop ([`TempDir`]), for a gateway's
//!   SQLite request log.
//! - [`sse`]: server-sent event bodies split into events, strictly ([`parse_sse`]) or as the
//!   gateway's own parser reads them ([`events`]).
//!
//! The crate is not published; the workspace's crates take it as a dev-dependency. Its helpers
//! panic with a message naming what failed, which is what a test wants.

pub mod admin;
pub mod fault;
pub mod gateway;
pub mod http;
pub mod process;
pub mod relay;
pub mod request;
pub mod service;
pub mod sse;
pub mod temp;
pub mod upstream;

pub use admin::{AdminCall, AdminReply};
pub use fault::{Fault, FaultServer};
pub use gateway::{Gateway, PROTOCOLS, config, start_fails};
pub use http::{Reply, client, h2_client, post};
pub use relay::Relay;
pub use request::{Prompt, body_for, path_for, request_with_body};
pub use sse::{Sse, events, parse_sse};
pub use temp::TempDir;
pub use upstream::{Upstream, closed_port_url, mock, mock_with};
