//! The whole gateway — listener, request log, control plane and admin listener with the web panel
//! — inside another program, with a handle that stops it gracefully.
//!
//! `octollm-server` runs these parts around process signals; an embedder (the desktop tray app,
//! `crates/octo-desktop`) needs the same parts started and stopped on demand, several times in
//! one process, and needs to know the bound addresses. Both go through [`crate::startup`]:
//! [`Embedded::start`] does what the binary does for a config file (minus the file watcher and
//! SIGHUP: the embedder decides when to restart), and [`Embedded::shutdown`] what it does on
//! SIGTERM: stop accepting, let requests in flight finish within the config's drain deadline, then
//! write what the request log still holds.
//!
//! The admin listener (when the config does not turn it off) gets a fresh token each start, never
//! stored, and hands out one-time sign-in links ([`Embedded::login_link`]) so the embedder can open
//! the panel signed in, as `--demo` does.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_yaml_ng::Value as Yaml;

use crate::config::{self, ConfigError};
use crate::control::ControlPlane;
use crate::startup::{AdminToken, Server, ServerOptions, StartError};

/// What to run: a config document and where its state lives.
#[derive(Debug, Clone)]
pub struct EmbedOptions {
    /// The config, already interpolated (see [`config::document`]).
    pub document: Yaml,
    /// The config's name in messages (usually the file's path).
    pub label: String,
    /// Where relative SQLite paths and the sealing key file live.
    pub state_dir: PathBuf,
    /// Overrides the config's `listen` (e.g. `127.0.0.1:0` in tests).
    pub listen: Option<SocketAddr>,
    /// Overrides the config's `admin.listen`.
    pub admin_listen: Option<String>,
}

/// A running gateway; see the [module docs](self). Dropping it without
/// [`shutdown`](Self::shutdown) aborts the listeners (nothing is drained, the request log's queue
/// is not written out): always shut it down.
pub struct Embedded {
    server: Server,
}

impl std::fmt::Debug for Embedded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedded")
            .field("addr", &self.addr())
            .field("admin", &self.admin_addr())
            .finish_non_exhaustive()
    }
}

impl Embedded {
    /// Validates the config, opens the request log, builds the graph, binds the gateway and the
    /// admin listener, and serves them on the current tokio runtime.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the key path: an invalid config, a database that cannot be
    /// opened, an address that cannot be bound.
    pub async fn start(opts: EmbedOptions) -> Result<Embedded, ConfigError> {
        let EmbedOptions {
            document,
            label,
            state_dir,
            listen,
            admin_listen,
        } = opts;
        let mut config = config::from_document(document.clone(), &label)?;
        if let Some(a) = admin_listen {
            let mut admin = config.admin.clone().unwrap_or_default();
            admin.listen = a;
            config.admin = Some(admin);
        }
        let listen = listen.unwrap_or(config.listen);
        let models = config.models.len();
        let options = ServerOptions {
            config,
            document,
            label: label.clone(),
            // No file: the embedder re-reads it on restart (its `${VAR}`s may be its own).
            file: None,
            poll: None,
            state_dir,
            listen,
            admin_token: AdminToken::Always,
        };
        match Server::start(options, |_| Ok(())).await {
            Ok(server) => {
                tracing::info!(addr = %server.addr(), models, "serving");
                Ok(Embedded { server })
            }
            Err(StartError::Config(e)) => Err(e),
            Err(StartError::Listen { addr, error }) => Err(ConfigError::one(
                &label,
                "listen",
                format!("cannot listen on {addr}: {error}; choose a free address"),
            )),
        }
    }

    /// The gateway's address (the port actually bound).
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// The admin listener's address (web panel, admin API, `/metrics`), when it runs.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.server.admin_addr()
    }

    /// This run's admin token (for `Authorization: Bearer`), when the admin listener runs.
    pub fn admin_token(&self) -> Option<&str> {
        self.server.admin_token()
    }

    /// A URL that signs `user` in to the web panel once (valid for `ttl`), then opens the panel.
    ///
    /// # Errors
    /// When the admin listener does not run, or no random token can be made.
    pub fn login_link(&self, user: &str, ttl: Duration) -> Result<String, String> {
        self.server.login_link(user, ttl)
    }

    /// The control plane (config in force, admin API objects).
    pub fn control(&self) -> &Arc<ControlPlane> {
        self.server.control()
    }

    /// The request log and statistics, when storage is on.
    pub fn store(&self) -> Option<octo_store::Store> {
        self.server.store()
    }

    /// Stops accepting, lets requests in flight finish within the config's drain deadline
    /// (`limits.drain_timeout`), then writes what the request log still holds and closes it.
    ///
    /// # Errors
    /// When the listener failed while serving.
    pub async fn shutdown(self) -> std::io::Result<()> {
        self.server.shutdown().await
    }
}
