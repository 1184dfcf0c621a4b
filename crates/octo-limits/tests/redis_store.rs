//! The Redis store's Lua scripts against a real Redis follow the same rules as the in-process
//! store: a burst then refusal, every limit must pass and a refusal counts nothing, tpm
//! reconciliation both ways, concurrency until settled (settlements carried by the next admission
//! or sent alone), budgets reserving estimates, and seeding that only raises a count.
//!
//! Needs `OCTOLLM_TEST_REDIS_URL` (written by `scripts/services.sh`); skipped otherwise.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use octo_limits::local::CheckState;
use octo_limits::period::Period;
use octo_limits::policy::{Budget, Policy, RateLimit, Rules};
use octo_limits::redis::{RedisStore, Settlement};
use octo_limits::{Limiter, OnError, RedisSettings};

fn store(test: &str) -> Option<RedisStore> {
    let Ok(url) = std::env::var("OCTOLLM_TEST_REDIS_URL") else {
        eprintln!("skipping: OCTOLLM_TEST_REDIS_URL is not set (scripts/services.sh starts Redis)");
        return None;
    };
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let prefix = format!("octo-limits-test-{test}-{}-{nanos}:", std::process::id());
    Some(RedisStore::new(&url, Duration::from_secs(5), &prefix).unwrap())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn rules(rate: RateLimit, budget: Option<Budget>) -> Rules {
    Rules { rate, budget }
}

#[tokio::test]
async fn rates_burst_refuse_and_count_nothing_when_refused() {
    let Some(s) = store("rates") else { return };
    let p = Policy::new()
        .model(
            "m",
            RateLimit {
                rpm: Some(3),
                ..RateLimit::default()
            },
        )
        .org(
            "acme",
            rules(
                RateLimit {
                    rpm: Some(2),
                    ..RateLimit::default()
                },
                None,
            ),
        );
    let acme = p.checks("m", Some(("acme", "a")));
    let other = p.checks("m", Some(("other", "b")));
    let now = now_ms();
    for left in [1, 0] {
        let (r, _) = s.admit("r", &acme, 0, 0.0, now, &[]).await.unwrap();
        assert_eq!(r.unwrap().requests.unwrap().remaining, left);
    }
    let (r, _) = s.admit("r", &acme, 0, 0.0, now, &[]).await.unwrap();
    let refused = r.unwrap_err();
    assert_eq!(refused.index, 1, "the org's limit refused");
    assert!(refused.retry_after_ms > 0.0 && refused.retry_after_ms <= 30_000.0);
    // The model's third request was not used by the refusal.
    let (r, _) = s.admit("r", &other, 0, 0.0, now, &[]).await.unwrap();
    assert_eq!(r.unwrap().requests.unwrap().remaining, 0);
    assert!(
        s.admit("r", &other, 0, 0.0, now, &[])
            .await
            .unwrap()
            .0
            .is_err()
    );
}

#[tokio::test]
async fn tpm_reconciles_and_concurrency_holds_until_settled() {
    let Some(s) = store("tpm") else { return };
    let p = Policy::new().key(
        "acme",
        "ci",
        rules(
            RateLimit {
                tpm: Some(1_000),
                concurrency: Some(1),
                ..RateLimit::default()
            },
            None,
        ),
    );
    let c: Arc<[_]> = p.checks("m", Some(("acme", "ci"))).into();
    let now = now_ms();
    let (r, periods) = s.admit("one", &c, 800, 0.0, now, &[]).await.unwrap();
    assert!(r.is_ok());
    // The slot is taken, and 800 of the tokens.
    let r = s
        .admit("two", &c, 100, 0.0, now, &[])
        .await
        .unwrap()
        .0
        .unwrap_err();
    assert_eq!(r.index, 1, "concurrency refused");
    // `one` finished having used 50 tokens: its settlement rides with `two`'s admission, and is
    // applied first (the slot is free again, 750 tokens came back), so `two` is admitted.
    let one = Settlement {
        checks: c.clone(),
        member: "one".into(),
        periods,
        estimated: (800, 0.0),
        actual: (50, 0.0),
    };
    let (r, periods) = s.admit("two", &c, 100, 0.0, now, &[one]).await.unwrap();
    assert!(r.is_ok(), "{r:?}");
    // Alone (no admission to carry it), `two`'s settlement frees the slot too.
    s.settle(&[Settlement {
        checks: c.clone(),
        member: "two".into(),
        periods: periods.clone(),
        estimated: (100, 0.0),
        actual: (100, 0.0),
    }])
    .await
    .unwrap();
    let states = s.states(&c, now_ms()).await.unwrap();
    let CheckState::Window(w) = states[0] else {
        panic!("a window")
    };
    assert!(w.remaining >= 850 - 1, "750 tokens came back: {w:?}");
    assert_eq!(states[1], CheckState::InFlight { in_flight: 0 });
    // A settlement carried by an admission that is refused is applied all the same.
    let (r, p3) = s.admit("three", &c, 100, 0.0, now, &[]).await.unwrap();
    assert!(r.is_ok());
    let four = s.admit("four", &c, 1, 0.0, now, &[]).await.unwrap().0;
    assert!(four.is_err(), "one in flight");
    let three = Settlement {
        checks: c.clone(),
        member: "three".into(),
        periods: p3,
        estimated: (100, 0.0),
        actual: (100, 0.0),
    };
    let big = s
        .admit("big", &c, 5_000, 0.0, now, &[three])
        .await
        .unwrap()
        .0;
    assert!(big.is_err(), "too large");
    assert_eq!(
        s.states(&c, now_ms()).await.unwrap()[1],
        CheckState::InFlight { in_flight: 0 },
        "the carried settlement freed the slot though the admission was refused"
    );
    // Too large for the limit at all.
    let r = s
        .admit("big", &c, 1_001, 0.0, now, &[])
        .await
        .unwrap()
        .0
        .unwrap_err();
    assert!(r.retry_after_ms.is_infinite());
}

#[tokio::test]
async fn budgets_reserve_estimates_and_seeding_only_raises() {
    let Some(s) = store("budget") else { return };
    let b = Budget {
        usd: 1.0,
        period: Period::Day,
    };
    let p = Policy::new().key("acme", "ci", rules(RateLimit::default(), Some(b)));
    let c: Arc<[_]> = p.checks("m", Some(("acme", "ci"))).into();
    let now = now_ms();
    let mut admitted = Vec::new();
    for i in 0..10 {
        let member = format!("r{i}");
        if let (Ok(_), periods) = s.admit(&member, &c, 0, 0.3, now, &[]).await.unwrap() {
            admitted.push((member, periods));
        }
    }
    assert_eq!(
        admitted.len(),
        4,
        "0, 0.3, 0.6 and 0.9 reserved before each"
    );
    // Refused on reservations: a settlement can reopen it, so the refusal does not hold.
    let r = s.admit_reply("r10", &c, 0, 0.3, now, &[]).await.unwrap();
    assert!(r.outcome.is_err() && r.holds_ms.is_none(), "{r:?}");
    let batch: Vec<Settlement> = admitted
        .into_iter()
        .map(|(member, periods)| Settlement {
            checks: c.clone(),
            member,
            periods,
            estimated: (0, 0.3),
            actual: (0, 0.1),
        })
        .collect();
    s.settle(&batch).await.unwrap();
    let CheckState::Spend(spend) = s.states(&c, now).await.unwrap()[0] else {
        panic!("spend")
    };
    assert!(
        (spend.spent - 0.4).abs() < 1e-9 && spend.reserved.abs() < 1e-9,
        "{spend:?}"
    );
    s.seed(&c[0], b.period, spend.period_start, 0.2)
        .await
        .unwrap();
    s.seed(&c[0], b.period, spend.period_start, 1.5)
        .await
        .unwrap();
    let r = s.admit_reply("late", &c, 0, 0.0, now, &[]).await.unwrap();
    let refused = r.outcome.unwrap_err();
    assert!((refused.used - 1.5).abs() < 1e-9, "{refused:?}");
    // Spent by finished requests alone: closed until the period turns, whatever else happens.
    let end = b.period.bounds(now).1;
    assert_eq!(r.holds_ms, Some((end - now) as f64));
}

/// The limiter on Redis, with `policy`, and a prefix of the test's own.
fn limiter(test: &str, policy: Policy) -> Option<Arc<Limiter>> {
    let Ok(url) = std::env::var("OCTOLLM_TEST_REDIS_URL") else {
        eprintln!("skipping: OCTOLLM_TEST_REDIS_URL is not set (scripts/services.sh starts Redis)");
        return None;
    };
    let prefix = format!(
        "octo-limits-test-{test}-{}-{}:",
        std::process::id(),
        now_ms()
    );
    let l = Limiter::new(Some(&RedisSettings {
        url,
        on_error: OnError::Deny,
        timeout: Duration::from_secs(5),
        prefix,
    }))
    .unwrap();
    l.set_policy(policy);
    Some(l)
}

fn header<'a>(e: &'a octo_core::Error, name: &str) -> &'a str {
    e.extra_headers()
        .and_then(|h| h.get(name))
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} in {:?}", e.extra_headers()))
}

