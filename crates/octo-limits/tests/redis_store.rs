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
    let r = s
        .admit("late", &c, 0, 0.0, now, &[])
        .await
        .unwrap()
        .0
        .unwrap_err();
    assert!((r.used - 1.5).abs() < 1e-9, "{r:?}");
}
