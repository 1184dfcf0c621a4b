//! The in-process gateway's lifecycle.
//!
//! [`Gateway`] owns at most one running [`Embedded`] server. Start reads `config.yaml` again
//! (so edits apply on Restart), supplies the in-process mock upstream's URL for
//! `${OCTOLLM_DESKTOP_MOCK}`, and starts the gateway; a config that does not validate, a database
//! that cannot be opened or a port in use leaves the status [`Status::Failing`] with the error
//! text, which the tray shows (never a silent stop). Stop drains: the listener stops accepting,
//! requests in flight (streams included) get the config's `limits.drain_timeout`, then the
//! request log is written out. Restart is stop then start.
//!
//! Operations are serialised (a second Start while one runs waits for it); the status is
//! published on a `watch` channel so the tray redraws on every change.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use octo_mock::{MockConfig, MockServer};
use octo_server::config;
use octo_server::embed::{EmbedOptions, Embedded};
use octo_store::{Bucket, StatsQuery};
use tokio::sync::{Mutex, watch};

use crate::paths::{MOCK_VAR, Paths};

/// What the gateway is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Not running (never started, or stopped from the menu).
    Stopped,
    /// Serving.
    Running {
        /// The gateway's address.
        addr: SocketAddr,
        /// The admin listener's address (web panel), when it runs.
        admin: Option<SocketAddr>,
    },
    /// The last start failed: why (the config's error, with its key path).
    Failing(String),
}

impl Status {
    /// A short name: `running`, `stopped` or `failing`.
    pub fn name(&self) -> &'static str {
        match self {
            Status::Stopped => "stopped",
            Status::Running { .. } => "running",
            Status::Failing(_) => "failing",
        }
    }
}

/// Today's traffic (the current UTC day), from the request log's rollups.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Today {
    /// Requests.
    pub requests: u64,
    /// Their summed cost in USD, when any request's cost is known.
    pub cost_usd: Option<f64>,
}

#[derive(Default)]
struct Inner {
    running: Option<Embedded>,
    mock: Option<MockServer>,
}

/// The in-process gateway; see the [module docs](self).
pub struct Gateway {
    paths: Paths,
    listen: Option<SocketAddr>,
    inner: Mutex<Inner>,
    status: watch::Sender<Status>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("config", &self.paths.config)
            .field("status", &*self.status.borrow())
            .finish_non_exhaustive()
    }
}

/// How long a sign-in link for the panel window stays valid.
const LINK_TTL: Duration = Duration::from_secs(120);

impl Gateway {
    /// A stopped gateway over the files in `paths`; `listen` overrides the config's `listen`
    /// (`127.0.0.1:0` in tests).
    pub fn new(paths: Paths, listen: Option<SocketAddr>) -> Gateway {
        Gateway {
            paths,
            listen,
            inner: Mutex::new(Inner::default()),
            status: watch::channel(Status::Stopped).0,
        }
    }

    /// The app's files.
    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    /// The current status.
    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// A receiver that sees every status change.
    pub fn watch(&self) -> watch::Receiver<Status> {
        self.status.subscribe()
    }

    /// Starts the gateway from `config.yaml` (nothing happens when it already runs). Must run
    /// inside the tokio runtime. The outcome is the new status: `Running` or `Failing`.
    pub async fn start(&self) -> Status {
        let mut inner = self.inner.lock().await;
        if inner.running.is_none() {
            let outcome = self.start_locked(&mut inner).await;
            self.publish(match outcome {
                Ok(e) => {
                    let s = Status::Running {
                        addr: e.addr(),
                        admin: e.admin_addr(),
                    };
                    inner.running = Some(e);
                    s
                }
                Err(msg) => {
                    tracing::error!(error = %msg, "the gateway did not start");
                    Status::Failing(msg)
                }
            });
        }
        self.status()
    }

    async fn start_locked(&self, inner: &mut Inner) -> Result<Embedded, String> {
        let label = self.paths.config.display().to_string();
        let text = std::fs::read_to_string(&self.paths.config)
            .map_err(|e| format!("{label}: cannot read the file: {e}"))?;
        let needs_mock = text.contains(&format!("${{{MOCK_VAR}}}"));
        if needs_mock && inner.mock.is_none() {
            let mock =
                MockServer::start(SocketAddr::from(([127, 0, 0, 1], 0)), MockConfig::default())
                    .await
                    .map_err(|e| format!("the mock upstream could not start: {e}"))?;
            inner.mock = Some(mock);
        }
        let mock_url = inner.mock.as_ref().map(MockServer::url);
        let env = move |name: &str| {
            if name == MOCK_VAR {
                mock_url.clone()
            } else {
                std::env::var(name).ok()
            }
        };
        let document = config::document(&text, &label, &env).map_err(|e| e.to_string())?;
        Embedded::start(EmbedOptions {
            document,
            label,
            state_dir: self.paths.dir.clone(),
            listen: self.listen,
            admin_listen: None,
        })
        .await
        .map_err(|e| e.to_string())
    }

    /// Stops the gateway, letting requests in flight finish within the drain deadline; the
    /// status becomes `Stopped` (also from `Failing`).
    pub async fn stop(&self) -> Status {
        let mut inner = self.inner.lock().await;
        if let Some(running) = inner.running.take()
            && let Err(e) = running.shutdown().await
        {
            tracing::warn!(error = %e, "the gateway's listener failed");
        }
        self.publish(Status::Stopped);
        Status::Stopped
    }

    /// Stops (draining) and starts again, re-reading `config.yaml`.
    pub async fn restart(&self) -> Status {
        self.stop().await;
        self.start().await
    }

    /// Stops the gateway and the mock upstream (before the app exits).
    pub async fn shutdown(&self) {
        self.stop().await;
        if let Some(mock) = self.inner.lock().await.mock.take() {
            mock.shutdown().await;
        }
    }

    /// Today's requests and cost, while the gateway runs with a request log; `None` otherwise
    /// (or when the database does not answer).
    pub async fn today(&self) -> Option<Today> {
        let store = self.inner.lock().await.running.as_ref()?.store()?;
        // The day bucket that holds now (`until` is exclusive, and must come after `since`).
        let now = SystemTime::now();
        let query = StatsQuery {
            since: Some(now),
            until: Some(now + Duration::from_secs(1)),
            bucket: Bucket::Day,
            group_by: None,
        };
        let stats = store.stats(&query).await.ok()?;
        Some(Today {
            requests: stats.totals.requests,
            cost_usd: stats.totals.cost_usd,
        })
    }

    /// A URL that opens the web panel signed in (a one-time link), while the gateway runs.
    ///
    /// # Errors
    /// When the gateway or its admin listener does not run.
    pub async fn panel_link(&self) -> Result<String, String> {
        match self.inner.lock().await.running.as_ref() {
            Some(e) => e.login_link("desktop", LINK_TTL),
            None => Err("the gateway is not running: choose Start".into()),
        }
    }

    /// This run's admin token (for the admin API), while the gateway runs.
    pub async fn admin_token(&self) -> Option<String> {
        let inner = self.inner.lock().await;
        inner
            .running
            .as_ref()
            .and_then(|e| e.admin_token().map(str::to_owned))
    }

    fn publish(&self, status: Status) {
        self.status.send_replace(status);
    }
}