#[tokio::test]
async fn an_rpm_refusal_is_remembered_until_redis_said_it_reopens_and_no_longer() {
    let rpm = |n| RateLimit {
        rpm: Some(n),
        ..RateLimit::default()
    };
    let Some(l) = limiter("remembered", Policy::new().model("m", rpm(2))) else {
        return;
    };
    let body = br#"{"model":"m","messages":[]}"#;
    for _ in 0..2 {
        assert!(l.admit("m", None, body, None).await.unwrap().is_some());
    }
    let from_redis = l.admit("m", None, body, None).await.unwrap_err();
    assert_eq!(l.refused_remembered(), 0, "the first refusal is Redis's");
    let remembered = l.admit("m", None, body, None).await.unwrap_err();
    assert_eq!(l.refused_remembered(), 1, "the second costs no round trip");
    assert_eq!(l.refused()[0], ("rpm", 2));
    // The same answer, never promising a later time than Redis did.
    assert_eq!(remembered.status(), from_redis.status());
    assert_eq!(remembered.code(), from_redis.code());
    assert!(remembered.retry_after() <= from_redis.retry_after());
    assert!(remembered.retry_after().unwrap() > Duration::from_secs(25));
    let ms = |e: &octo_core::Error| header(e, "retry-after-ms").parse::<u64>().unwrap();
    assert!(ms(&remembered) <= ms(&from_redis));
    assert_eq!(
        remembered.retry_after().unwrap(),
        Duration::from_millis(ms(&remembered))
    );
    assert_eq!(header(&remembered, "x-ratelimit-limit-requests"), "2");
    assert_eq!(header(&remembered, "x-ratelimit-remaining-requests"), "0");
    assert_eq!(header(&from_redis, "x-ratelimit-remaining-requests"), "0");
    let reset = |e: &octo_core::Error| header(e, "x-ratelimit-reset-requests").to_owned();
    assert!(reset(&remembered).ends_with('s'), "{}", reset(&remembered));
    // Another scope is not refused by it.
    let other = Policy::new().model("m", rpm(2)).model("n", rpm(2));
    l.set_policy(other);
    assert!(l.admit("n", None, body, None).await.unwrap().is_some());
    // A new policy (the limit raised) forgets it: Redis decides again. The key's TAT is a minute
    // ahead (two requests of 30 s), so at 1,000 rpm the next one fits 60 ms later, not 30 s.
    l.set_policy(Policy::new().model("m", rpm(1_000)));
    let e = l.admit("m", None, body, None).await.unwrap_err();
    assert!(
        e.retry_after().unwrap() <= Duration::from_millis(60),
        "{e:?}"
    );
    assert_eq!(l.refused_remembered(), 1);
    l.shutdown();
}

