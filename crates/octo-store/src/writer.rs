//! The request log's writer: the [`Observer`] that takes finished records off the hot path.
//!
//! `on_complete` does one `try_send` into a bounded queue and returns; a full queue drops the
//! record and counts it. One task owns everything else:
//!
//! - it moves queued records into a bounded buffer and writes them in batches (up to
//!   [`batch_size`](StoreConfig::batch_size) records, or whatever is there once the oldest has
//!   waited [`batch_interval`](StoreConfig::batch_interval)), one transaction per batch, while it
//!   keeps receiving;
//! - when the database is unavailable, the batch goes back to the front of the buffer and is
//!   retried with exponential backoff (100 ms doubling up to
//!   [`max_backoff`](StoreConfig::max_backoff)); records keep arriving into the buffer until it
//!   holds [`buffer_capacity`](StoreConfig::buffer_capacity) records, after which the **newest**
//!   are dropped (counted and logged), so what is written is the oldest contiguous stretch;
//! - a batch the database refuses outright (a row it cannot store) is written record by record,
//!   and only the refused records are dropped;
//! - [`flush`](LogWriter::flush) writes everything queued or buffered, waiting out outages until
//!   a deadline; [`shutdown`](LogWriter::shutdown) does the same and stops the task.
//!
//! Drops are logged at most once per [`WARN_EVERY`].
//!
//! [`LogWriter::spawn_opening`] starts the writer before the database has answered (a gateway
//! starting during a database outage): the database is opened in the background, retried with
//! the same backoff, and records wait in the buffer meanwhile, exactly as during an outage; a
//! database that answers but refuses the schema migration stops the writer (records are then
//! dropped and counted, and the error is logged).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use octo_core::record::{Observer, Record};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::config::StoreConfig;
use crate::error::{ErrorKind, StoreError};
use crate::schema::MAX_ID_LEN;
use crate::{LogConn, Store, now_ms};

/// The shortest wait before retrying an unavailable database.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// The shortest per-write deadline accepted (a shorter one would fail every write).
const MIN_WRITE_TIMEOUT: Duration = Duration::from_millis(100);
/// Drop warnings are logged at most this often.
pub const WARN_EVERY: Duration = Duration::from_secs(10);

/// The writer's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Records written to the database.
    pub written: u64,
    /// Records dropped: queue full, buffer full, writer stopped, or refused by the database.
    pub dropped: u64,
    /// Records queued or buffered, not yet written.
    pub pending: u64,
    /// The last write error, cleared by the next successful write.
    pub last_error: Option<String>,
}

#[derive(Default)]
struct State {
    /// The database answered the last open or write (the `octollm_log_database_up` gauge).
    up: AtomicBool,
    written: AtomicU64,
    dropped: AtomicU64,
    buffered: AtomicU64,
    last_warn_ms: AtomicI64,
    last_fail_warn_ms: AtomicI64,
    last_error: Mutex<Option<String>>,
}

impl State {
    fn drop_records(&self, n: u64, why: &str) {
        if n == 0 {
            return;
        }
        let total = self.dropped.fetch_add(n, Ordering::Relaxed) + n;
        let now = now_ms();
        let last = self.last_warn_ms.load(Ordering::Relaxed);
        if now - last >= WARN_EVERY.as_millis() as i64
            && self
                .last_warn_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                dropped_total = total,
                "request log: records dropped ({why})"
            );
        }
    }

    /// Logs a failed write whose records are kept for a retry, at most once per [`WARN_EVERY`].
    fn write_failed(&self, e: &StoreError, kept: usize) {
        let now = now_ms();
        let last = self.last_fail_warn_ms.load(Ordering::Relaxed);
        if now - last >= WARN_EVERY.as_millis() as i64
            && self
                .last_fail_warn_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                error = %e,
                kept,
                "request log: write failed; the records are kept and retried with backoff"
            );
        } else {
            tracing::debug!(error = %e, kept, "request log: write failed");
        }
    }

    fn set_error(&self, e: Option<&StoreError>) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = e.map(ToString::to_string);
    }
}

enum Control {
    Flush {
        deadline: Instant,
        reply: oneshot::Sender<Result<(), StoreError>>,
        stop: bool,
    },
}

/// Whether the writer's database is open yet.
#[derive(Debug, Clone)]
enum Opened {
    /// Being opened (retried with backoff while it is unreachable).
    Pending,
    Open(Store),
    /// It answered but cannot be used (the migration failed): the writer stops.
    Failed,
}

