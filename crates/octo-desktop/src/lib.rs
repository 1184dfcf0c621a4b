//! # octo-desktop
//!
//! The library behind `octollm-desktop`, the tray app: everything but the pixels, so that it is
//! tested without a display.
//!
//! - [`paths`]: where the app's config and database live (the platform's data directory), and
//!   the starter config written on first run (the in-process mock upstream, so the gateway runs
//!   before any key is entered).
//! - [`gateway`]: the in-process gateway's lifecycle — start, stop with a graceful drain,
//!   restart, and its status (running, stopped, or failing with the config's error text) — and
//!   today's requests and cost for the status line.
//! - [`logs`]: the gateway's log lines as a live stream (a broadcast of the tracing output) with
//!   a backlog, for the log window.
//! - [`menu`]: the tray menu's model (items, labels, enabled states) computed from the status,
//!   and [`menu::App::dispatch`], which performs a menu action.
//! - [`icon`]: the tray icon for each state, drawn in code (no image files).
//!
//! The binary (`src/main.rs`, cargo feature `gui`) only draws: tray-icon for the tray, tao for
//! the event loop and windows, wry for the web panel and the log view. See `docs/desktop.md`.

pub mod gateway;
pub mod icon;
pub mod logs;
pub mod menu;
pub mod paths;

pub use gateway::{Gateway, Status, Today};
pub use logs::LogHub;
pub use menu::{Action, App, Effect, MenuItem};
pub use paths::Paths;
