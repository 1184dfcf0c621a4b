//! Every `examples/*.yaml` starts in the real `octollm-server` and serves a request for each of its
//! models (upstreams pointed at the mock through the `${ENV}` variables the file uses), and the
//! Rust example that builds a gateway without YAML runs.

#[path = "../examples/gateway_in_code.rs"]
#[allow(dead_code)]
mod gateway_in_code;

#[path = "../examples/observer.rs"]
#[allow(dead_code)]
mod observer;

use std::collections::BTreeSet;
use std::path::PathBuf;

use octo_server::config::{AccessConfig, Config, KeySpec};
use octo_test::{Gateway, Prompt, client, mock};

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// The `${NAME}` / `${NAME:-default}` variables `text` uses.
fn env_vars(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let end = after.find(['}', ':']).expect("closed `${`");
        out.insert(after[..end].to_owned());
        rest = &after[end..];
    }
    out
}

/// URLs go to the mock; anything else (keys) gets a recognisable test value.
fn env_value(name: &str, mock_url: &str) -> String {
    if name.contains("URL") || name.contains("UPSTREAM") {
        mock_url.to_owned()
    } else {
        format!("sk-test-{}", name.to_lowercase().replace('_', "-"))
    }
}

/// A gateway key that may use `model` (plaintext, not expiring, allowed), if the model needs one.
fn key_for(config: &Config, model: &str) -> Option<String> {
    let access = config.models[model].access;
    if access == AccessConfig::Public {
        return None;
    }
    for org in config.orgs.values() {
        if access == AccessConfig::Private && !org.models.contains_key(model) {
            continue;
        }
        for spec in org.api_keys.values() {
            if let KeySpec::Key(k) = spec {
                if !k.starts_with("sha256:") {
                    return Some(k.clone());
                }
            }
        }
    }
    panic!("no usable plaintext key for model `{model}`");
}

#[tokio::test]
async fn every_yaml_example_starts_and_serves_each_model() {
    let mock = mock().await;
    let mut files: Vec<PathBuf> = std::fs::read_dir(examples_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for expected in [
        "auth-and-rules.yaml",
        "balancing.yaml",
        "demo.yaml",
        "minimal.yaml",
    ] {
        assert!(names.iter().any(|n| n == expected), "{names:?}");
    }
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let envs: Vec<(String, String)> = env_vars(&text)
            .into_iter()
            .map(|name| {
                let value = env_value(&name, &mock.url());
                (name, value)
            })
            .collect();
        let lookup = |name: &str| envs.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
        let config = octo_server::config::parse(&text, &file.display().to_string(), &lookup)
            .unwrap_or_else(|e| panic!("{e}"));
        let gw = Gateway::start_file(file, &envs);
        for (model, m) in &config.models {
            let backend = &config.backends[&m.targets[0].backend];
            let protocol = backend.protocol[0];
            mock.reset();
            let prompt = Prompt::new(protocol, model, "hello from the examples test");
            let mut req = client()
                .post(format!("{}{}", gw.url, prompt.path()))
                .header("content-type", "application/json")
                .body(prompt.body());
            if let Some(key) = key_for(&config, model) {
                req = req.bearer_auth(key);
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let body = resp.text().await.unwrap();
            assert_eq!(
                status,
                200,
                "{} model `{model}` ({protocol}): {body}",
                file.display()
            );
            assert_eq!(mock.stats().requests, 1, "{}: {model}", file.display());
            // The upstream got the backend's key, never a gateway key.
            let seen = &mock.requests()[0];
            let upstream_key = ["authorization", "x-api-key", "x-goog-api-key"]
                .iter()
                .find_map(|h| seen.header(h))
                .unwrap_or_default();
            if !upstream_key.is_empty() && !upstream_key.contains("demo-upstream-key") {
                assert!(
                    upstream_key.contains("sk-test-") && !upstream_key.contains("octollm-key"),
                    "{}: {model}: {upstream_key}",
                    file.display()
                );
            }
        }
        assert!(
            gw.terminate(),
            "{} did not shut down cleanly",
            file.display()
        );
    }
}

#[tokio::test]
async fn the_rust_example_builds_a_gateway_without_yaml() {
    let outcome = gateway_in_code::run().await.unwrap();
    assert_eq!(outcome.without_key, 401);
    // Smooth weighted round robin, 3:1.
    assert_eq!(
        outcome.served_by,
        [
            "primary-small",
            "primary-small",
            "secondary-small",
            "primary-small",
            "primary-small",
            "primary-small",
            "secondary-small",
            "primary-small"
        ]
    );
    assert_eq!(outcome.stream, (403, "streaming is not allowed".to_owned()));
    assert_eq!(outcome.long_prompt_served_by, "secondary-large");
    assert_eq!(outcome.unknown_model, 404);
}

/// `examples/observer.rs`: an observer added to the front sees every finished request once, with
/// its usage and the cost from the front's pricing.
#[tokio::test]
async fn the_observer_example_counts_requests_tokens_and_cost_per_model() {
    let totals = observer::run().await.unwrap();
    let names: Vec<&str> = totals.iter().map(|t| t.0.as_str()).collect();
    assert_eq!(names, ["gpt-a", "gpt-b"]);
    assert_eq!((totals[0].1, totals[1].1), (2, 1));
    for (model, _, tokens, cost) in &totals {
        assert!(*tokens > 0, "{model}: the mock reports usage");
        assert!(*cost > 0.0, "{model}: priced");
    }
}