/// Writes finished records to a [`Store`] in the background; see the [module docs](self).
#[derive(Debug)]
pub struct LogWriter {
    queue: mpsc::Sender<Arc<Record>>,
    control: mpsc::UnboundedSender<Control>,
    state: Arc<State>,
    opened: watch::Receiver<Opened>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State").finish_non_exhaustive()
    }
}

impl LogWriter {
    /// Starts the writer task (on the current Tokio runtime) with `config`'s queue, buffer and
    /// batch settings.
    pub fn spawn(store: Store, config: &StoreConfig) -> Arc<LogWriter> {
        let (tx, opened) = watch::channel(Opened::Open(store));
        let writer = Self::start(config, opened);
        writer.state.up.store(true, Ordering::Relaxed);
        drop(tx);
        writer
    }

    /// Starts the writer now and opens `config`'s database in the background (on the current
    /// Tokio runtime): an unreachable database is retried with exponential backoff (100 ms up
    /// to [`max_backoff`](StoreConfig::max_backoff)) while records wait in the buffer, as during
    /// an outage. A database that answers but refuses to open (its schema is newer than this
    /// build, a migration fails) is logged as an error and stops the writer.
    pub fn spawn_opening(config: &StoreConfig) -> Arc<LogWriter> {
        let (tx, opened) = watch::channel(Opened::Pending);
        let writer = Self::start(config, opened);
        let state = writer.state.clone();
        let config = config.clone();
        tokio::spawn(async move {
            let mut backoff = MIN_BACKOFF;
            let mut failures = 0u64;
            loop {
                let attempt = tokio::select! {
                    r = Store::open(&config) => r,
                    () = tx.closed() => return, // the writer has stopped
                };
                match attempt {
                    Ok(store) => {
                        state.set_error(None);
                        state.up.store(true, Ordering::Relaxed);
                        if failures > 0 {
                            tracing::info!(
                                backend = store.backend().name(),
                                "storage: the request log's database answered; buffered records are being written"
                            );
                        }
                        let _ = tx.send(Opened::Open(store));
                        return;
                    }
                    Err(e) if e.is_retryable() => {
                        failures += 1;
                        state.set_error(Some(&e));
                        tracing::debug!(error = %e, "storage: the request log's database is still unreachable");
                        tokio::select! {
                            () = tokio::time::sleep(backoff) => {}
                            () = tx.closed() => return,
                        }
                        backoff = (backoff * 2).min(config.max_backoff.max(MIN_BACKOFF));
                    }
                    Err(e) => {
                        state.set_error(Some(&e));
                        tracing::error!(
                            error = %e,
                            "storage: the request log's database cannot be used; records are dropped until the gateway is restarted"
                        );
                        let _ = tx.send(Opened::Failed);
                        return;
                    }
                }
            }
        });
        writer
    }

    fn start(config: &StoreConfig, opened: watch::Receiver<Opened>) -> Arc<LogWriter> {
        let (queue, rx) = mpsc::channel(config.queue_capacity.max(1));
        let (control, ctl) = mpsc::unbounded_channel();
        let state = Arc::new(State::default());
        let task = Task {
            opened: opened.clone(),
            batch_size: config.batch_size.max(1),
            interval: config.batch_interval,
            buffer_capacity: config.buffer_capacity.max(config.batch_size.max(1)),
            max_backoff: config.max_backoff.max(MIN_BACKOFF),
            write_timeout: config.write_timeout.max(MIN_WRITE_TIMEOUT),
            state: state.clone(),
        };
        tokio::spawn(task.run(rx, ctl));
        Arc::new(LogWriter {
            queue,
            control,
            state,
            opened,
        })
    }

    /// The database, once it is open.
    pub fn store(&self) -> Option<Store> {
        match &*self.opened.borrow() {
            Opened::Open(s) => Some(s.clone()),
            _ => None,
        }
    }

    /// Waits until the database is open; `None` when it cannot be used (see
    /// [`spawn_opening`](Self::spawn_opening)).
    pub async fn opened(&self) -> Option<Store> {
        let mut rx = self.opened.clone();
        let opened = rx
            .wait_for(|o| !matches!(o, Opened::Pending))
            .await
            .ok()
            .map(|o| o.clone());
        match opened {
            Some(Opened::Open(s)) => Some(s),
            _ => None,
        }
    }

