//! The optional price sync: fetch a price document from a URL on an interval and swap it in as the
//! book's synced table. Off unless `price_sync` is configured; the gateway works offline on the
//! embedded snapshot.
//!
//! A failed sync (unreachable, timeout, non-2xx status, oversized or unreadable document) keeps the
//! last good table and records the error in [`SyncStatus`], which the admin API shows; the next
//! attempt comes after a backoff (1 minute, doubling, at most the interval).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::task::JoinHandle;

use crate::book::PriceBook;
use crate::config::SyncSettings;
use crate::table::{PriceTable, TableInfo};

/// Largest accepted price document (LiteLLM's whole file is about 3.5 MB).
pub const MAX_DOCUMENT_BYTES: usize = 32 * 1024 * 1024;

/// First wait after a failed sync; doubles per consecutive failure, up to the interval.
const FIRST_RETRY: Duration = Duration::from_secs(60);

/// The state of the price sync, for the admin API.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SyncStatus {
    /// The configured URL (`None`: no sync configured or started).
    pub url: Option<String>,
    /// Attempts so far.
    pub attempts: u64,
    /// When the last attempt finished (RFC 3339).
    #[serde(serialize_with = "rfc3339")]
    pub last_attempt: Option<SystemTime>,
    /// When the last successful sync finished (RFC 3339).
    #[serde(serialize_with = "rfc3339")]
    pub last_success: Option<SystemTime>,
    /// The last attempt's error; `None` after a success.
    pub last_error: Option<String>,
    /// Models in the synced table in use (0 before the first success).
    pub models: usize,
    /// The synced table's own description of its source, when it has one.
    pub table: Option<TableInfo>,
}

fn rfc3339<S: serde::Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.collect_str(&humantime::format_rfc3339_seconds(*t)),
        None => s.serialize_none(),
    }
}

/// What kind of failure a sync hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncErrorKind {
    /// The URL could not be fetched: connection, TLS, timeout or file error.
    Fetch,
    /// The server answered with a non-2xx status.
    Status(u16),
    /// The document exceeded [`MAX_DOCUMENT_BYTES`].
    TooLarge,
    /// The document is not a price document, or prices nothing.
    Invalid,
}

/// Why a sync failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncError {
    /// The kind of failure.
    pub kind: SyncErrorKind,
    /// A one-line description. It never repeats the URL, which may carry a token in its query.
    pub message: String,
}

impl SyncError {
    fn new(kind: SyncErrorKind, message: impl Into<String>) -> Self {
        SyncError {
            kind,
            message: message.into(),
        }
    }

    /// Whether trying again later may succeed (network trouble, 5xx, 408, 429). A document that
    /// is too large or not a price list will not fix itself, but is retried at the next interval
    /// all the same.
    pub fn is_retryable(&self) -> bool {
        match self.kind {
            SyncErrorKind::Fetch => true,
            SyncErrorKind::Status(s) => s >= 500 || s == 408 || s == 429,
            SyncErrorKind::TooLarge | SyncErrorKind::Invalid => false,
        }
    }
}

impl fmt::Display for SyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SyncError {}

impl PriceBook {
    /// Starts the sync task on the current tokio runtime: one attempt now, then one per interval
    /// (after a failure, sooner: see the [module docs](self)). Abort the handle to stop it.
    pub fn spawn_sync(self: &Arc<Self>, settings: SyncSettings) -> JoinHandle<()> {
        let book = Arc::clone(self);
        self.status
            .send_modify(|s| s.url = Some(settings.url.clone()));
        tokio::spawn(async move {
            let client = match reqwest::Client::builder().build() {
                Ok(c) => c,
                Err(e) => {
                    let message = format!("cannot build the HTTP client for the price sync: {e}");
                    tracing::error!("{message}");
                    book.status.send_modify(|s| s.last_error = Some(message));
                    return;
                }
            };
            let mut failures = 0u32;
            loop {
                let wait = match book.sync_once(&client, &settings).await {
                    Ok(_) => {
                        failures = 0;
                        settings.interval
                    }
                    Err(e) => {
                        failures = failures.saturating_add(1);
                        tracing::warn!(
                            kind = ?e.kind,
                            "price sync failed, keeping the last good prices: {e}"
                        );
                        FIRST_RETRY
                            .saturating_mul(2u32.saturating_pow(failures - 1))
                            .min(settings.interval)
                    }
                };
                tokio::time::sleep(wait).await;
            }
        })
    }

