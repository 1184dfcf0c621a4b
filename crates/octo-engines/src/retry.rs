//! What a [`TargetSet`](crate::balance::TargetSet) retries under, and what it records.
//!
//! [`RetryPolicy`] bounds the attempts for one request (count, deadline, waits between rounds);
//! [`Attempts`] collects one [`AttemptRecord`] per attempt or skip, with its [`AttemptOutcome`], in
//! the request's and the response's extensions. The algorithm that uses them is described in
//! [`balance::target_set`](crate::balance::target_set).

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::StatusCode;

/// How hard a [`TargetSet`](crate::balance::TargetSet) tries: attempts, deadline and waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The most attempts per request, the first included (`0` counts as 1). Default 3.
    pub max_attempts: u32,
    /// No attempt or wait starts later than this after the request began. Default 30 s.
    pub deadline: Duration,
    /// The wait before retrying targets already tried, when none of them sent `retry-after`.
    /// Default 100 ms.
    pub backoff: Duration,
    /// The longest wait before a new round. An upstream asking for a longer `retry-after` gets its
    /// error (with the `retry-after`) passed to the client at once, whose own retry logic can wait:
    /// holding a connection open for a long back-off helps nobody. Default 2 s.
    pub max_wait: Duration,
    /// Hold a streaming response until its first event, so a stream that fails before producing
    /// anything can still fail over. Default `true`.
    pub wait_first_event: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            deadline: Duration::from_secs(30),
            backoff: Duration::from_millis(100),
            max_wait: Duration::from_secs(2),
            wait_first_event: true,
        }
    }
}

impl RetryPolicy {
    /// `max_attempts` and `deadline`, defaults for the rest.
    pub fn new(max_attempts: u32, deadline: Duration) -> Self {
        RetryPolicy {
            max_attempts,
            deadline,
            ..RetryPolicy::default()
        }
    }
}

/// One attempt (or skip) made for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    /// The target's name.
    pub target: String,
    /// The upstream model the attempt asked for, when the target renames it.
    pub model: Option<String>,
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// The HTTP status of the answer or error (`None` when skipped).
    pub status: Option<StatusCode>,
    /// From the start of the attempt to its answer (to the first event for a stream) or error.
    pub elapsed: Duration,
    /// The error's message, for failures (never carries credentials).
    pub error: Option<String>,
}

/// The attempts made for one request, shared between the request, its copies and the response.
///
/// ```
/// use octo_engines::retry::Attempts;
///
/// let attempts = Attempts::default();
/// assert!(attempts.is_empty());
/// ```
#[derive(Clone, Default)]
pub struct Attempts(Arc<Mutex<Vec<AttemptRecord>>>);

/// Records kept per request (a bound against runaway nesting).
const MAX_RECORDS: usize = 256;

impl Attempts {
    /// Appends a record (silently dropped beyond 256 records).
    pub fn push(&self, record: AttemptRecord) {
        let mut v = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if v.len() < MAX_RECORDS {
            v.push(record);
        }
    }

    /// A copy of the records so far, oldest first.
    pub fn snapshot(&self) -> Vec<AttemptRecord> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The number of records.
    pub fn len(&self) -> usize {
        self.0.lock().map(|v| v.len()).unwrap_or(0)
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for Attempts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.snapshot()).finish()
    }
}

/// How one attempt on a target ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttemptOutcome {
    /// The target answered and the answer was returned to the caller.
    Success,
    /// A retryable failure (connect, timeout, 408, 429, 5xx, or a stream that failed before its
    /// first event): the next target may be tried.
    Failed,
    /// A non-retryable error (a client error): returned to the caller at once.
    Rejected,
    /// Not sent: the target reported itself unavailable (circuit open, every key cooling down).
    Skipped,
}

impl AttemptOutcome {
    /// A short lowercase name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Success => "success",
            AttemptOutcome::Failed => "failed",
            AttemptOutcome::Rejected => "rejected",
            AttemptOutcome::Skipped => "skipped",
        }
    }
}

impl fmt::Display for AttemptOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