    /// Whether the database answered the last open attempt or write (the
    /// `octollm_log_database_up` gauge).
    pub fn is_up(&self) -> bool {
        self.state.up.load(Ordering::Relaxed)
    }

    /// The counters now.
    pub fn stats(&self) -> WriterStats {
        WriterStats {
            written: self.state.written.load(Ordering::Relaxed),
            dropped: self.dropped(),
            pending: self.pending(),
            last_error: self
                .state
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }

    /// Records dropped so far (`octollm_log_records_dropped_total`).
    pub fn dropped(&self) -> u64 {
        self.state.dropped.load(Ordering::Relaxed)
    }

    /// Records written so far.
    pub fn written(&self) -> u64 {
        self.state.written.load(Ordering::Relaxed)
    }

    /// Records queued or buffered, not yet written.
    pub fn pending(&self) -> u64 {
        let queued = self.queue.max_capacity() - self.queue.capacity();
        queued as u64 + self.state.buffered.load(Ordering::Relaxed)
    }

    /// Writes every record queued before the call, waiting out database outages until
    /// `deadline`. Errs (retryable, [`ErrorKind::Unavailable`]) naming how many records are
    /// still pending when the deadline passes, or [`ErrorKind::Closed`] after shutdown.
    pub async fn flush(&self, deadline: std::time::Instant) -> Result<(), StoreError> {
        self.request(deadline, false).await
    }

    /// Flushes like [`flush`](Self::flush), then stops the writer: later records are dropped
    /// and counted. Call it on SIGTERM with the drain deadline.
    pub async fn shutdown(&self, deadline: std::time::Instant) -> Result<(), StoreError> {
        self.request(deadline, true).await
    }

    async fn request(&self, deadline: std::time::Instant, stop: bool) -> Result<(), StoreError> {
        let closed = || StoreError::new(ErrorKind::Closed, false, "the log writer has stopped");
        let deadline = Instant::from_std(deadline);
        let (reply, rx) = oneshot::channel();
        self.control
            .send(Control::Flush {
                deadline,
                reply,
                stop,
            })
            .map_err(|_| closed())?;
        // The task answers at the deadline; the extra second covers a write stuck in a driver.
        match tokio::time::timeout_at(deadline + Duration::from_secs(1), rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(closed()),
            Err(_) => Err(self.not_flushed()),
        }
    }

    fn not_flushed(&self) -> StoreError {
        StoreError::new(
            ErrorKind::Unavailable,
            true,
            format!(
                "{} request log records not written before the deadline",
                self.pending()
            ),
        )
    }
}

impl Observer for LogWriter {
    fn on_complete(&self, record: &Arc<Record>) {
        if record.id.len() > MAX_ID_LEN {
            self.state.drop_records(1, "record id too long");
            return;
        }
        match self.queue.try_send(record.clone()) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => self.state.drop_records(1, "queue full"),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.state.drop_records(1, "writer stopped")
            }
        }
    }
}

/// What one write attempt did.
struct Done {
    written: u64,
    refused: u64,
    /// Records to try again (the database was unavailable), in order.
    retry: Vec<Arc<Record>>,
    error: Option<StoreError>,
    /// Why the last refused record was refused.
    refused_error: Option<StoreError>,
    /// The writer's connection, handed back for the next write.
    conn: LogConn,
}

type Writing = Pin<Box<dyn Future<Output = Done> + Send>>;

struct Task {
    opened: watch::Receiver<Opened>,
    batch_size: usize,
    interval: Duration,
    buffer_capacity: usize,
    max_backoff: Duration,
    write_timeout: Duration,
    state: Arc<State>,
}

struct Waiter {
    deadline: Instant,
    reply: oneshot::Sender<Result<(), StoreError>>,
    stop: bool,
}

