//! The one way a gateway starts and stops: the request log and metrics ([`Ops`]), the control
//! plane, the admin listener with the web panel, the config file watcher, the gateway listener,
//! and at the end the drain.
//!
//! `octollm-server` (a config file or `--demo`, stopped by SIGTERM or Ctrl-C) and
//! [`crate::embed`] (an embedder that starts and stops the gateway on demand) both start through
//! [`Server::start`] and stop through [`Server::run_until`] or [`Server::shutdown`], so a change
//! to how the server starts or drains is made here once. What differs between them is an option:
//! which file to watch ([`ServerOptions::file`]) and how the admin token is chosen
//! ([`AdminToken`]).
//!
//! Order of work: open the request log, start the control plane (admin API objects merged into
//! the file's document), bind the admin listener, start the watcher (which registers SIGHUP, so an
//! early SIGHUP cannot kill the process), bind the gateway's `listen`, then serve. A start that
//! fails after the request log opened closes what it started before returning.

use std::future::Future;
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
use crate::config::{Config, ConfigError};
use crate::control::{ControlPlane, Startup};
use crate::ops::Ops;
use crate::reload::Reloader;

/// How often expired admin sessions are removed.
const SESSION_PRUNE_EVERY: Duration = Duration::from_secs(600);

/// How the admin listener's token is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminToken {
    /// When the config names no token: the one made at the first start, its digest kept in the
    /// state directory (`admin::tokens::first_start`; the token itself is returned once).
    FirstStart,
    /// When the config names no token: a new one each start, never stored (`--demo`).
    EachStart,
    /// A new one each start, never stored, beside any the config names (an embedder, which
    /// calls the admin API itself).
    Always,
}

/// What to start; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The config, parsed from `document`, with the caller's overrides applied (the request
    /// log's database, the admin listener's address).
    pub config: Config,
    /// The interpolated document `config` was parsed from: the control plane merges the admin
    /// API's objects into it.
    pub document: Yaml,
    /// The config's name in messages (usually the file's path).
    pub label: String,
    /// The config file the control plane re-reads on a change, watched for changes and on
    /// SIGHUP; `None`: no watcher, no reload.
    pub file: Option<PathBuf>,
    /// How often the watcher checks `file`; `None`: SIGHUP only.
    pub poll: Option<Duration>,
    /// Where relative SQLite paths, the sealing key file and the first start's admin token
    /// digest live.
    pub state_dir: PathBuf,
    /// The gateway's address (the config's `listen`, or an override).
    pub listen: SocketAddr,
    /// How the admin token is chosen.
    pub admin_token: AdminToken,
}

/// Why a start failed.
#[derive(Debug)]
pub enum StartError {
    /// The config, the database or the admin listener, with the key path.
    Config(ConfigError),
    /// The gateway's `listen` address could not be bound.
    Listen {
        /// The address.
        addr: SocketAddr,
        /// What the system said.
        error: std::io::Error,
    },
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Config(e) => std::fmt::Display::fmt(e, f),
            StartError::Listen { addr, error } => write!(f, "cannot listen on {addr}: {error}"),
        }
    }
}

impl std::error::Error for StartError {}

impl From<ConfigError> for StartError {
    fn from(e: ConfigError) -> Self {
        StartError::Config(e)
    }
}

/// A running admin listener.
struct AdminListener {
    addr: SocketAddr,
    auth: Arc<Auth>,
    /// The token this start made, if any (to be shown once).
    token: Option<String>,
}

