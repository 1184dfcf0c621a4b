//! The measurements: closed loop at one request at a time, open loop at a fixed rate, paced
//! streams, and many concurrently open streams. Each is bounded in count and in time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use serde::Serialize;

use crate::client::{Conn, H2Conn, RequestSpec};
use crate::stats::{Samples, Summary};

/// Where one target listens and what to send it.
#[derive(Debug, Clone)]
pub struct Target {
    /// Name in reports (`direct`, `floor`, `gateway`, …).
    pub name: String,
    /// Its address.
    pub addr: SocketAddr,
    /// The process to watch for CPU time (the proxy; the mock for `direct`).
    pub pid: Option<u32>,
}

/// The result of a closed-loop run against one target.
#[derive(Debug, Clone, Default)]
pub struct ClosedResult {
    /// Latency of each measured request.
    pub samples: Samples,
    /// Requests that failed or did not answer 200.
    pub errors: usize,
}

/// Sends `iters` requests one at a time to each target, interleaving the targets in batches of
/// `batch` so that slow drifts in machine load affect all of them alike. `warmup` requests per
/// target are sent first and not measured. Stops early when `time_limit` passes.
pub async fn closed_loop(
    targets: &[Target],
    spec: &dyn Fn(&Target) -> RequestSpec,
    iters: usize,
    warmup: usize,
    batch: usize,
    time_limit: Duration,
) -> Vec<ClosedResult> {
    let started = Instant::now();
    let mut conns = Vec::new();
    for t in targets {
        conns.push(Conn::connect(t.addr).await.ok());
    }
    let specs: Vec<RequestSpec> = targets.iter().map(spec).collect();
    let mut results = vec![ClosedResult::default(); targets.len()];
    for (i, conn) in conns.iter_mut().enumerate() {
        if let Some(c) = conn {
            for _ in 0..warmup {
                if c.send(&specs[i]).await.is_err() {
                    break;
                }
            }
        }
    }
    let batch = batch.max(1);
    let mut done = 0;
    while done < iters && started.elapsed() < time_limit {
        let n = batch.min(iters - done);
        for (i, conn) in conns.iter_mut().enumerate() {
            let Some(c) = conn else {
                results[i].errors += n;
                continue;
            };
            for _ in 0..n {
                let t0 = Instant::now();
                match c.send(&specs[i]).await {
                    Ok((status, _)) if status.is_success() => results[i].samples.push(t0.elapsed()),
                    _ => results[i].errors += 1,
                }
            }
        }
        done += n;
    }
    results
}

/// One step of an open-loop run.
#[derive(Debug, Clone, Serialize)]
pub struct OpenStep {
    /// The offered rate, requests per second.
    pub offered_rps: f64,
    /// Completed requests per second over the step.
    pub achieved_rps: f64,
    /// Latency from each request's scheduled send time (so queueing behind a slow response
    /// counts: no coordinated omission).
    pub latency: Summary,
    /// Failed, non-200 or unanswered requests.
    pub errors: usize,
    /// CPU time the watched process used per completed request, in microseconds.
    pub cpu_us_per_req: Option<f64>,
    /// The watched process's CPU use over the step, in cores (1.0 = one core busy).
    pub cpu_cores: Option<f64>,
    /// Whether the step met the bar: p99 under the limit, no errors, every request answered.
    pub ok: bool,
}