impl Task {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Arc<Record>>,
        mut ctl: mpsc::UnboundedReceiver<Control>,
    ) {
        let mut store: Option<Store> = None;
        // The writer's own connection, lent to each write and handed back with its result.
        let mut conn = Some(LogConn::default());
        let mut buf: VecDeque<Arc<Record>> = VecDeque::new();
        let mut in_flight: Option<(usize, Writing)> = None;
        // How many records at the front of `buf` were in a write that failed: that write may
        // have committed (the answer was lost), so their next write checks the log first.
        let mut unsure = 0usize;
        // When the oldest buffered record arrived (a batch is due `interval` later).
        let mut oldest: Option<Instant> = None;
        let mut retry_at: Option<Instant> = None;
        let mut backoff = Duration::ZERO;
        let mut waiters: Vec<Waiter> = Vec::new();
        let mut incoming = Vec::with_capacity(self.batch_size);
        let mut receiving = true;
        loop {
            if store.is_none() {
                let opened = self.opened.borrow_and_update().clone();
                match opened {
                    Opened::Open(s) => store = Some(s),
                    Opened::Failed => {
                        rx.close();
                        let mut left = buf.len();
                        while rx.try_recv().is_ok() {
                            left += 1;
                        }
                        self.state
                            .drop_records(left as u64, "the request log's database cannot be used");
                        self.state.buffered.store(0, Ordering::Relaxed);
                        for w in waiters.drain(..) {
                            let _ = w.reply.send(Err(StoreError::new(
                                ErrorKind::Closed,
                                false,
                                "the request log's database cannot be used",
                            )));
                        }
                        // Answer later flushes and drop later records until every handle is gone.
                        while let Some(Control::Flush { reply, .. }) = ctl.recv().await {
                            let _ = reply.send(Err(StoreError::new(
                                ErrorKind::Closed,
                                false,
                                "the request log's database cannot be used",
                            )));
                        }
                        return;
                    }
                    Opened::Pending => {}
                }
            }
            let flushing = !waiters.is_empty() || !receiving;
            // Start a write when one is due and none is running.
            let now = Instant::now();
            if let Some(store) = &store
                && in_flight.is_none()
                && !buf.is_empty()
                && retry_at.is_none_or(|t| t <= now)
            {
                let due = flushing
                    || retry_at.is_some()
                    || buf.len() >= self.batch_size
                    || oldest.is_some_and(|t| now >= t + self.interval);
                if due {
                    retry_at = None;
                    let n = buf.len().min(self.batch_size);
                    let batch: Vec<Arc<Record>> = buf.drain(..n).collect();
                    let check = unsure > 0;
                    unsure = unsure.saturating_sub(n);
                    oldest = (!buf.is_empty()).then_some(now);
                    let c = conn.take().unwrap_or_default();
                    let w = write(store.clone(), c, batch, check, self.write_timeout);
                    in_flight = Some((n, Box::pin(w)));
                }
            }
            // Answer flushes that are done or out of time.
            if !waiters.is_empty() {
                let idle = buf.is_empty() && in_flight.is_none() && rx.is_empty();
                let mut stop = false;
                waiters.retain_mut(|w| {
                    if idle || now >= w.deadline {
                        stop |= w.stop;
                        let pending =
                            buf.len() + in_flight.as_ref().map_or(0, |(n, _)| *n) + rx.len();
                        let r = if idle {
                            Ok(())
                        } else {
                            Err(StoreError::new(
                                ErrorKind::Unavailable,
                                true,
                                format!(
                                    "{pending} request log records not written before the deadline"
                                ),
                            ))
                        };
                        let (tx, _) = oneshot::channel();
                        let _ = std::mem::replace(&mut w.reply, tx).send(r);
                        false
                    } else {
                        true
                    }
                });
                if stop {
                    let left = buf.len() + in_flight.as_ref().map_or(0, |(n, _)| *n) + rx.len();
                    self.state
                        .drop_records(left as u64, "writer stopped before the database returned");
                    self.state.buffered.store(0, Ordering::Relaxed);
                    return;
                }
            }
            if !receiving && buf.is_empty() && in_flight.is_none() && waiters.is_empty() {
                return; // every LogWriter handle is gone and everything is written
            }
            // The next write is due at the retry time, else when the oldest record has waited
            // long enough; while one is running, its completion wakes the loop instead.
            let next_write = match (&in_flight, retry_at) {
                _ if store.is_none() => None,
                (Some(_), _) => None,
                (None, Some(t)) => Some(t),
                (None, None) => oldest.map(|t| t + self.interval),
            };
            let wake = [next_write, waiters.iter().map(|w| w.deadline).min()]
                .into_iter()
                .flatten()
                .min();
            let room = self.buffer_capacity.saturating_sub(buf.len()).max(1);
            let opening = store.is_none();
            tokio::select! {
                Ok(()) = self.opened.changed(), if opening => {}
                Some(Control::Flush { deadline, reply, stop }) = ctl.recv() => {
                    if stop {
                        rx.close();
                    }
                    waiters.push(Waiter { deadline, reply, stop });
                }
                done = async { match in_flight.as_mut() {
                    Some((_, f)) => f.await,
                    None => std::future::pending().await,
                } } => {
                    in_flight = None;
                    conn = Some(done.conn);
                    let kept = done.retry.len();
                    self.state.up.store(kept == 0, Ordering::Relaxed);
                    self.state.written.fetch_add(done.written, Ordering::Relaxed);
                    if done.refused > 0 {
                        let why = match &done.refused_error {
                            Some(e) => format!("refused by the database: {e}"),
                            None => "refused by the database".to_owned(),
                        };
                        self.state.drop_records(done.refused, &why);
                    }
                    if done.retry.is_empty() {
                        backoff = Duration::ZERO;
                        if done.error.is_none() {
                            self.state.set_error(None);
                        }
                    } else {
                        backoff = (backoff * 2).clamp(MIN_BACKOFF, self.max_backoff);
                        retry_at = Some(Instant::now() + backoff);
                        unsure += done.retry.len();
                        for r in done.retry.into_iter().rev() {
                            buf.push_front(r);
                        }
                        oldest.get_or_insert_with(Instant::now);
                    }
                    if let Some(e) = &done.error {
                        if kept > 0 {
                            self.state.write_failed(e, buf.len());
                        }
                        self.state.set_error(Some(e));
                    }
                }
                n = rx.recv_many(&mut incoming, room.min(self.batch_size)), if receiving => {
                    if n == 0 {
                        receiving = false;
                    }
                    for r in incoming.drain(..) {
                        if buf.len() >= self.buffer_capacity {
                            self.state.drop_records(1, "buffer full while the database is unavailable");
                        } else {
                            buf.push_back(r);
                            oldest.get_or_insert_with(Instant::now);
                        }
                    }
                }
                _ = tokio::time::sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {}
            }
            let held = buf.len() + in_flight.as_ref().map_or(0, |(n, _)| *n);
            self.state.buffered.store(held as u64, Ordering::Relaxed);
        }
    }
}

