//! The gateway's own overhead: per request, the total time minus the time spent waiting on
//! upstreams, recorded in a process-wide lock-free histogram.
//!
//! - The front ([`crate::http::Router`]) gives every engine request an [`UpstreamTime`] (in its
//!   [`RequestRecord`](crate::record::RequestRecord), or in its extensions when the route is not
//!   recorded; [`Request::upstream_time`](crate::Request::upstream_time) finds either) and starts
//!   an [`OverheadTimer`] when the request head arrives.
//! - The HTTP client engine adds what it waits for to that accumulator: the response head, and
//!   every stretch in which the gateway asked for the next body chunk and the upstream had none yet.
//!   Retries and failovers add each attempt's wait.
//! - When the response is complete (for a stream: when its last event has been handed to the
//!   connection, or the client went away) the request's [`RequestRecord`](crate::record::RequestRecord)
//!   completes with `overhead_ns = total − upstream`, and the [`OverheadObserver`] the front
//!   installs records it in [`global()`]. [`OverheadTimer`] does the same for code without a record.
//!
//! Recording costs a handful of relaxed atomic adds. `GET /debug/overhead`
//! ([`crate::http::Router::overhead_route`]) serves [`Histogram::snapshot`] as JSON.
//!
//! What counts as overhead: routing, auth, rules, body handling, conversion, the gateway's share of
//! writing to both sockets, retry back-off sleeps, and receiving the request body (a slow uploading
//! client shows up here too). Time the client makes the gateway wait by not reading a stream
//! counts as overhead as well; on a healthy client it is negligible.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::json;

/// Time spent waiting on upstreams for one request, shared by every clone of the request.
#[derive(Debug, Clone, Default)]
pub struct UpstreamTime(Arc<AtomicU64>);

impl UpstreamTime {
    /// A zeroed accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `d` of upstream waiting.
    pub fn add(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.0.fetch_add(ns, Ordering::Relaxed);
    }

    /// The total so far.
    pub fn get(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::Relaxed))
    }
}

/// Sub-buckets per power of two (8: each bucket is at most 12.5% wide).
const SUB_BITS: u32 = 3;
const SUB: usize = 1 << SUB_BITS;
/// Highest power of two tracked exactly (2^40 ns ≈ 18 minutes); larger values land in the last bucket.
const MAX_EXP: u32 = 40;
/// Number of buckets.
pub const BUCKETS: usize = SUB + (MAX_EXP - SUB_BITS + 1) as usize * SUB;

fn bucket_of(ns: u64) -> usize {
    if ns < SUB as u64 {
        return ns as usize;
    }
    let exp = 63 - ns.leading_zeros();
    if exp > MAX_EXP {
        return BUCKETS - 1;
    }
    let mantissa = ((ns >> (exp - SUB_BITS)) as usize) & (SUB - 1);
    SUB + (exp - SUB_BITS) as usize * SUB + mantissa
}

/// `[low, high)` of bucket `i`, in nanoseconds.
fn bucket_range(i: usize) -> (u64, u64) {
    if i < SUB {
        return (i as u64, i as u64 + 1);
    }
    let exp = (i - SUB) / SUB + SUB_BITS as usize;
    let mantissa = ((i - SUB) % SUB) as u64;
    let shift = exp - SUB_BITS as usize;
    let low = (SUB as u64 + mantissa) << shift;
    (low, low + (1u64 << shift))
}

/// A lock-free histogram of durations with fixed log-scale buckets (about 12% resolution from
/// 8 ns to 18 minutes).
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    count: AtomicU64,
    sum_ns: AtomicU64,
    max_ns: AtomicU64,
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.count.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    /// An empty histogram.
    pub const fn new() -> Self {
        Histogram {
            buckets: [const { AtomicU64::new(0) }; BUCKETS],
            count: AtomicU64::new(0),
            sum_ns: AtomicU64::new(0),
            max_ns: AtomicU64::new(0),
        }
    }

    /// Records one duration.
    pub fn record(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.buckets[bucket_of(ns)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
        self.max_ns.fetch_max(ns, Ordering::Relaxed);
    }

    /// A point-in-time copy (buckets are read one by one, so a concurrent record may be half in).
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            buckets: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            count: self.count.load(Ordering::Relaxed),
            sum_ns: self.sum_ns.load(Ordering::Relaxed),
            max_ns: self.max_ns.load(Ordering::Relaxed),
        }
    }
}

/// A copy of a [`Histogram`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    buckets: Vec<u64>,
    /// How many durations were recorded.
    pub count: u64,
    /// Their sum, in nanoseconds.
    pub sum_ns: u64,
    /// The largest, in nanoseconds.
    pub max_ns: u64,
}