/// A running gateway; see the [module docs](self). Dropping it without
/// [`shutdown`](Self::shutdown) or [`run_until`](Self::run_until) aborts the listeners (nothing
/// is drained, the request log's queue is not written out).
pub struct Server {
    addr: SocketAddr,
    admin: Option<AdminListener>,
    control: Arc<ControlPlane>,
    ops: Arc<Ops>,
    drain: Duration,
    stop: Option<oneshot::Sender<()>>,
    serving: Option<JoinHandle<std::io::Result<()>>>,
    /// The admin listener, the watcher, the wait for a database that was down at startup:
    /// aborted when the server stops.
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .field("admin", &self.admin_addr())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Opens the request log, starts the control plane, binds the admin listener and the
    /// gateway, starts the watcher, calls `on_bound` (both addresses are bound, nothing is served
    /// yet: print and log what to), then serves on the current tokio runtime.
    ///
    /// # Errors
    /// A [`StartError`]: the config, a database that cannot be opened, an address that cannot
    /// be bound, or what `on_bound` returned. What was started is stopped first.
    pub async fn start(
        mut opts: ServerOptions,
        on_bound: impl FnOnce(&Server) -> Result<(), StartError>,
    ) -> Result<Server, StartError> {
        let ops = Arc::new(
            Ops::start(&opts.config, &opts.state_dir)
                .await
                .map_err(|(p, m)| ConfigError::one(&opts.label, p, m))?,
        );
        let control = match ControlPlane::start(
            Startup {
                file: opts.file.clone(),
                label: opts.label.clone(),
                document: std::mem::take(&mut opts.document),
                state_dir: opts.state_dir.clone(),
            },
            ops.clone(),
        )
        .await
        {
            Ok(c) => c,
            Err(e) => {
                ops.shutdown(Instant::now()).await;
                return Err(e.into());
            }
        };
        let mut server = Server {
            addr: opts.listen,
            admin: None,
            drain: control.serve_config().drain_timeout,
            control,
            ops,
            stop: None,
            serving: None,
            tasks: Vec::new(),
        };
        let listener = match server.bind(&opts).await {
            Ok(listener) => listener,
            Err(e) => {
                server.stop_started().await;
                return Err(e);
            }
        };
        if let Err(e) = on_bound(&server) {
            server.stop_started().await;
            return Err(e);
        }
        let (stop, stopped) = oneshot::channel::<()>();
        let router = server.control.router();
        let serve_config = server.control.serve_config();
        server.stop = Some(stop);
        server.serving = Some(tokio::spawn(async move {
            serve(listener, router, serve_config, async {
                let _ = stopped.await;
            })
            .await
        }));
        Ok(server)
    }