/// Writes `records` on `conn` within `timeout` (see [`Store::write_batch`]): a write that does
/// not finish in time (a database that hangs without closing the connection) fails like a broken
/// connection — retryable, and the connection is dropped, so the next write opens a new one.
async fn timed(
    store: &Store,
    conn: &mut LogConn,
    records: &[Arc<Record>],
    check: bool,
    timeout: Duration,
) -> Result<(), StoreError> {
    let r = tokio::time::timeout(timeout, store.write_batch(Some(conn), records, check)).await;
    r.unwrap_or_else(|_| {
        conn.reset();
        Err(StoreError::new(
            ErrorKind::Unavailable,
            true,
            format!(
                "the database did not finish a write within storage.write_timeout ({})",
                humantime::format_duration(timeout)
            ),
        ))
    })
}

/// Writes a batch on the writer's connection (checking the log for its ids first when `check`:
/// see [`Store::write_batch`]), each write within `timeout`; on a refusal, writes its records
/// one by one, checked, and drops only the refused.
async fn write(
    store: Store,
    mut conn: LogConn,
    batch: Vec<Arc<Record>>,
    check: bool,
    timeout: Duration,
) -> Done {
    let n = batch.len() as u64;
    let first = timed(&store, &mut conn, &batch, check, timeout).await;
    match first {
        Ok(()) => Done {
            written: n,
            refused: 0,
            refused_error: None,
            retry: Vec::new(),
            error: None,
            conn,
        },
        Err(e) if e.is_retryable() => Done {
            written: 0,
            refused: 0,
            refused_error: None,
            retry: batch,
            error: Some(e),
            conn,
        },
        Err(first) => {
            let mut done = Done {
                written: 0,
                refused: 0,
                refused_error: None,
                retry: Vec::new(),
                error: Some(first),
                conn,
            };
            for (i, r) in batch.iter().enumerate() {
                let one = std::slice::from_ref(r);
                match timed(&store, &mut done.conn, one, true, timeout).await {
                    Ok(()) => done.written += 1,
                    Err(e) if e.is_retryable() => {
                        done.retry = batch[i..].to_vec();
                        done.error = Some(e);
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(id = %r.id, error = %e, "request log: record refused by the database");
                        done.refused += 1;
                        done.refused_error = Some(e.clone());
                        done.error = Some(e);
                    }
                }
            }
            done
        }
    }
}