impl Snapshot {
    /// The `p`th percentile (0–100): the middle of the bucket holding that rank, never above the
    /// maximum. Zero when empty.
    pub fn percentile(&self, p: f64) -> Duration {
        let total: u64 = self.buckets.iter().sum();
        if total == 0 {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0 * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let (low, high) = bucket_range(i);
                let mid = low + (high - low) / 2;
                return Duration::from_nanos(mid.min(self.max_ns.max(low)));
            }
        }
        Duration::from_nanos(self.max_ns)
    }

    /// The mean.
    pub fn mean(&self) -> Duration {
        Duration::from_nanos(self.sum_ns.checked_div(self.count).unwrap_or(0))
    }

    /// The JSON served at `/debug/overhead`: count, mean, percentiles and max in microseconds, and
    /// the non-empty buckets as `[upper bound µs, count]`.
    pub fn to_json(&self) -> serde_json::Value {
        let us = |d: Duration| (d.as_nanos() as f64 / 100.0).round() / 10.0;
        let buckets: Vec<serde_json::Value> = self
            .buckets
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, n)| json!([bucket_range(i).1 as f64 / 1000.0, n]))
            .collect();
        json!({
            "what": "per request: total time in the gateway minus time waiting on upstreams",
            "count": self.count,
            "mean_us": us(self.mean()),
            "p50_us": us(self.percentile(50.0)),
            "p90_us": us(self.percentile(90.0)),
            "p99_us": us(self.percentile(99.0)),
            "p999_us": us(self.percentile(99.9)),
            "max_us": us(Duration::from_nanos(self.max_ns)),
            "buckets": buckets,
        })
    }

    /// [`Snapshot::to_json`] as bytes.
    pub fn to_json_bytes(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(&self.to_json()).unwrap_or_default())
    }
}

static GLOBAL: Histogram = Histogram::new();

/// The overhead histogram as an [`Observer`](crate::record::Observer): records each finished
/// request's `overhead_ns`. The front installs one on [`global()`] by default.
#[derive(Debug, Clone, Copy)]
pub struct OverheadObserver(&'static Histogram);

impl OverheadObserver {
    /// Records into `histogram`.
    pub const fn new(histogram: &'static Histogram) -> Self {
        OverheadObserver(histogram)
    }

    /// Records into [`global()`].
    pub const fn global() -> Self {
        OverheadObserver(&GLOBAL)
    }
}

impl crate::record::Observer for OverheadObserver {
    fn on_complete(&self, record: &std::sync::Arc<crate::record::Record>) {
        self.0.record(Duration::from_nanos(record.overhead_ns));
    }
}

/// The process-wide overhead histogram the front records into.
pub fn global() -> &'static Histogram {
    &GLOBAL
}

/// Times one request; records `elapsed − upstream` into a histogram once, on
/// [`OverheadTimer::finish`] or on drop.
#[derive(Debug)]
pub struct OverheadTimer {
    start: Instant,
    upstream: UpstreamTime,
    histogram: &'static Histogram,
    done: bool,
}

impl OverheadTimer {
    /// Starts timing now, against [`global()`].
    pub fn start(upstream: UpstreamTime) -> Self {
        Self::start_at(Instant::now(), upstream, global())
    }

    /// Starts timing from `start`, recording into `histogram`.
    pub fn start_at(start: Instant, upstream: UpstreamTime, histogram: &'static Histogram) -> Self {
        OverheadTimer {
            start,
            upstream,
            histogram,
            done: false,
        }
    }

    /// The overhead so far.
    pub fn overhead(&self) -> Duration {
        self.start.elapsed().saturating_sub(self.upstream.get())
    }

    /// Records now (once).
    pub fn finish(&mut self) {
        if !self.done {
            self.done = true;
            self.histogram.record(self.overhead());
        }
    }
}

impl Drop for OverheadTimer {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_monotonic() {
        let mut prev_high = 0;
        for i in 0..BUCKETS {
            let (low, high) = bucket_range(i);
            assert_eq!(low, prev_high, "bucket {i}");
            assert!(high > low);
            assert_eq!(bucket_of(low), i);
            assert_eq!(bucket_of(high - 1), i);
            prev_high = high;
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        // Resolution: no bucket above 8 ns is wider than 1/8 of its lower bound.
        for i in SUB..BUCKETS {
            let (low, high) = bucket_range(i);
            assert!((high - low) * 8 <= low, "bucket {i}: {low}..{high}");
        }
    }

    #[test]
    fn percentiles_are_within_a_bucket() {
        static H: Histogram = Histogram::new();
        for us in 1..=1000u64 {
            H.record(Duration::from_micros(us));
        }
        let s = H.snapshot();
        assert_eq!(s.count, 1000);
        let close = |d: Duration, want_us: f64| {
            let got = d.as_nanos() as f64 / 1000.0;
            assert!(
                (got - want_us).abs() <= want_us * 0.07,
                "{got} vs {want_us}"
            );
        };
        close(s.percentile(50.0), 500.0);
        close(s.percentile(99.0), 990.0);
        assert_eq!(s.percentile(100.0), Duration::from_micros(1000));
        close(s.mean(), 500.5);
        let j = s.to_json();
        assert_eq!(j["count"], 1000);
        assert_eq!(j["max_us"], 1000.0);
        assert!(!j["buckets"].as_array().unwrap().is_empty());
    }

    #[test]
    fn timer_subtracts_upstream_time_and_records_once() {
        static H: Histogram = Histogram::new();
        let upstream = UpstreamTime::new();
        let start = Instant::now() - Duration::from_millis(10);
        let mut t = OverheadTimer::start_at(start, upstream.clone(), &H);
        upstream.clone().add(Duration::from_millis(9));
        assert!(t.overhead() >= Duration::from_millis(1));
        assert!(t.overhead() < Duration::from_millis(9));
        t.finish();
        drop(t);
        assert_eq!(H.snapshot().count, 1);
        // Upstream time larger than the total (clock skew between measurements) saturates at 0.
        let t = OverheadTimer::start_at(Instant::now(), UpstreamTime::new(), &H);
        t.upstream.add(Duration::from_secs(1));
        assert_eq!(t.overhead(), Duration::ZERO);
    }

    #[test]
    fn empty_snapshot() {
        let s = Histogram::new().snapshot();
        assert_eq!(s.percentile(99.0), Duration::ZERO);
        assert_eq!(s.to_json()["count"], 0);
    }
}
