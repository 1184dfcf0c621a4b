//! The whole gateway — listener, request log, control plane and admin listener with the web panel
//! — inside another program, with a handle that stops it gracefully.
//!
//! `octollm-server` wires these parts in its `main` around process signals; an embedder (the
//! desktop tray app, `crates/octo-desktop`) needs the same parts started and stopped on demand,
//! several times in one process, and needs to know the bound addresses. [`Embedded::start`] does
//! what the binary does for a config file (minus the file watcher and SIGHUP: the embedder decides
//! when to restart), and [`Embedded::shutdown`] what it does on SIGTERM: stop accepting, let
//! requests in flight finish within the config's drain deadline, then write what the request log
//! still holds.
//!
//! The admin listener (when the config does not turn it off) gets a fresh token each start, never
//! stored, and hands out one-time sign-in links ([`Embedded::login_link`]) so the embedder can open
//! the panel signed in, as `--demo` does.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use octo_core::http::serve;
use serde_yaml_ng::Value as Yaml;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::admin::{self, Tokens, auth::Auth};
use crate::config::{self, ConfigError};
use crate::control::{ControlPlane, Startup};
use crate::ops::Ops;

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
    addr: SocketAddr,
    admin: Option<(SocketAddr, Arc<Auth>, String)>,
    control: Arc<ControlPlane>,
    ops: Arc<Ops>,
    drain: Duration,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
    admin_task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Embedded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedded")
            .field("addr", &self.addr)
            .field("admin", &self.admin_addr())
            .finish_non_exhaustive()
    }
}

/// The message of a start that failed before anything listened.
fn fail(label: &str, path: &str, msg: impl Into<String>) -> ConfigError {
    ConfigError::one(label, path, msg)
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
        let ops = Arc::new(
            Ops::start(&config, &state_dir)
                .await
                .map_err(|(p, m)| fail(&label, &p, m))?,
        );
        let control = match ControlPlane::start(
            Startup {
                // No file: the embedder re-reads it on restart (its `${VAR}`s may be its own).
                file: None,
                label: label.clone(),
                document,
                state_dir,
            },
            ops.clone(),
        )
        .await
        {
            Ok(c) => c,
            Err(e) => {
                ops.shutdown(Instant::now()).await;
                return Err(e);
            }
        };
        let stop_parts = |e: ConfigError| {
            let (control, ops) = (control.clone(), ops.clone());
            async move {
                control.stop();
                ops.shutdown(Instant::now()).await;
                e
            }
        };
        let listener = match TcpListener::bind(listen).await {
            Ok(l) => l,
            Err(e) => {
                let e = fail(
                    &label,
                    "listen",
                    format!("cannot listen on {listen}: {e}; choose a free address"),
                );
                return Err(stop_parts(e).await);
            }
        };
        let addr = match listener.local_addr() {
            Ok(a) => a,
            Err(e) => return Err(stop_parts(fail(&label, "listen", e.to_string())).await),
        };
        let (admin, admin_task) =
            match start_admin(&config, &label, ops.clone(), control.clone()).await {
                Ok(Some((addr, auth, token, task))) => (Some((addr, auth, token)), Some(task)),
                Ok(None) => (None, None),
                Err((p, m)) => return Err(stop_parts(fail(&label, &p, m)).await),
            };
        let serve_config = control.serve_config();
        let drain = serve_config.drain_timeout;
        let (stop, stopped) = oneshot::channel::<()>();
        let router = control.router();
        let server = tokio::spawn(async move {
            serve(listener, router, serve_config, async {
                let _ = stopped.await;
            })
            .await
        });
        tracing::info!(%addr, models = config.models.len(), "serving");
        Ok(Embedded {
            addr,
            admin,
            control,
            ops,
            drain,
            stop: Some(stop),
            server: Some(server),
            admin_task,
        })
    }

    /// The gateway's address (the port actually bound).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin listener's address (web panel, admin API, `/metrics`), when it runs.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|(a, _, _)| *a)
    }

    /// This run's admin token (for `Authorization: Bearer`), when the admin listener runs.
    pub fn admin_token(&self) -> Option<&str> {
        self.admin.as_ref().map(|(_, _, t)| t.as_str())
    }

    /// A URL that signs `user` in to the web panel once (valid for `ttl`), then opens the panel.
    ///
    /// # Errors
    /// When the admin listener does not run, or no random token can be made.
    pub fn login_link(&self, user: &str, ttl: Duration) -> Result<String, String> {
        let Some((addr, auth, _)) = &self.admin else {
            return Err("the admin listener is not running (`admin.listen`)".into());
        };
        let once = auth.once.issue(admin::Actor::User(user.into()), ttl)?;
        Ok(format!("http://{addr}/api/v1/login/once/{once}"))
    }

    /// The control plane (config in force, admin API objects).
    pub fn control(&self) -> &Arc<ControlPlane> {
        &self.control
    }

    /// The request log and statistics, when storage is on.
    pub fn store(&self) -> Option<octo_store::Store> {
        self.ops.store()
    }

    /// Stops accepting, lets requests in flight finish within the config's drain deadline
    /// (`limits.drain_timeout`), then writes what the request log still holds and closes it.
    ///
    /// # Errors
    /// When the listener failed while serving.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let served = match self.server.take() {
            Some(task) => task
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string()))),
            None => Ok(()),
        };
        self.control.stop();
        self.control.flush_key_use().await;
        self.ops.shutdown(Instant::now() + self.drain).await;
        if let Some(task) = self.admin_task.take() {
            task.abort();
        }
        served
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        if let Some(task) = self.server.take() {
            task.abort();
        }
        if let Some(task) = self.admin_task.take() {
            task.abort();
        }
        self.control.stop();
    }
}