#[tokio::test]
async fn tpm_and_concurrency_refusals_are_not_remembered() {
    let Some(l) = limiter(
        "not-remembered",
        Policy::new()
            .model(
                "m",
                RateLimit {
                    concurrency: Some(1),
                    ..RateLimit::default()
                },
            )
            .model(
                "t",
                RateLimit {
                    tpm: Some(1_000),
                    ..RateLimit::default()
                },
            ),
    ) else {
        return;
    };
    let body = br#"{"model":"m","max_tokens":900,"messages":[]}"#;
    let held = l.admit("m", None, body, None).await.unwrap().unwrap();
    for _ in 0..2 {
        let e = l.admit("m", None, body, None).await.unwrap_err();
        assert_eq!(e.code(), Some("concurrency_limit_exceeded"));
    }
    // The settlement rides with the next admission, which frees the slot before admitting.
    drop(held);
    assert!(l.admit("m", None, body, None).await.unwrap().is_some());
    // tpm: a settlement giving back unused tokens could reopen it sooner than Redis said.
    assert!(l.admit("t", None, body, None).await.unwrap().is_some());
    for _ in 0..2 {
        let e = l.admit("t", None, body, None).await.unwrap_err();
        assert_eq!(e.code(), Some("rate_limit_exceeded"));
        assert!(e.retry_after().is_some());
    }
    assert_eq!(l.refused_remembered(), 0);
    l.shutdown();
}

#[tokio::test]
async fn without_redis_the_fallback_answers_with_the_same_headers() {
    // A port nobody listens on: every call fails at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let l = Limiter::new(Some(&RedisSettings {
        url: format!("redis://127.0.0.1:{port}/0"),
        on_error: OnError::Allow,
        timeout: Duration::from_secs(5),
        prefix: "octo-limits-test-fallback:".into(),
    }))
    .unwrap();
    l.set_policy(Policy::new().model(
        "m",
        RateLimit {
            rpm: Some(2),
            tpm: Some(100_000),
            ..RateLimit::default()
        },
    ));
    let body = br#"{"model":"m","max_tokens":100,"messages":[]}"#;
    for left in [1, 0] {
        let a = l.admit("m", None, body, None).await.unwrap().unwrap();
        assert_eq!(a.admitted.requests.unwrap().remaining, left);
        assert_eq!(a.admitted.tokens.unwrap().limit, 100_000);
    }
    assert!(l.in_fallback());
    assert!(l.redis_errors() >= 1);
    let e = l.admit("m", None, body, None).await.unwrap_err();
    assert_eq!(e.status(), 429);
    assert_eq!(header(&e, "x-ratelimit-limit-requests"), "2");
    assert_eq!(header(&e, "x-ratelimit-remaining-requests"), "0");
    let ms: u64 = header(&e, "retry-after-ms").parse().unwrap();
    assert!((29_000..=30_000).contains(&ms), "{ms}");
    assert_eq!(e.retry_after(), Some(Duration::from_millis(ms)));
    // The whole window (two requests of 30 s) comes back in a minute.
    let reset = header(&e, "x-ratelimit-reset-requests");
    assert!(["1m0s", "59s"].contains(&reset), "{reset}");
    l.shutdown();
}
