//! Config reload on SIGHUP and on file change.
//!
//! A reload reads and validates the file (merged with the admin API's objects, through the
//! [`ControlPlane`]) and builds a complete new engine graph before anything changes; only then is
//! the new router swapped in (`SharedRouter::store`). Backends whose settings did not change keep
//! their state ([`crate::registry`]). Requests already
//! running keep the graph they started on (they hold an `Arc` to it), so nothing in flight is
//! disturbed. An invalid file is refused and the previous config stays in force.
//!
//! Every outcome is reported as one line on stdout (`octollm-server reloaded …` or
//! `octollm-server kept the previous config …`), so scripts and tests can wait for it.
//! `listen` and the server-level `limits` (header timeout, drain, header size) need a restart; a
//! reload that changes them says so.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::config::Config;
use crate::control::ControlPlane;

/// What identifies a version of the file on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    hash: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    let bytes = std::fs::read(path).ok()?;
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    Some(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        hash,
    })
}

/// Reloads on SIGHUP and file change. Create it before serving (that registers the SIGHUP
/// handler, so an early SIGHUP cannot kill the process), then spawn [`Reloader::run`].
#[derive(Debug)]
pub struct Reloader {
    path: PathBuf,
    /// The file as it was when the reloader was made, so a change right after start is not missed.
    last: Option<Stamp>,
    control: Arc<ControlPlane>,
    poll: Option<Duration>,
    #[cfg(unix)]
    hup: Option<tokio::signal::unix::Signal>,
}

impl Reloader {
    /// Watches `path` (every `poll`, if given) and SIGHUP; each change goes through `control`
    /// (validated with the admin API's objects, built, swapped in).
    ///
    /// Must be called inside a tokio runtime.
    pub fn new(path: PathBuf, control: Arc<ControlPlane>, poll: Option<Duration>) -> Self {
        Reloader {
            last: stamp(&path),
            path,
            control,
            poll,
            #[cfg(unix)]
            hup: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok(),
        }
    }

    /// Runs until the task is dropped.
    pub async fn run(self) {
        let Reloader {
            path,
            last,
            control,
            poll,
            ..
        } = self;
        #[cfg(unix)]
        let mut hup = self.hup;
        let mut last = last;
        let mut ticker = poll.map(|p| {
            let mut t = tokio::time::interval(p);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        if let Some(t) = ticker.as_mut() {
            t.tick().await;
        }
        loop {
            #[cfg(unix)]
            let hup_signal = async {
                match hup.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            #[cfg(not(unix))]
            let hup_signal = std::future::pending::<()>();
            let tick = async {
                match ticker.as_mut() {
                    Some(t) => {
                        t.tick().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let reason = tokio::select! {
                () = hup_signal => "SIGHUP",
                () = tick => {
                    let now = stamp(&path);
                    if now == last || now.is_none() {
                        continue;
                    }
                    last = now;
                    "file change"
                }
            };
            if reason == "SIGHUP" {
                last = stamp(&path);
            }
            let line = control.reload_file(reason).await;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }
}

/// The settings a reload cannot change in a running process, as written in messages.
pub(crate) fn restart_needed(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut keys = Vec::new();
    if old.listen != new.listen {
        keys.push("`listen`");
    }
    let (a, b) = (&old.limits, &new.limits);
    if a.header_read_timeout != b.header_read_timeout
        || a.drain_timeout != b.drain_timeout
        || a.max_header_bytes != b.max_header_bytes
    {
        keys.push("`limits.header_read_timeout`/`drain_timeout`/`max_header_bytes`");
    }
    if old.storage != new.storage {
        keys.push("`storage`");
    }
    if format!("{:?}", old.admin) != format!("{:?}", new.admin) {
        keys.push("`admin`");
    }
    if format!("{:?}", old.telemetry) != format!("{:?}", new.telemetry) {
        keys.push("`telemetry`");
    }
    keys
}
