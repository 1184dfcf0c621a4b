//! The `storage` settings: which database (by URL), how long the log is kept, and the writer's
//! queue and batch sizes, plus the rule that a relative SQLite path is relative to the config
//! file's directory.

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::error::StoreError;

/// The default `storage.url`: a SQLite file beside the config file.
pub const DEFAULT_URL: &str = "sqlite://octollm.db";

/// The default `storage.retention`: 30 days.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// The default `storage.write_timeout`: 10 s (a batch normally takes milliseconds; SQLite waits
/// up to 5 s on a lock, a pooled connection up to 5 s).
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// The default `storage.buffer`: records held while the database is unavailable.
pub const DEFAULT_BUFFER: usize = 100_000;

/// The database behind a URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// `sqlite://path`, `sqlite:path`, `sqlite::memory:`.
    Sqlite,
    /// `postgres://…` or `postgresql://…`.
    Postgres,
    /// `mysql://…` or `mariadb://…` (MySQL 8 or MariaDB 10.5+).
    MySql,
}

impl Backend {
    /// The backend a URL names.
    ///
    /// ```
    /// use octo_store::Backend;
    /// assert_eq!(Backend::from_url("sqlite://octollm.db").unwrap(), Backend::Sqlite);
    /// assert_eq!(Backend::from_url("postgresql://u@h/db").unwrap(), Backend::Postgres);
    /// assert_eq!(Backend::from_url("mariadb://u@h/db").unwrap(), Backend::MySql);
    /// assert!(Backend::from_url("redis://h").is_err());
    /// ```
    pub fn from_url(url: &str) -> Result<Backend, StoreError> {
        let scheme = url.split(':').next().unwrap_or("").to_ascii_lowercase();
        match scheme.as_str() {
            "sqlite" => Ok(Backend::Sqlite),
            "postgres" | "postgresql" => Ok(Backend::Postgres),
            "mysql" | "mariadb" => Ok(Backend::MySql),
            _ => Err(StoreError::config(format!(
                "storage.url: unsupported database `{scheme}` (expected sqlite://, postgres:// or mysql://)"
            ))),
        }
    }

    /// Its name in logs and docs: `sqlite`, `postgres`, `mysql`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
            Backend::MySql => "mysql",
        }
    }
}

/// The `storage` section, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    /// The database URL (`sqlite://path`, `postgres://…`, `mysql://…`). A relative SQLite path
    /// should be resolved with [`resolve_url`] first.
    pub url: String,
    /// How long log rows are kept; [`Duration::ZERO`] keeps them forever. Hour and day rollups
    /// are never pruned; minute rollups are pruned with the log.
    pub retention: Duration,
    /// Records waiting for the writer task (`on_complete` drops and counts beyond it).
    pub queue_capacity: usize,
    /// Records the writer holds while the database is unavailable (newer records are dropped
    /// and counted beyond it).
    pub buffer_capacity: usize,
    /// Records written per transaction at most.
    pub batch_size: usize,
    /// How long a record may wait for a batch to fill before it is written anyway.
    pub batch_interval: Duration,
    /// The longest wait between retries while the database is unavailable.
    pub max_backoff: Duration,
    /// How long one batch write may take (`storage.write_timeout`): a write still running then
    /// (a database that hangs without closing the connection) is abandoned like a failed one:
    /// its connection is dropped and its records are kept and retried with backoff.
    pub write_timeout: Duration,
    /// Texts replaced by `[REDACTED]` wherever they occur in a kept body, before it is written.
    pub redact: Secrets,
}

/// Texts that must never reach the database: the configured upstream keys, gateway keys and
/// admin tokens. [`redact`](Self::redact) replaces every occurrence in a text with
/// [`REDACTED`]; `Debug` shows only how many there are.
///
/// ```
/// use octo_store::Secrets;
/// let s = Secrets::new(["sk-upstream-123456", ""]);
/// assert_eq!(s.redact("key sk-upstream-123456 here"), "key [REDACTED] here");
/// assert_eq!(format!("{s:?}"), "Secrets(1)");
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secrets(Arc<Vec<String>>);

/// What a secret is replaced with.
pub const REDACTED: &str = "[REDACTED]";

