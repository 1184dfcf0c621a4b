//! `TargetSet` over real `HttpEndpoint`s and in-process upstreams: failover while a backend is
//! down, key rotation on 429, the circuit breaker opening and half-opening, the retry deadline and
//! the weighted distribution — the engines as an embedder uses them, without the server.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use http::{HeaderMap, HeaderValue};
use octo_core::http::{Router, ServeConfig, SharedRouter, serve};
use octo_core::{
    ArcEngine, Body, Engine, Error, Protocol, Request, Response, ResponseBody, engine_fn,
};
use octo_engines::add_header::UpstreamHeaders;
use octo_engines::balance::{AttemptOutcome, StrategyKind, Target, TargetSet};
use octo_engines::breaker::BreakerConfig;
use octo_engines::endpoint::{EndpointConfig, HttpEndpoint, KeyPoolConfig};
use octo_engines::retry::{AttemptRecord, Attempts, RetryPolicy};
use octo_test::{Prompt, mock};
use tokio::time::Instant;

fn endpoint(
    name: &str,
    url: &str,
    keys: &[&str],
    breaker: Option<BreakerConfig>,
) -> Arc<HttpEndpoint> {
    let mut cfg = EndpointConfig::new(name, url, Protocol::OpenAiChat);
    cfg.api_keys = keys.iter().map(|k| (*k).to_owned()).collect();
    cfg.key_pool = KeyPoolConfig {
        breaker,
        ..KeyPoolConfig::default()
    };
    Arc::new(HttpEndpoint::new(cfg).unwrap())
}

/// An OpenAI Chat request for model `m`.
fn chat(text: &str, stream: bool) -> Request {
    Prompt::new(Protocol::OpenAiChat, "m", text)
        .stream(stream)
        .request()
}

/// Sends `req` with an `Attempts` the test keeps, so the error path can be inspected too.
async fn send(set: &TargetSet, mut req: Request) -> (Result<Response, Error>, Vec<AttemptRecord>) {
    let attempts = Attempts::default();
    req.extensions.insert(attempts.clone());
    let result = set.process(req).await;
    (result, attempts.snapshot())
}

fn trail(attempts: &[AttemptRecord]) -> Vec<(String, AttemptOutcome)> {
    attempts
        .iter()
        .map(|a| (a.target.clone(), a.outcome))
        .collect()
}

fn t(name: &str, o: AttemptOutcome) -> (String, AttemptOutcome) {
    (name.to_owned(), o)
}

/// An address nothing listens on.
fn dead_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    url
}

/// `inner`, with `headers` put in each request's `UpstreamHeaders` (as a rule's `set_headers` does).
fn with_upstream_headers(headers: HeaderMap, inner: ArcEngine) -> ArcEngine {
    Arc::new(engine_fn(move |mut req: Request| {
        let inner = inner.clone();
        req.extensions.insert(UpstreamHeaders(headers.clone()));
        async move { inner.process(req).await }
    }))
}

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, HeaderValue::from_static(v));
    }
    h
}

#[tokio::test]
async fn zero_client_errors_while_one_of_two_backends_is_down() {
    let up = mock().await;
    let breaker = BreakerConfig {
        failure_threshold: 3,
        base_cooldown: Duration::from_secs(60),
        max_cooldown: Duration::from_secs(60),
    };
    let set = TargetSet::builder(
        "m",
        vec![
            Target::from(endpoint("down", &dead_url(), &["k"], Some(breaker))),
            Target::from(endpoint("up", &up.url(), &["k"], Some(breaker))),
        ],
    )
    .strategy(StrategyKind::WeightedRoundRobin)
    .retry(RetryPolicy::new(3, Duration::from_secs(10)))
    .build()
    .unwrap();

    let mut outcomes_on_down = Vec::new();
    for i in 0..20 {
        let stream = i % 4 == 3;
        let (result, attempts) = send(&set, chat("hello", stream)).await;
        let resp = result.unwrap_or_else(|e| panic!("request {i} failed: {e}"));
        assert_eq!(resp.status, 200);
        if let ResponseBody::Stream(mut events) = resp.body {
            let mut n = 0;
            while let Some(ev) = events.next().await {
                ev.unwrap();
                n += 1;
            }
            assert!(n > 1);
        }
        assert_eq!(attempts.last().unwrap().target, "up");
        outcomes_on_down.extend(
            attempts
                .iter()
                .filter(|a| a.target == "down")
                .map(|a| a.outcome),
        );
    }
    assert_eq!(up.stats().requests, 20);
    // The dead backend cost three connect errors; then its breaker opened and it was skipped
    // without a connection attempt.
    let failed = outcomes_on_down
        .iter()
        .filter(|o| **o == AttemptOutcome::Failed)
        .count();
    assert_eq!(failed, 3, "{outcomes_on_down:?}");
    assert!(
        outcomes_on_down[3..]
            .iter()
            .all(|o| *o == AttemptOutcome::Skipped),
        "{outcomes_on_down:?}"
    );
}

