//! The response cache's `redis` store shared by two `octollm-server` instances: an answer stored
//! through one is a hit on the other (stream and not), orgs stay apart across instances, and with
//! Redis stopped both keep answering (a miss, never an error or a hang), then share again once it
//! is back.
//!
//! Runs when `OCTOLLM_TEST_REDIS_URL` is set (`source "$(scripts/services.sh env)"` after
//! `scripts/services.sh` starts a throwaway Redis); the outage part also needs
//! `OCTOLLM_TEST_REDIS_CTL` (a command taking `stop` / `start`). Without them it prints why and
//! passes.

use std::time::{Duration, Instant};

use octo_core::Protocol;
use octo_test::http::text;
use octo_test::service::ctl;
use octo_test::{Gateway, Prompt, client, mock, post};

const KEY_A: &str = "sk-gw-org-a-0123456789";
const KEY_B: &str = "sk-gw-org-b-0123456789";

fn config(mock: &str, redis: &str, prefix: &str) -> String {
    format!(
        r#"
listen: "127.0.0.1:0"
storage: off
redis: {{url: "{redis}", key_prefix: "{prefix}", timeout: 200ms}}
cache: {{store: redis, ttl: 10m}}
backends:
  oa: {{base_url: "{mock}", protocol: openai_chat}}
  an: {{base_url: "{mock}", protocol: anthropic}}
models:
  chat: {{cache: true, targets: [{{backend: oa}}], retry: {{max_attempts: 1}}}}
  claude: {{cache: true, targets: [{{backend: an}}], retry: {{max_attempts: 1}}}}
orgs:
  a: {{api_keys: {{ka: "{KEY_A}"}}}}
  b: {{api_keys: {{kb: "{KEY_B}"}}}}
"#
    )
}

/// `(status, x-octollm-cache, body)`, within a deadline so a hang fails the test.
async fn send(gw: &Gateway, prompt: &Prompt, key: &str) -> (u16, Option<String>, String) {
    let auth = format!("Bearer {key}");
    let url = format!("{}{}", gw.url, prompt.path());
    let fut = async {
        let resp = post(&client(), &url, prompt.body(), &[("authorization", &auth)]).await;
        let status = resp.status().as_u16();
        let cache = resp
            .headers()
            .get("x-octollm-cache")
            .map(|v| v.to_str().unwrap().to_owned());
        (status, cache, text(resp).await)
    };
    tokio::time::timeout(Duration::from_secs(20), fut)
        .await
        .expect("the gateway answered within 20 s")
}

#[tokio::test]
async fn two_instances_share_one_redis_store() {
    let Ok(redis) = std::env::var("OCTOLLM_TEST_REDIS_URL") else {
        eprintln!(
            "skipping: OCTOLLM_TEST_REDIS_URL is not set (scripts/services.sh starts a Redis)"
        );
        return;
    };
    let mock = mock().await;
    // A prefix of this run's own, so earlier runs' entries are never read.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let prefix = format!("octollm-test-{}-{nanos}:", std::process::id());
    let yaml = config(&mock.url(), &redis, &prefix);
    let (one, two) = (Gateway::start(&yaml), Gateway::start(&yaml));

    for (p, model) in [
        (Protocol::OpenAiChat, "chat"),
        (Protocol::Anthropic, "claude"),
    ] {
        for stream in [false, true] {
            let what = format!("{p} stream={stream}");
            let prompt = Prompt::new(p, model, format!("shared {what}")).stream(stream);
            let before = mock.requests().len();
            let (s1, c1, b1) = send(&one, &prompt, KEY_A).await;
            assert_eq!((s1, c1.as_deref()), (200, Some("miss")), "{what}: {b1}");
            let (s2, c2, b2) = send(&two, &prompt, KEY_A).await;
            assert_eq!(
                (s2, c2.as_deref()),
                (200, Some("hit")),
                "{what}: stored by the other instance"
            );
            assert_eq!(b2.replace("\r\n", "\n"), b1.replace("\r\n", "\n"), "{what}");
            // Another org, on either instance, does not see it.
            let (_, c3, _) = send(&two, &prompt, KEY_B).await;
            assert_eq!(c3.as_deref(), Some("miss"), "{what}: org b");
            assert_eq!(mock.requests().len(), before + 2, "{what}");
        }
    }

    let Ok(ctl_cmd) = std::env::var("OCTOLLM_TEST_REDIS_CTL") else {
        eprintln!("skipping the outage part: OCTOLLM_TEST_REDIS_CTL is not set");
        mock.shutdown().await;
        return;
    };
    ctl(&ctl_cmd, "stop");
    let prompt = Prompt::new(Protocol::OpenAiChat, "chat", "while redis is away");
    for gw in [&one, &two] {
        let started = Instant::now();
        let (status, cache, body) = send(gw, &prompt, KEY_A).await;
        assert_eq!((status, cache.as_deref()), (200, Some("miss")), "{body}");
        eprintln!("answered without Redis in {:?}", started.elapsed());
    }
    ctl(&ctl_cmd, "start");
    // The connection comes back by itself: poll (bounded) until an entry is shared again.
    let prompt = Prompt::new(Protocol::OpenAiChat, "chat", "after redis is back");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, first, _) = send(&one, &prompt, KEY_A).await;
        assert_eq!(status, 200);
        let (_, second, _) = send(&two, &prompt, KEY_A).await;
        if first.as_deref() == Some("hit") || second.as_deref() == Some("hit") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cache never worked again after Redis came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    mock.shutdown().await;
}