/// Sends requests at a fixed `rate` for `duration` over `conns` keep-alive connections. Arrival
/// times follow a fixed schedule; a request waits for a free connection if all are busy, and its
/// latency is measured from its scheduled time.
pub async fn open_loop(
    target: &Target,
    spec: &RequestSpec,
    rate: f64,
    duration: Duration,
    conns: usize,
    p99_limit: Duration,
) -> OpenStep {
    let total = (rate * duration.as_secs_f64()).round().max(1.0) as u64;
    let interval_ns = 1e9 / rate;
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let start = Instant::now() + Duration::from_millis(5);
    let hard_stop = start + duration + Duration::from_secs(5);
    let cpu0 = target.pid.and_then(crate::procs::cpu_time);
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let next = next.clone();
        let errors = errors.clone();
        let spec = spec.clone();
        let addr = target.addr;
        tasks.push(tokio::spawn(async move {
            let mut samples = Samples::with_capacity(usize::try_from(total).unwrap_or(0) / 8);
            let mut last_done = start;
            let Ok(mut conn) = Conn::connect(addr).await else {
                return (samples, last_done);
            };
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let sched = start + Duration::from_nanos((i as f64 * interval_ns) as u64);
                let now = Instant::now();
                if now >= hard_stop {
                    errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                if sched > now {
                    tokio::time::sleep_until(tokio::time::Instant::from_std(sched)).await;
                }
                let result = tokio::time::timeout_at(
                    tokio::time::Instant::from_std(hard_stop),
                    conn.send(&spec),
                )
                .await;
                match result {
                    Ok(Ok((status, _))) if status.is_success() => {
                        last_done = Instant::now();
                        samples.push(last_done.saturating_duration_since(sched));
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            (samples, last_done)
        }));
    }
    let mut samples = Samples::with_capacity(usize::try_from(total).unwrap_or(0));
    let mut end = start;
    for t in tasks {
        if let Ok((s, last)) = t.await {
            samples.extend(&s);
            end = end.max(last);
        }
    }
    let cpu1 = target.pid.and_then(crate::procs::cpu_time);
    let completed = samples.len();
    // Failed, non-200, or never sent before the hard stop.
    let errors = errors.load(Ordering::Relaxed).max(
        usize::try_from(total)
            .unwrap_or(0)
            .saturating_sub(completed),
    );
    let elapsed = end.saturating_duration_since(start).max(duration);
    let latency = samples.summary();
    let (cpu_us_per_req, cpu_cores) = match (cpu0, cpu1) {
        (Some(a), Some(b)) if completed > 0 => {
            let used = b.saturating_sub(a).as_secs_f64();
            (
                Some(used * 1e6 / completed as f64),
                Some(used / elapsed.as_secs_f64()),
            )
        }
        _ => (None, None),
    };
    OpenStep {
        offered_rps: rate,
        achieved_rps: completed as f64 / elapsed.as_secs_f64(),
        ok: errors == 0 && latency.p99_us < p99_limit.as_secs_f64() * 1e6,
        latency,
        errors,
        cpu_us_per_req,
        cpu_cores,
    }
}

/// Closed loop over `conns` connections for `duration`: a first estimate of the capacity.
pub async fn saturate(
    target: &Target,
    spec: &RequestSpec,
    conns: usize,
    duration: Duration,
) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let stop = start + duration;
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let done = done.clone();
        let spec = spec.clone();
        let addr = target.addr;
        tasks.push(tokio::spawn(async move {
            let Ok(mut conn) = Conn::connect(addr).await else {
                return;
            };
            while Instant::now() < stop {
                match conn.send(&spec).await {
                    Ok((s, _)) if s.is_success() => {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => return,
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// Streaming results for one target.
#[derive(Debug, Clone, Default)]
pub struct StreamResult {
    /// Time to the first body byte.
    pub first_byte: Samples,
    /// Gaps between consecutive events of one stream.
    pub gaps: Samples,
    /// Events received per stream (the minimum over the streams).
    pub min_events: usize,
    /// Streams that failed, timed out or did not answer 200.
    pub errors: usize,
    /// Gaps longer than 10× the pacing interval.
    pub stalls: usize,
}

/// Runs `rounds` rounds of `concurrent` paced streams against `target`.
pub async fn streams(
    target: &Target,
    spec: &RequestSpec,
    concurrent: usize,
    rounds: usize,
    interval: Duration,
    timeout: Duration,
) -> StreamResult {
    let mut out = StreamResult {
        min_events: usize::MAX,
        ..StreamResult::default()
    };
    for _ in 0..rounds {
        let mut tasks = Vec::new();
        // Starts are spread over one pacing interval, so that the first bytes do not queue
        // behind each other.
        let spread = interval / u32::try_from(concurrent.max(1)).unwrap_or(1);
        for i in 0..concurrent {
            let spec = spec.clone();
            let addr = target.addr;
            let delay = spread * u32::try_from(i).unwrap_or(0);
            tasks.push(tokio::spawn(async move {
                let mut conn = Conn::connect(addr).await.ok()?;
                tokio::time::sleep(delay).await;
                conn.stream(&spec, timeout).await.ok()
            }));
        }
        for t in tasks {
            match t.await.ok().flatten() {
                Some(timing) if timing.status.is_success() && !timing.events.is_empty() => {
                    out.first_byte.push(timing.first_byte);
                    out.min_events = out.min_events.min(timing.events.len());
                    for w in timing.events.windows(2) {
                        let gap = w[1].saturating_sub(w[0]);
                        if gap > interval * 10 {
                            out.stalls += 1;
                        }
                        out.gaps.push(gap);
                    }
                }
                _ => out.errors += 1,
            }
        }
    }
    if out.min_events == usize::MAX {
        out.min_events = 0;
    }
    out
}

/// How the load generator carries its streams to the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// One HTTP/1.1 connection per stream.
    Http1,
    /// HTTP/2 without TLS (h2c), this many streams per connection.
    H2c {
        /// Streams multiplexed on one connection.
        streams_per_conn: usize,
    },
}

/// Memory with many open streams.
#[derive(Debug, Clone, Serialize)]
pub struct ManyStreams {
    /// How the client side carried the streams.
    pub transport: Transport,
    /// Whether the proxy spoke h2c to the upstream (set by the caller, which configured it).
    pub upstream_h2c: bool,
    /// File descriptors (sockets, mostly) the watched process had open with the streams open.
    pub fds_open: usize,
    /// Streams asked for.
    pub requested: usize,
    /// Streams that were open (head received, first event read) at the measurement.
    pub open: usize,
    /// Streams that failed to open.
    pub failed: usize,
    /// RSS of the watched process before opening, KiB.
    pub rss_before_kib: u64,
    /// Highest RSS seen while all streams were open, KiB.
    pub rss_open_kib: u64,
    /// RSS a moment (1 s) after every stream was closed, KiB.
    pub rss_after_kib: u64,
    /// Open files of the watched process before opening.
    pub fds_before: usize,
    /// RSS once the process has settled after every stream was closed (see [`settle`]), KiB:
    /// the "RSS after load" figure.
    pub rss_settled_kib: u64,
    /// Open files at that moment.
    pub fds_settled: usize,
    /// Seconds from the last stream's close until the figure settled (or the bound passed).
    pub settle_secs: f64,
    /// Whether it settled within the bound ([`SETTLE_LIMIT`]); if not, `rss_settled_kib` is the
    /// last sample.
    pub settled: bool,
    /// `(rss_open - rss_before) / open`, bytes per stream.
    pub bytes_per_stream: f64,
    /// How long opening took, seconds.
    pub open_secs: f64,
}

/// Opens `n` long paced streams through `target` (at most `parallel` connecting at once) over
/// `transport`, waits until each has delivered its first event, samples the RSS of `pid`, then
/// closes them all. Bounded by `time_limit` for the opening.
pub async fn many_streams(
    target: &Target,
    spec: &RequestSpec,
    n: usize,
    parallel: usize,
    transport: Transport,
    pid: u32,
    time_limit: Duration,
) -> ManyStreams {
    many_streams_holding(
        target,
        spec,
        n,
        parallel,
        transport,
        pid,
        time_limit,
        std::future::ready(()),
    )
    .await
}

/// [`many_streams`], keeping the streams open until `hold` resolves (after the RSS samples).
#[allow(clippy::too_many_arguments)]
pub async fn many_streams_holding(
    target: &Target,
    spec: &RequestSpec,
    n: usize,
    parallel: usize,
    transport: Transport,
    pid: u32,
    time_limit: Duration,
    hold: impl Future<Output = ()>,
) -> ManyStreams {
    let rss = || crate::procs::rss_kib(pid).unwrap_or(0);
    let rss_before = rss();
    let fds_before = crate::procs::fd_count(pid).unwrap_or(0);
    let started = Instant::now();
    let deadline = started + time_limit;
    let opened = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // HTTP/2 connections, each shared by `streams_per_conn` consecutive streams (made on first use).
    let per_conn = match transport {
        Transport::Http1 => 1,
        Transport::H2c { streams_per_conn } => streams_per_conn.max(1),
    };
    let h2_conns: Arc<Vec<tokio::sync::OnceCell<H2Conn>>> = Arc::new(
        (0..n.div_ceil(per_conn))
            .map(|_| tokio::sync::OnceCell::new())
            .collect(),
    );
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let spec = spec.clone();
        let addr = target.addr;
        let opened = opened.clone();
        let failed = failed.clone();
        let gate = gate.clone();
        let h2_conns = h2_conns.clone();
        let mut stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            let open = async {
                let _permit = gate.acquire().await.ok()?;
                let (conn, status, mut body) = if transport == Transport::Http1 {
                    let mut conn = Conn::connect(addr).await.ok()?;
                    let (status, body) = conn.open(&spec).await.ok()?;
                    (Some(conn), status, body)
                } else {
                    let h2 = h2_conns[i / per_conn]
                        .get_or_try_init(|| H2Conn::connect(addr))
                        .await
                        .ok()?;
                    let (status, body) = h2.open(&spec).await.ok()?;
                    (None, status, body)
                };
                if !status.is_success() {
                    return None;
                }
                // Wait for the first event, so the stream is really flowing end to end.
                let first: Option<Bytes> = loop {
                    match body.frame().await {
                        Some(Ok(f)) => match f.into_data() {
                            Ok(d) if !d.is_empty() => break Some(d),
                            _ => {}
                        },
                        _ => break None,
                    }
                };
                first.map(|_| (conn, body))
            };
            let opened_stream = tokio::select! {
                r = tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), open) => r.ok().flatten(),
                _ = stop.changed() => None,
            };
            let Some((_conn, mut body)) = opened_stream else {
                failed.fetch_add(1, Ordering::Relaxed);
                return;
            };
            opened.fetch_add(1, Ordering::Relaxed);
            // Keep reading (as a client would) until told to stop.
            loop {
                tokio::select! {
                    f = body.frame() => if f.is_none() { break },
                    _ = stop.changed() => break,
                }
            }
        }));
    }
    // Wait until every stream is open or has failed, or the time limit passes.
    loop {
        let settled = opened.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed);
        if settled >= n || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let open_secs = started.elapsed().as_secs_f64();
    let open = opened.load(Ordering::Relaxed);
    // Let the process settle, then take the highest of a few samples.
    let mut rss_open = 0;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        rss_open = rss_open.max(rss());
    }
    let fds_open = crate::procs::fd_count(pid).unwrap_or(0);
    hold.await;
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    // Close the load generator's HTTP/2 connections too: every connection of the load is gone.
    drop(h2_conns);
    let closed = Instant::now();
    let mut after_1s = None;
    let settle = settle(pid, fds_before, |elapsed, rss| {
        if after_1s.is_none() && elapsed >= Duration::from_secs(1) {
            after_1s = Some(rss);
        }
    })
    .await;
    let rss_after = after_1s.unwrap_or(settle.rss_kib);
    let settle_secs = closed.elapsed().as_secs_f64();
    ManyStreams {
        transport,
        upstream_h2c: false,
        fds_open,
        requested: n,
        open,
        failed: n - open.min(n),
        rss_before_kib: rss_before,
        rss_open_kib: rss_open,
        rss_after_kib: rss_after,
        fds_before,
        rss_settled_kib: settle.rss_kib,
        fds_settled: settle.fds,
        settle_secs,
        settled: settle.settled,
        bytes_per_stream: if open > 0 {
            (rss_open.saturating_sub(rss_before) as f64 * 1024.0) / open as f64
        } else {
            0.0
        },
        open_secs,
    }
}