    /// Starts the admin listener and the watcher, and binds the gateway's listener.
    async fn bind(&mut self, opts: &ServerOptions) -> Result<TcpListener, StartError> {
        self.admin = self
            .start_admin(opts)
            .await
            .map_err(|(p, m)| ConfigError::one(&opts.label, p, m))?;
        if let Some(path) = &opts.file {
            let reloader = Reloader::new(path.clone(), self.control.clone(), opts.poll);
            self.tasks.push(tokio::spawn(reloader.run()));
        }
        let listen = opts.listen;
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|error| StartError::Listen {
                addr: listen,
                error,
            })?;
        self.addr = listener.local_addr().map_err(|error| StartError::Listen {
            addr: listen,
            error,
        })?;
        Ok(listener)
    }

    /// Binds and serves the admin listener (see [`crate::admin`]); `None` when `admin.listen`
    /// is taken and was not written in the config.
    async fn start_admin(
        &mut self,
        opts: &ServerOptions,
    ) -> Result<Option<AdminListener>, (String, String)> {
        let config = &opts.config;
        let explicit = config.admin.is_some();
        let settings = config.admin.clone().unwrap_or_default();
        let mut tokens =
            Tokens::parse(&settings.tokens).map_err(|(i, m)| (format!("admin.tokens[{i}]"), m))?;
        let configured = !tokens.is_empty();
        let auth = Auth::new(
            settings.users.clone(),
            opts.label.clone(),
            self.ops.store(),
            settings.session_ttl()?,
            settings.secure_cookies,
        );
        auth.check_conflicts().await?;
        if self.ops.storage_configured() && self.ops.store().is_none() {
            // The database did not answer at startup: users and sessions move there once it does.
            let (auth, ops) = (auth.clone(), self.ops.clone());
            self.tasks.push(tokio::spawn(async move {
                if let Some(store) = ops.store_opened().await {
                    auth.database_opened(store).await;
                }
            }));
        }
        let credentials = configured || !settings.users.is_empty();
        let listener = match admin::bind(&settings, explicit, credentials).await? {
            admin::Bound::Listening(l) => l,
            admin::Bound::Skipped(_) => return Ok(None),
        };
        let addr = listener
            .local_addr()
            .map_err(|e| ("admin.listen".to_owned(), e.to_string()))?;
        let token = match opts.admin_token {
            AdminToken::FirstStart if !configured => {
                let file = admin::tokens::token_file(&opts.state_dir);
                admin::tokens::first_start(&file, &mut tokens)
                    .map_err(|m| ("admin.tokens".to_owned(), m))?
            }
            AdminToken::EachStart if !configured => Some(fresh_token(&mut tokens)?),
            AdminToken::Always => Some(fresh_token(&mut tokens)?),
            AdminToken::FirstStart | AdminToken::EachStart => None,
        };
        let state = admin::AdminState {
            tokens: Arc::new(tokens),
            metrics_without_token: settings.metrics_without_token,
            ops: self.ops.clone(),
            control: self.control.clone(),
            auth: auth.clone(),
        };
        let app = admin::router(state);
        let sessions = auth.clone();
        self.tasks.push(tokio::spawn(async move {
            let prune = async {
                let mut tick = tokio::time::interval(SESSION_PRUNE_EVERY);
                loop {
                    tick.tick().await;
                    sessions.sessions.prune().await;
                }
            };
            let service = app.into_make_service_with_connect_info::<SocketAddr>();
            let serve = async { axum::serve(listener, service).await };
            tokio::select! {
                served = serve => if let Err(e) = served {
                    tracing::error!(error = %e, "admin listener stopped");
                },
                () = prune => {}
            }
        }));
        Ok(Some(AdminListener { addr, auth, token }))
    }

    /// The gateway's address (the port actually bound).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin listener's address (web panel, admin API, `/metrics`), when it runs.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|a| a.addr)
    }

    /// The admin token this start made ([`AdminToken`]), when the admin listener runs and one
    /// was made.
    pub fn admin_token(&self) -> Option<&str> {
        self.admin.as_ref().and_then(|a| a.token.as_deref())
    }

    /// A URL that signs `user` in to the web panel once (valid for `ttl`), then opens the panel.
    ///
    /// # Errors
    /// When the admin listener does not run, or no random token can be made.
    pub fn login_link(&self, user: &str, ttl: Duration) -> Result<String, String> {
        let Some(a) = &self.admin else {
            return Err("the admin listener is not running (`admin.listen`)".into());
        };
        let once = a.auth.once.issue(admin::Actor::User(user.into()), ttl)?;
        Ok(format!("http://{}/api/v1/login/once/{once}", a.addr))
    }

    /// The control plane (config in force, admin API objects).
    pub fn control(&self) -> &Arc<ControlPlane> {
        &self.control
    }

    /// The request log and statistics, when storage is on and the database is open.
    pub fn store(&self) -> Option<octo_store::Store> {
        self.ops.store()
    }

    /// Serves until `signal` resolves (or the listener fails), then drains: stops accepting,
    /// lets requests in flight finish within the config's drain deadline
    /// (`limits.drain_timeout`), writes what the request log still holds and closes it, and stops
    /// the admin listener and the watcher.
    ///
    /// # Errors
    /// When the listener failed while serving.
    pub async fn run_until(mut self, signal: impl Future<Output = ()>) -> std::io::Result<()> {
        let served = match self.serving.take() {
            Some(mut task) => {
                let joined = tokio::select! {
                    joined = &mut task => joined,
                    () = signal => {
                        if let Some(stop) = self.stop.take() {
                            let _ = stop.send(());
                        }
                        task.await
                    }
                };
                joined.unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())))
            }
            None => Ok(()),
        };
        // The listener has drained: write what the observers still hold, within the deadline.
        self.control.stop();
        self.control.flush_key_use().await;
        self.ops.shutdown(Instant::now() + self.drain).await;
        self.abort_tasks();
        served
    }

    /// [`run_until`](Self::run_until) a signal that has already come: stop now, draining.
    ///
    /// # Errors
    /// When the listener failed while serving.
    pub async fn shutdown(self) -> std::io::Result<()> {
        self.run_until(std::future::ready(())).await
    }

    /// Undoes a start that failed after the control plane started.
    async fn stop_started(&mut self) {
        self.abort_tasks();
        self.control.stop();
        self.ops.shutdown(Instant::now()).await;
    }

    fn abort_tasks(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(task) = self.serving.take() {
            task.abort();
        }
        self.abort_tasks();
        self.control.stop();
    }
}

/// A new admin token, its digest added to `tokens`.
fn fresh_token(tokens: &mut Tokens) -> Result<String, (String, String)> {
    let token = admin::tokens::generate().map_err(|e| (String::new(), e.to_string()))?;
    tokens.push_digest(admin::tokens::digest(&token));
    Ok(token)
}