type AdminParts = (SocketAddr, Arc<Auth>, String, JoinHandle<()>);

/// Binds and serves the admin listener with a fresh token; `None` when `admin.listen` is taken
/// and was not written in the config (as the binary does).
async fn start_admin(
    config: &config::Config,
    label: &str,
    ops: Arc<Ops>,
    control: Arc<ControlPlane>,
) -> Result<Option<AdminParts>, (String, String)> {
    let explicit = config.admin.is_some();
    let settings = config.admin.clone().unwrap_or_default();
    let mut tokens =
        Tokens::parse(&settings.tokens).map_err(|(i, m)| (format!("admin.tokens[{i}]"), m))?;
    let credentials = !tokens.is_empty() || !settings.users.is_empty();
    let auth = Auth::new(
        settings.users.clone(),
        label.to_owned(),
        ops.store(),
        settings.session_ttl()?,
        settings.secure_cookies,
    );
    auth.check_conflicts().await?;
    let listener = match admin::bind(&settings, explicit, credentials).await? {
        admin::Bound::Listening(l) => l,
        admin::Bound::Skipped(_) => return Ok(None),
    };
    let addr = listener
        .local_addr()
        .map_err(|e| ("admin.listen".to_owned(), e.to_string()))?;
    let token = admin::tokens::generate().map_err(|e| (String::new(), e.to_string()))?;
    tokens.push_digest(admin::tokens::digest(&token));
    let state = admin::AdminState {
        tokens: Arc::new(tokens),
        metrics_without_token: settings.metrics_without_token,
        ops,
        control,
        auth: auth.clone(),
    };
    let app = admin::router(state);
    let sessions = auth.clone();
    let task = tokio::spawn(async move {
        let pruner = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(600));
            loop {
                tick.tick().await;
                sessions.sessions.prune().await;
            }
        });
        let service = app.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(listener, service).await {
            tracing::error!(error = %e, "admin listener stopped");
        }
        pruner.abort();
    });
    Ok(Some((addr, auth, token, task)))
}