#[tokio::test]
async fn a_rate_limited_key_rests_and_the_next_key_serves() {
    // A key-aware upstream: key `k1` is over its quota, `k2` is fine.
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let upstream: ArcEngine = Arc::new(engine_fn({
        let seen = seen.clone();
        move |req: Request| {
            let seen = seen.clone();
            async move {
                let auth = req.headers["authorization"].to_str().unwrap().to_owned();
                seen.lock().unwrap().push(auth.clone());
                if auth == "Bearer k1" {
                    return Err(Error::rate_limited(
                        "quota exceeded",
                        Some(Duration::from_secs(30)),
                    ));
                }
                Ok(Response::json(
                    200,
                    Body::from_static(br#"{"id":"x","object":"chat.completion","choices":[]}"#),
                ))
            }
        }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        listener,
        SharedRouter::new(Router::new().engine(Protocol::OpenAiChat, upstream)),
        ServeConfig::default(),
        async {
            let _ = stopped.await;
        },
    ));

    let ep = endpoint("oa", &url, &["k1", "k2"], Some(BreakerConfig::default()));
    let set = TargetSet::builder("m", vec![Target::from(ep.clone())])
        .retry(RetryPolicy::new(3, Duration::from_secs(10)))
        .build()
        .unwrap();
    for _ in 0..4 {
        let (result, attempts) = send(&set, chat("hi", false)).await;
        assert_eq!(result.unwrap().status, 200);
        // Key rotation happens inside the backend: one attempt at the set's level.
        assert_eq!(trail(&attempts), [t("oa", AttemptOutcome::Success)]);
    }
    // k1 was asked once, answered 429 and rests for its retry-after; k2 served everything.
    assert_eq!(
        *seen.lock().unwrap(),
        [
            "Bearer k1",
            "Bearer k2",
            "Bearer k2",
            "Bearer k2",
            "Bearer k2"
        ]
    );
    let rest = ep.keys().cooling_for(0).unwrap();
    assert!(
        rest > Duration::from_secs(25) && rest <= Duration::from_secs(30),
        "{rest:?}"
    );
    assert_eq!(ep.keys().cooling_for(1), None);
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn keys_rotate_on_429_then_the_backend_is_left() {
    let (a, b) = (mock().await, mock().await);
    let ep_a = endpoint(
        "a",
        &a.url(),
        &["sk-a1", "sk-a2"],
        Some(BreakerConfig::default()),
    );
    // Backend a is rate-limited whatever the key: the fault rides on headers only a's requests get.
    let limited = with_upstream_headers(
        headers(&[("x-mock-status", "429"), ("x-mock-retry-after", "60")]),
        ep_a.clone(),
    );
    let set = TargetSet::builder(
        "m",
        vec![
            Target::new("a", limited)
                .with_availability(ep_a.clone())
                .with_priority(0),
            Target::from(endpoint("b", &b.url(), &["sk-b"], None)).with_priority(1),
        ],
    )
    .strategy(StrategyKind::Failover)
    .build()
    .unwrap();

    let (result, attempts) = send(&set, chat("hi", false)).await;
    assert_eq!(result.unwrap().status, 200);
    assert_eq!(
        trail(&attempts),
        [
            t("a", AttemptOutcome::Failed),
            t("b", AttemptOutcome::Success)
        ]
    );
    // Both of a's keys were tried before a was left, each with the rule's headers.
    let keys: Vec<String> = a
        .requests()
        .iter()
        .map(|r| r.header("authorization").unwrap().to_owned())
        .collect();
    assert_eq!(keys, ["Bearer sk-a1", "Bearer sk-a2"]);
    assert!(
        a.requests()
            .iter()
            .all(|r| r.header("x-mock-status") == Some("429"))
    );
    // b never sees a's rule headers.
    assert_eq!(b.requests()[0].header("x-mock-status"), None);
    // The failed attempt's error names the backend, never a key.
    let err = attempts[0].error.as_deref().unwrap();
    assert!(err.contains("backend `a`") && !err.contains("sk-"), "{err}");

    // While both keys rest, a is skipped without a request.
    for _ in 0..3 {
        let (result, attempts) = send(&set, chat("hi", false)).await;
        assert_eq!(result.unwrap().status, 200);
        assert_eq!(
            trail(&attempts),
            [
                t("a", AttemptOutcome::Skipped),
                t("b", AttemptOutcome::Success)
            ]
        );
    }
    assert_eq!(a.stats().requests, 2);
    assert_eq!(b.stats().requests, 4);
    // A set with only a has nothing to try: a retryable 503 naming the model, with the wait.
    let solo = TargetSet::builder("m", vec![Target::from(ep_a.clone())])
        .build()
        .unwrap();
    let (result, attempts) = send(&solo, chat("hi", false)).await;
    let e = result.unwrap_err();
    assert_eq!(e.status(), 503);
    assert!(e.is_retryable() && e.message().contains("model `m`"), "{e}");
    let wait = e.retry_after().unwrap();
    assert!(
        wait > Duration::from_secs(50) && wait <= Duration::from_secs(60),
        "{wait:?}"
    );
    assert_eq!(trail(&attempts), [t("a", AttemptOutcome::Skipped)]);
    // The endpoint called directly: a retryable 429 naming the backend, with the wait.
    let e = ep_a.process(chat("hi", false)).await.unwrap_err();
    assert_eq!(e.status(), 429);
    assert!(e.is_retryable());
    assert!(e.message().contains("backend `a`"), "{}", e.message());
    assert!(!format!("{e:?} {ep_a:?}").contains("sk-"));
}

/// Passes requests to `inner`; while `broken` is set, asks the mock for a 503.
fn breakable(
    inner: ArcEngine,
    broken: Arc<AtomicBool>,
    latency_ms: Option<&'static str>,
) -> ArcEngine {
    Arc::new(engine_fn(move |mut req: Request| {
        let inner = inner.clone();
        let broken = broken.load(Ordering::SeqCst);
        async move {
            let mut h = HeaderMap::new();
            if broken {
                h.insert("x-mock-status", HeaderValue::from_static("503"));
            }
            if let Some(ms) = latency_ms {
                h.insert("x-mock-latency-ms", HeaderValue::from_static(ms));
            }
            req.extensions.insert(UpstreamHeaders(h));
            inner.process(req).await
        }
    }))
}

#[tokio::test]
async fn breaker_opens_then_lets_one_probe_through_when_half_open() {
    let (a, b) = (mock().await, mock().await);
    let cooldown = Duration::from_millis(300);
    let ep_a = endpoint(
        "a",
        &a.url(),
        &["k"],
        Some(BreakerConfig {
            failure_threshold: 2,
            base_cooldown: cooldown,
            max_cooldown: Duration::from_secs(10),
        }),
    );
    let broken = Arc::new(AtomicBool::new(true));
    let slow_probe = Arc::new(AtomicBool::new(false));
    let a_engine = {
        let broken_engine = breakable(ep_a.clone(), broken.clone(), None);
        let slow_engine = breakable(ep_a.clone(), broken.clone(), Some("400"));
        let slow_probe = slow_probe.clone();
        Arc::new(engine_fn(move |req: Request| {
            let e = if slow_probe.load(Ordering::SeqCst) {
                slow_engine.clone()
            } else {
                broken_engine.clone()
            };
            async move { e.process(req).await }
        }))
    };
    let set = Arc::new(
        TargetSet::builder(
            "m",
            vec![
                Target::new("a", a_engine).with_availability(ep_a.clone()),
                Target::from(endpoint("b", &b.url(), &["k"], None)).with_priority(1),
            ],
        )
        .strategy(StrategyKind::Failover)
        .build()
        .unwrap(),
    );

    // Two 503s open a's breaker; both requests are served by b.
    for _ in 0..2 {
        let (result, attempts) = send(&set, chat("hi", false)).await;
        assert_eq!(result.unwrap().status, 200);
        assert_eq!(
            trail(&attempts),
            [
                t("a", AttemptOutcome::Failed),
                t("b", AttemptOutcome::Success)
            ]
        );
    }
    // Open: a is skipped without a request.
    let (_, attempts) = send(&set, chat("hi", false)).await;
    assert_eq!(
        trail(&attempts),
        [
            t("a", AttemptOutcome::Skipped),
            t("b", AttemptOutcome::Success)
        ]
    );
    assert_eq!(a.stats().requests, 2);

    // a recovers; after the cooldown one (slow) probe goes through…
    broken.store(false, Ordering::SeqCst);
    slow_probe.store(true, Ordering::SeqCst);
    tokio::time::sleep(cooldown).await;
    let probe = tokio::spawn({
        let set = set.clone();
        async move { send(&set, chat("probe", false)).await }
    });
    a.wait_for(|s| s.requests >= 3).await;
    // …and while it runs, other requests skip a.
    let (result, attempts) = send(&set, chat("meanwhile", false)).await;
    assert_eq!(result.unwrap().status, 200);
    assert_eq!(
        trail(&attempts),
        [
            t("a", AttemptOutcome::Skipped),
            t("b", AttemptOutcome::Success)
        ]
    );
    let (result, attempts) = probe.await.unwrap();
    assert_eq!(result.unwrap().status, 200);
    assert_eq!(trail(&attempts), [t("a", AttemptOutcome::Success)]);
    // The probe closed the breaker: a serves again.
    slow_probe.store(false, Ordering::SeqCst);
    let (_, attempts) = send(&set, chat("hi", false)).await;
    assert_eq!(trail(&attempts), [t("a", AttemptOutcome::Success)]);
    assert_eq!(a.stats().requests, 4);
}

#[tokio::test]
async fn the_retry_deadline_bounds_a_request() {
    let (a, b) = (mock().await, mock().await);
    let set = TargetSet::builder(
        "m",
        vec![
            Target::from(endpoint("a", &a.url(), &[], None)),
            Target::from(endpoint("b", &b.url(), &[], None)),
        ],
    )
    .strategy(StrategyKind::RoundRobin)
    .retry(RetryPolicy {
        max_attempts: 100,
        deadline: Duration::from_millis(500),
        backoff: Duration::from_millis(50),
        max_wait: Duration::from_secs(2),
        wait_first_event: true,
    })
    .build()
    .unwrap();
    let started = Instant::now();
    let (result, attempts) =
        send(&set, chat("[mock:status=503] [mock:latency_ms=150]", false)).await;
    let elapsed = started.elapsed();
    let e = result.unwrap_err();
    // The upstream's own last answer comes back.
    assert_eq!(e.status(), 503);
    // a (0–150 ms), b (150–300), a 50 ms wait, a (350–500); no attempt starts after 500 ms.
    assert_eq!(
        trail(&attempts),
        [
            t("a", AttemptOutcome::Failed),
            t("b", AttemptOutcome::Failed),
            t("a", AttemptOutcome::Failed)
        ]
    );
    assert!(
        elapsed >= Duration::from_millis(500) && elapsed < Duration::from_secs(2),
        "{elapsed:?}"
    );
    assert_eq!(a.stats().requests + b.stats().requests, 3);
}

#[tokio::test]
async fn weighted_round_robin_spreads_traffic_by_weight() {
    let (a, b) = (mock().await, mock().await);
    let set = TargetSet::builder(
        "m",
        vec![
            Target::from(endpoint("a", &a.url(), &[], None)).with_weight(5),
            Target::from(endpoint("b", &b.url(), &[], None)).with_weight(2),
        ],
    )
    .build()
    .unwrap();
    for _ in 0..70 {
        let (result, _) = send(&set, chat("hi", false)).await;
        assert_eq!(result.unwrap().status, 200);
    }
    assert_eq!((a.stats().requests, b.stats().requests), (50, 20));
}
