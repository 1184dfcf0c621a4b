//! Server state shared by every connection and the library handle: the request log, the counters
//! (published through a `watch` channel so waiters wake on change instead of polling) and the
//! deterministic id / jitter sequences.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::{HeaderMap, Method, Version};
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use crate::MockConfig;

/// How many requests the log keeps (oldest dropped first).
pub(crate) const LOG_CAPACITY: usize = 256;

/// One request as the mock received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// HTTP method.
    pub method: Method,
    /// Path and query, e.g. `/v1beta/models/m:streamGenerateContent?alt=sse`.
    pub path_and_query: String,
    /// All request headers.
    pub headers: HeaderMap,
    /// The complete request body.
    pub body: Bytes,
    /// The HTTP version the request arrived in (`HTTP/1.1`, or `HTTP/2.0` over h2c).
    pub version: Version,
}

impl RecordedRequest {
    /// The body parsed as JSON, if it is JSON.
    pub fn body_json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The first value of header `name` if it is visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// FNV-1a 64-bit digest of the body as 16 lowercase hex digits (also in `/_mock/requests`).
    pub fn body_fnv64(&self) -> String {
        format!("{:016x}", fnv1a64(&self.body))
    }

    /// The introspection JSON of this request; with `with_body`, also `body`: the body as JSON
    /// when it is JSON, else as (lossy UTF-8) text.
    pub(crate) fn to_json(&self, with_body: bool) -> Value {
        let mut headers = Map::new();
        for (name, value) in &self.headers {
            let value = String::from_utf8_lossy(value.as_bytes());
            match headers.get_mut(name.as_str()) {
                Some(Value::String(existing)) => {
                    existing.push_str(", ");
                    existing.push_str(&value);
                }
                _ => {
                    headers.insert(name.as_str().to_owned(), Value::String(value.into_owned()));
                }
            }
        }
        let mut out = json!({
            "method": self.method.as_str(),
            "version": format!("{:?}", self.version),
            "path_and_query": self.path_and_query,
            "headers": headers,
            "body_len": self.body.len(),
            "body_fnv64": self.body_fnv64(),
        });
        if with_body {
            out["body"] = self
                .body_json()
                .unwrap_or_else(|| Value::String(String::from_utf8_lossy(&self.body).into_owned()));
        }
        out
    }
}

/// FNV-1a, 64-bit.
pub(crate) fn fnv1a64(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Counters of a [`MockServer`](crate::MockServer); see the crate docs for their exact meaning.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MockStats {
    /// Recorded requests (everything but `/_mock/*`).
    pub requests: u64,
    /// Streamed responses whose head was sent.
    pub streams_started: u64,
    /// Streams whose last event was handed to the connection.
    pub streams_completed: u64,
    /// Streams dropped before their last event (the client went away).
    pub streams_cancelled: u64,
    /// Streams failed on purpose by the `abort` directive.
    pub streams_aborted: u64,
    /// Requests dropped before their response head (during `latency_ms` or `timeout`).
    pub requests_cancelled: u64,
}

impl MockStats {
    pub(crate) fn to_json(self) -> Value {
        json!({
            "requests": self.requests,
            "streams_started": self.streams_started,
            "streams_completed": self.streams_completed,
            "streams_cancelled": self.streams_cancelled,
            "streams_aborted": self.streams_aborted,
            "requests_cancelled": self.requests_cancelled,
        })
    }
}

/// Everything the connections share.
pub(crate) struct State {
    pub(crate) config: MockConfig,
    log: Mutex<VecDeque<RecordedRequest>>,
    stats: watch::Sender<MockStats>,
    next_id: AtomicU64,
    next_tool_id: AtomicU64,
    next_jitter: AtomicU64,
}

impl State {
    pub(crate) fn new(config: MockConfig) -> Self {
        State {
            config,
            log: Mutex::new(VecDeque::with_capacity(LOG_CAPACITY)),
            stats: watch::Sender::new(MockStats::default()),
            next_id: AtomicU64::new(1),
            next_tool_id: AtomicU64::new(1),
            next_jitter: AtomicU64::new(0),
        }
    }

    pub(crate) fn record(&self, request: RecordedRequest) {
        {
            let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
            if log.len() == LOG_CAPACITY {
                log.pop_front();
            }
            log.push_back(request);
        }
        self.update(|s| s.requests += 1);
    }

    pub(crate) fn requests(&self) -> Vec<RecordedRequest> {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.iter().cloned().collect()
    }

    pub(crate) fn requests_json(&self, with_body: bool) -> Value {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        Value::Array(log.iter().map(|r| r.to_json(with_body)).collect())
    }

    pub(crate) fn stats(&self) -> MockStats {
        *self.stats.borrow()
    }

    pub(crate) fn update(&self, change: impl FnOnce(&mut MockStats)) {
        self.stats.send_modify(change);
    }

    pub(crate) async fn wait_for(&self, pred: impl Fn(&MockStats) -> bool) -> MockStats {
        let mut rx = self.stats.subscribe();
        // The sender lives as long as `self`, so `wait_for` cannot fail here.
        match rx.wait_for(|s| pred(s)).await {
            Ok(stats) => *stats,
            Err(_) => self.stats(),
        }
    }

    pub(crate) fn reset(&self) {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.next_id.store(1, Ordering::Relaxed);
        self.next_tool_id.store(1, Ordering::Relaxed);
        self.next_jitter.store(0, Ordering::Relaxed);
        self.stats.send_replace(MockStats::default());
    }

    /// Next response id number (1, 2, …).
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Next tool-call id number (1, 2, …).
    pub(crate) fn next_tool_id(&self) -> u64 {
        self.next_tool_id.fetch_add(1, Ordering::Relaxed)
    }

    /// A deterministic pseudo-random jitter in `0..=max_ms` milliseconds: the n-th call on a server
    /// returns the same value for the same seed.
    pub(crate) fn jitter_ms(&self, max_ms: u64) -> u64 {
        if max_ms == 0 {
            return 0;
        }
        let n = self.next_jitter.fetch_add(1, Ordering::Relaxed);
        xorshift64star(self.config.seed ^ n.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15))
            % (max_ms + 1)
    }
}