/// How long [`settle`] watches at least: longer than jemalloc's default `dirty_decay_ms` (10 s).
pub const SETTLE_MIN: Duration = Duration::from_secs(11);

/// How long [`settle`] waits at most for a process's RSS to settle after load.
pub const SETTLE_LIMIT: Duration = Duration::from_secs(45);

/// What [`settle`] saw last.
#[derive(Debug, Clone, Copy)]
pub struct Settled {
    /// RSS, KiB.
    pub rss_kib: u64,
    /// Open files.
    pub fds: usize,
    /// Whether the condition held before [`SETTLE_LIMIT`].
    pub settled: bool,
}

/// Waits until process `pid` has let go of a load that just ended, polling `/proc` every 200 ms
/// (at least [`SETTLE_MIN`], at most [`SETTLE_LIMIT`]): settled once its open files are back to
/// `fds_baseline` (+ 8: every connection of the load closed) and its RSS has stopped falling —
/// the last 3 s of samples lie within 1% (at least 256 KiB) of each other. An allocator that
/// returns memory gradually (jemalloc's decay, a periodic trim) is followed to its end; the
/// minimum covers jemalloc's default decay period (10 s), whose first seconds purge little.
/// `each` sees every sample (time since the start, RSS in KiB).
pub async fn settle(pid: u32, fds_baseline: usize, mut each: impl FnMut(Duration, u64)) -> Settled {
    const EVERY: Duration = Duration::from_millis(200);
    const WINDOW: usize = 15; // 3 s of samples
    let started = Instant::now();
    let mut window: std::collections::VecDeque<u64> = std::collections::VecDeque::new();
    loop {
        tokio::time::sleep(EVERY).await;
        let rss = crate::procs::rss_kib(pid).unwrap_or(0);
        let fds = crate::procs::fd_count(pid).unwrap_or(0);
        let elapsed = started.elapsed();
        each(elapsed, rss);
        window.push_back(rss);
        if window.len() > WINDOW {
            window.pop_front();
        }
        let (lo, hi) = window
            .iter()
            .fold((u64::MAX, 0), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        let flat = window.len() == WINDOW && hi - lo <= (hi / 100).max(256);
        let closed = fds <= fds_baseline + 8;
        if (flat && closed && elapsed >= SETTLE_MIN) || elapsed >= SETTLE_LIMIT {
            return Settled {
                rss_kib: rss,
                fds,
                settled: flat && closed,
            };
        }
    }
}