    /// One sync with `client`: fetch (within `settings.timeout`), parse, swap in on success; record
    /// the outcome in the status either way. Returns the number of models in the new table.
    pub async fn sync_once(
        &self,
        client: &reqwest::Client,
        settings: &SyncSettings,
    ) -> Result<usize, SyncError> {
        let result = match fetch(client, settings).await {
            Ok(bytes) => PriceTable::parse(&bytes)
                .map_err(|e| SyncError::new(SyncErrorKind::Invalid, e.to_string())),
            Err(e) => Err(e),
        };
        let now = SystemTime::now();
        match result {
            Ok(table) => {
                let models = table.len();
                let info = table.info().clone();
                *self.synced.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(table));
                self.status.send_modify(|s| {
                    s.url = Some(settings.url.clone());
                    s.attempts += 1;
                    s.last_attempt = Some(now);
                    s.last_success = Some(now);
                    s.last_error = None;
                    s.models = models;
                    s.table = Some(info);
                });
                tracing::info!(models, "price sync succeeded");
                Ok(models)
            }
            Err(e) => {
                self.status.send_modify(|s| {
                    s.url = Some(settings.url.clone());
                    s.attempts += 1;
                    s.last_attempt = Some(now);
                    s.last_error = Some(e.message.clone());
                });
                Err(e)
            }
        }
    }
}

/// The document's bytes, within the timeout and size limit.
async fn fetch(client: &reqwest::Client, settings: &SyncSettings) -> Result<Vec<u8>, SyncError> {
    if let Some(path) = strip_scheme(&settings.url, "file://") {
        let read = tokio::time::timeout(settings.timeout, tokio::fs::read(path)).await;
        let bytes = match read {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                return Err(SyncError::new(
                    SyncErrorKind::Fetch,
                    format!("cannot read {path}: {e}"),
                ));
            }
            Err(_) => return Err(timed_out(settings.timeout)),
        };
        if bytes.len() > MAX_DOCUMENT_BYTES {
            return Err(too_large());
        }
        return Ok(bytes);
    }
    let fetch_error = |e: reqwest::Error| {
        if e.is_timeout() {
            timed_out(settings.timeout)
        } else {
            // Without the URL: it may carry credentials in its query.
            SyncError::new(
                SyncErrorKind::Fetch,
                format!("fetching the price document failed: {}", e.without_url()),
            )
        }
    };
    let mut resp = client
        .get(&settings.url)
        .timeout(settings.timeout)
        .send()
        .await
        .map_err(fetch_error)?;
    let status = resp.status();
    if !status.is_success() {
        return Err(SyncError::new(
            SyncErrorKind::Status(status.as_u16()),
            format!("the price document server answered {status}"),
        ));
    }
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(fetch_error)? {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn strip_scheme<'a>(url: &'a str, scheme: &str) -> Option<&'a str> {
    (url.len() >= scheme.len() && url[..scheme.len()].eq_ignore_ascii_case(scheme))
        .then(|| &url[scheme.len()..])
}

fn timed_out(after: Duration) -> SyncError {
    SyncError::new(
        SyncErrorKind::Fetch,
        format!(
            "fetching the price document timed out after {}",
            humantime::format_duration(after)
        ),
    )
}

fn too_large() -> SyncError {
    SyncError::new(
        SyncErrorKind::TooLarge,
        format!("the price document is larger than {MAX_DOCUMENT_BYTES} bytes"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_kinds() {
        let e = |k| SyncError::new(k, "x");
        assert!(e(SyncErrorKind::Fetch).is_retryable());
        assert!(e(SyncErrorKind::Status(503)).is_retryable());
        assert!(e(SyncErrorKind::Status(429)).is_retryable());
        assert!(!e(SyncErrorKind::Status(404)).is_retryable());
        assert!(!e(SyncErrorKind::Invalid).is_retryable());
        assert!(!e(SyncErrorKind::TooLarge).is_retryable());
    }

    #[test]
    fn status_serialises_times_as_rfc3339() {
        let s = SyncStatus {
            last_success: Some(std::time::UNIX_EPOCH + Duration::from_secs(86_400)),
            ..SyncStatus::default()
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["last_success"], "1970-01-02T00:00:00Z");
        assert_eq!(v["last_attempt"], serde_json::Value::Null);
    }

    #[test]
    fn file_scheme_is_case_insensitive() {
        assert_eq!(strip_scheme("FILE:///p.json", "file://"), Some("/p.json"));
        assert_eq!(strip_scheme("http://x", "file://"), None);
    }
}