impl Secrets {
    /// The non-empty texts of `secrets`, longest first (so a key that contains another is
    /// replaced whole).
    pub fn new<S: Into<String>>(secrets: impl IntoIterator<Item = S>) -> Self {
        let mut v: Vec<String> = secrets
            .into_iter()
            .map(Into::into)
            .filter(|s| !s.is_empty())
            .collect();
        v.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        v.dedup();
        Secrets(Arc::new(v))
    }

    /// `text` with every secret replaced by [`REDACTED`].
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for s in self.0.iter() {
            if out.contains(s.as_str()) {
                out = Cow::Owned(out.replace(s.as_str(), REDACTED));
            }
        }
        out
    }
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets({})", self.0.len())
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: DEFAULT_URL.to_owned(),
            retention: DEFAULT_RETENTION,
            queue_capacity: 10_000,
            buffer_capacity: DEFAULT_BUFFER,
            batch_size: 500,
            batch_interval: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            redact: Secrets::default(),
        }
    }
}

impl StoreConfig {
    /// The default settings for `url`.
    pub fn with_url(url: impl Into<String>) -> Self {
        StoreConfig {
            url: url.into(),
            ..StoreConfig::default()
        }
    }

    /// The backend [`url`](Self::url) names.
    pub fn backend(&self) -> Result<Backend, StoreError> {
        Backend::from_url(&self.url)
    }
}

/// Parses a `storage.retention` value (`30d`, `12h`, `90days`; `0` or `forever` keeps rows
/// forever).
///
/// ```
/// use std::time::Duration;
/// use octo_store::parse_retention;
/// assert_eq!(parse_retention("30d").unwrap(), Duration::from_secs(30 * 86_400));
/// assert_eq!(parse_retention("forever").unwrap(), Duration::ZERO);
/// assert!(parse_retention("soon").is_err());
/// ```
pub fn parse_retention(s: &str) -> Result<Duration, StoreError> {
    match s.trim() {
        "0" | "forever" => Ok(Duration::ZERO),
        t => humantime::parse_duration(t)
            .map_err(|e| StoreError::config(format!("storage.retention: `{t}`: {e}"))),
    }
}

/// Resolves a SQLite URL's relative path against `base_dir` (the config file's directory);
/// other URLs, absolute paths and `sqlite::memory:` are returned unchanged.
///
/// ```
/// use std::path::Path;
/// use octo_store::resolve_url;
/// let base = Path::new("/etc/octollm");
/// assert_eq!(resolve_url("sqlite://octollm.db", base), "sqlite:///etc/octollm/octollm.db");
/// assert_eq!(resolve_url("sqlite:data/log.db?mode=rwc", base), "sqlite:///etc/octollm/data/log.db?mode=rwc");
/// assert_eq!(resolve_url("sqlite:///var/lib/o.db", base), "sqlite:///var/lib/o.db");
/// assert_eq!(resolve_url("sqlite::memory:", base), "sqlite::memory:");
/// assert_eq!(resolve_url("postgres://db/octollm", base), "postgres://db/octollm");
/// ```
pub fn resolve_url(url: &str, base_dir: &Path) -> String {
    let Some((path, query)) = sqlite_path(url) else {
        return url.to_owned();
    };
    if path == ":memory:" || path.is_empty() || Path::new(path).is_absolute() {
        return url.to_owned();
    }
    let joined = base_dir.join(path);
    let mut out = format!("sqlite://{}", joined.display());
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// The path and query of a SQLite URL (`sqlite://p`, `sqlite:p`), or `None` for other URLs.
pub(crate) fn sqlite_path(url: &str) -> Option<(&str, Option<&str>)> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    Some(match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = StoreConfig::default();
        assert_eq!(c.url, "sqlite://octollm.db");
        assert_eq!(c.retention, Duration::from_secs(2_592_000));
        assert_eq!(c.backend().unwrap(), Backend::Sqlite);
        assert!(c.batch_size > 0 && c.queue_capacity > 0 && c.buffer_capacity >= c.batch_size);
    }

    #[test]
    fn sqlite_paths() {
        assert_eq!(sqlite_path("sqlite://a.db"), Some(("a.db", None)));
        assert_eq!(
            sqlite_path("sqlite:a.db?mode=ro"),
            Some(("a.db", Some("mode=ro")))
        );
        assert_eq!(sqlite_path("mysql://x"), None);
    }
}