/// One step of xorshift64*, from a state that is made non-zero.
fn xorshift64star(state: u64) -> u64 {
    let mut x = if state == 0 {
        0x2545_f491_4f6c_dd1d
    } else {
        state
    };
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    x.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(n: usize) -> RecordedRequest {
        RecordedRequest {
            method: Method::POST,
            path_and_query: format!("/r/{n}"),
            headers: HeaderMap::new(),
            body: Bytes::from_static(b"{}"),
            version: Version::HTTP_11,
        }
    }

    #[test]
    fn fnv_matches_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn log_keeps_the_last_256() {
        let state = State::new(MockConfig::default());
        for n in 0..300 {
            state.record(request(n));
        }
        let log = state.requests();
        assert_eq!(log.len(), LOG_CAPACITY);
        assert_eq!(log[0].path_and_query, "/r/44");
        assert_eq!(state.stats().requests, 300);
        state.reset();
        assert!(state.requests().is_empty());
        assert_eq!(state.stats(), MockStats::default());
    }

    #[test]
    fn jitter_is_deterministic_and_bounded() {
        let a = State::new(MockConfig {
            seed: 7,
            ..MockConfig::default()
        });
        let b = State::new(MockConfig {
            seed: 7,
            ..MockConfig::default()
        });
        let xs: Vec<u64> = (0..50).map(|_| a.jitter_ms(10)).collect();
        let ys: Vec<u64> = (0..50).map(|_| b.jitter_ms(10)).collect();
        assert_eq!(xs, ys);
        assert!(xs.iter().all(|&x| x <= 10));
        assert!(xs.iter().any(|&x| x != xs[0]));
        assert_eq!(a.jitter_ms(0), 0);
    }

    #[test]
    fn headers_are_joined_in_json() {
        let mut r = request(1);
        r.headers.append("x-a", "1".parse().unwrap());
        r.headers.append("x-a", "2".parse().unwrap());
        let v = r.to_json(false);
        assert_eq!(v["headers"]["x-a"], "1, 2");
        assert_eq!(v["body_len"], 2);
        assert_eq!(v["body_fnv64"], format!("{:016x}", fnv1a64(b"{}")));
        assert!(v.get("body").is_none());
        assert_eq!(r.to_json(true)["body"], json!({}));
        r.body = Bytes::from_static(b"not json \xff");
        assert_eq!(r.to_json(true)["body"], "not json \u{fffd}");
    }
}
