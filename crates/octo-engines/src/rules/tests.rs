use std::sync::Arc;

use http::HeaderValue;
use octo_core::{ArcEngine, Body, Engine, Protocol, Request, Response, ResponseBody, engine_fn};
use serde_json::{Value, json};

use super::*;
use crate::rewrite::RewriteConfig;

/// An engine answering with its name, what it saw, and whether the body arrived parsed.
fn target(name: &'static str) -> ArcEngine {
    Arc::new(engine_fn(move |req: Request| async move {
        let headers = req
            .extensions
            .get::<UpstreamHeaders>()
            .map(|h| {
                h.0.iter()
                    .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap())))
                    .collect::<serde_json::Map<_, _>>()
            })
            .unwrap_or_default();
        Ok(Response::json(
            200,
            Body::from(json!({
                "target": name,
                "parsed": req.body.is_parsed(),
                "rule": req.extensions.get::<MatchedRule>().map(|m| m.0.to_string()),
                "headers": headers,
                "body": String::from_utf8_lossy(&req.body.to_bytes()),
                "model": "upstream-name",
            })),
        ))
    }))
}

fn chat(body: &str) -> Request {
    Request::post(
        Protocol::OpenAiChat,
        "/v1/chat/completions",
        Body::from(bytes::Bytes::from(body.to_owned())),
    )
}

async fn run(engine: &RulesEngine, req: Request) -> Result<Value, octo_core::Error> {
    let resp = engine.process(req).await?;
    match resp.body {
        ResponseBody::Full(mut b) => Ok(b.json().unwrap().clone()),
        ResponseBody::Stream(_) => panic!("stream"),
    }
}

async fn target_of(engine: &RulesEngine, body: &str) -> String {
    run(engine, chat(body)).await.unwrap()["target"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn first_match_wins_and_no_match_falls_through() {
    let engine = RulesEngine::new(
        vec![
            Rule::new("a", r#"model == "m1""#, Action::route(target("a"))),
            Rule::new(
                "b",
                r#"starts_with(model, "m")"#,
                Action::route(target("b")),
            ),
        ],
        target("default"),
    )
    .unwrap();
    assert_eq!(target_of(&engine, r#"{"model":"m1"}"#).await, "a");
    assert_eq!(target_of(&engine, r#"{"model":"m2"}"#).await, "b");
    assert_eq!(target_of(&engine, r#"{"model":"x"}"#).await, "default");
    assert_eq!(engine.rule_names().collect::<Vec<_>>(), ["a", "b"]);
    let mut r = chat(r#"{"model":"m2"}"#);
    assert_eq!(engine.matching_rule(&mut r).unwrap(), Some("b"));
}

#[tokio::test]
async fn a_raw_req_stream_rule_denies_streaming_requests() {
    // A rule reading the body through `RawReq.` sees the request: a streaming request is denied.
    let engine = RulesEngine::new(
        vec![Rule::new(
            "deny_stream",
            "RawReq.stream == true",
            Action::deny(403, "stream is not allowed"),
        )],
        target("default"),
    )
    .unwrap();
    let e = run(&engine, chat(r#"{"model":"kimi","stream":true}"#))
        .await
        .unwrap_err();
    assert_eq!(e.status(), 403);
    assert_eq!(e.message(), "stream is not allowed");
    assert!(!e.is_retryable());
    let an: Value = serde_json::from_slice(&e.render(Protocol::Anthropic).body).unwrap();
    assert_eq!(an["error"]["type"], "permission_error");
    let oa: Value = serde_json::from_slice(&e.render(Protocol::OpenAiChat).body).unwrap();
    assert_eq!(oa["error"]["code"], "request_denied");
    assert_eq!(
        target_of(&engine, r#"{"model":"kimi","stream":false}"#).await,
        "default"
    );
    assert_eq!(target_of(&engine, r#"{"model":"kimi"}"#).await, "default");
}

#[tokio::test]
async fn deny_defaults_to_400_with_a_message_naming_the_rule() {
    let engine = RulesEngine::new(
        vec![Rule::new("nope", "", Action::Deny(Deny::new("")))],
        target("default"),
    )
    .unwrap();
    let e = run(&engine, chat("{}")).await.unwrap_err();
    assert_eq!(e.status(), 400);
    assert_eq!(e.message(), "request denied by rule `nope`");
    let e = RulesEngine::new(
        vec![Rule::new("r", "", Action::deny(429, "slow"))],
        target("d"),
    )
    .unwrap();
    let err = run(&e, chat("{}")).await.unwrap_err();
    assert_eq!(err.status(), 429);
    assert!(!err.is_retryable(), "a deny is final even as a 429");
}

#[tokio::test]
async fn nested_paths_features_headers_and_identity() {
    let engine = RulesEngine::new(
        vec![
            Rule::new(
                "sys",
                r#"RawReq.messages.0.role == "system""#,
                Action::route(target("sys")),
            ),
            Rule::new(
                "hash",
                r#"prefix20 == "c6eec1e7" && suffix20 == "efc888e0" && promptTextLen == 42"#,
                Action::route(target("hash")),
            ),
            Rule::new(
                "team",
                r#"header.x_team == "red""#,
                Action::route(target("team")),
            ),
            Rule::new(
                "acme",
                r#"auth.org == "acme" && auth.user == "alice""#,
                Action::route(target("acme")),
            ),
        ],
        target("default"),
    )
    .unwrap();
    assert_eq!(
        target_of(
            &engine,
            r#"{"model":"m","messages":[{"role":"system","content":"x"}]}"#
        )
        .await,
        "sys"
    );
    assert_eq!(
        target_of(
            &engine,
            r#"{"model":"glm-4.7","messages":[{"role":"user","content":"who are you? I am testing the rule engine."}]}"#
        )
        .await,
        "hash"
    );
    let mut r = chat(r#"{"model":"m"}"#);
    r.headers.insert("x-team", HeaderValue::from_static("red"));
    assert_eq!(run(&engine, r).await.unwrap()["target"], "team");
    let mut r = chat(r#"{"model":"m"}"#);
    r.extensions.insert(Identity::new("acme", "alice"));
    assert_eq!(run(&engine, r).await.unwrap()["target"], "acme");
}

#[tokio::test]
async fn missing_fields_and_failed_evaluations_do_not_match() {
    let engine = RulesEngine::new(
        vec![
            Rule::new("big", "max_tokens > 1000", Action::route(target("big"))),
            Rule::new("not-bool", "model", Action::route(target("not-bool"))),
            Rule::new(
                "meta",
                r#"metadata.user_id == "u1" || nothing.at.all == 3"#,
                Action::route(target("meta")),
            ),
        ],
        target("default"),
    )
    .unwrap();
    assert_eq!(target_of(&engine, r#"{"model":"m"}"#).await, "default");
    assert_eq!(
        target_of(&engine, r#"{"model":"m","max_tokens":4096}"#).await,
        "big"
    );
    assert_eq!(
        target_of(&engine, r#"{"model":"m","metadata":{"user_id":"u1"}}"#).await,
        "meta"
    );
}

#[tokio::test]
async fn org_rules_apply_to_their_org_only() {
    let engine = RulesEngine::new(
        vec![
            Rule::new("acme-only", "", Action::route(target("acme"))).for_org("acme"),
            Rule::new("everyone", "true", Action::route(target("everyone"))),
        ],
        target("default"),
    )
    .unwrap();
    let mut r = chat("{}");
    r.extensions.insert(Identity::new("acme", "bob"));
    assert_eq!(run(&engine, r).await.unwrap()["target"], "acme");
    let mut r = chat("{}");
    r.extensions.insert(Identity::new("beta", "carol"));
    assert_eq!(run(&engine, r).await.unwrap()["target"], "everyone");
    assert_eq!(target_of(&engine, "{}").await, "everyone");
}

#[tokio::test]
async fn forward_rewrites_and_sets_upstream_headers() {
    let mut headers = http::HeaderMap::new();
    headers.insert("x-route", HeaderValue::from_static("big"));
    let rewrite = RewritesConfig {
        request: RewriteConfig::default()
            .set("model", json!("big-model"))
            .set_expr("metadata.original", "model"),
        response: RewriteConfig::default().set_expr("model", "model"),
        ..RewritesConfig::default()
    };
    let engine = RulesEngine::new(
        vec![Rule::new(
            "big",
            "promptTextLen > 5",
            Action::Forward(Forward::to(target("big")).rewrite(rewrite).headers(headers)),
        )],
        target("default"),
    )
    .unwrap();
    let v = run(
        &engine,
        chat(r#"{"model":"alias","messages":[{"role":"user","content":"long prompt"}]}"#),
    )
    .await
    .unwrap();
    assert_eq!(v["target"], "big");
    assert_eq!(v["rule"], "big");
    assert_eq!(v["headers"], json!({"x-route": "big"}));
    let sent: Value = serde_json::from_str(v["body"].as_str().unwrap()).unwrap();
    assert_eq!(sent["model"], "big-model");
    assert_eq!(sent["metadata"], json!({"original": "alias"}));
    // The response rewrite put the client's model name back.
    assert_eq!(v["model"], "alias");
}

#[tokio::test]
async fn an_allow_rule_stops_later_rules() {
    let engine = RulesEngine::new(
        vec![
            Rule::new(
                "vip",
                r#"header.x_vip == "1""#,
                Action::Forward(Forward::default()),
            ),
            Rule::new("deny-all", "", Action::deny(403, "closed")),
        ],
        target("default"),
    )
    .unwrap();
    let mut r = chat("{}");
    r.headers.insert("x-vip", HeaderValue::from_static("1"));
    assert_eq!(run(&engine, r).await.unwrap()["target"], "default");
    assert_eq!(run(&engine, chat("{}")).await.unwrap_err().status(), 403);
}

#[tokio::test]
async fn scalar_rules_never_parse_the_body() {
    let engine = RulesEngine::new(
        vec![Rule::new(
            "r",
            r#"stream == true && max_tokens > 10 && model == "m""#,
            Action::route(target("r")),
        )],
        target("default"),
    )
    .unwrap();
    let big = format!(
        r#"{{"model":"m","stream":true,"max_tokens":20,"messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(100_000)
    );
    let v = run(&engine, chat(&big)).await.unwrap();
    assert_eq!(v["target"], "r");
    assert_eq!(v["parsed"], false);
    // A nested path parses (once), and the parse travels with the request.
    let nested = RulesEngine::new(
        vec![Rule::new(
            "n",
            "messages.0.role == \"user\"",
            Action::route(target("n")),
        )],
        target("default"),
    )
    .unwrap();
    assert_eq!(run(&nested, chat(&big)).await.unwrap()["parsed"], true);
    // Rules that read no body field do not touch it at all.
    let hdr = RulesEngine::new(
        vec![Rule::new("h", "header.x == 1", Action::route(target("h")))],
        target("default"),
    )
    .unwrap();
    assert_eq!(
        run(&hdr, chat("{not json")).await.unwrap()["target"],
        "default"
    );
    assert_eq!(
        run(&engine, chat("{not json")).await.unwrap_err().status(),
        400
    );
}

#[test]
fn construction_errors_name_the_rule() {
    let d = || target("d");
    let err = |rules: Vec<Rule>| RulesEngine::new(rules, d()).unwrap_err().to_string();
    let e = err(vec![Rule::new("bad", "stream ==", Action::route(d()))]);
    assert!(
        e.starts_with("rule `bad`: invalid expression `stream ==`"),
        "{e}"
    );
    for status in [0, 200, 302, 600] {
        let e = err(vec![Rule::new("s", "", Action::deny(status, "x"))]);
        assert!(e.contains("rule `s`: deny status"), "{e}");
    }
    assert!(err(vec![Rule::new("", "", Action::deny(400, "x"))]).contains("empty name"));
    let twice = vec![
        Rule::new("x", "", Action::deny(400, "x")),
        Rule::new("x", "", Action::deny(400, "x")),
    ];
    assert!(err(twice).contains("defined twice"));
    for name in ["content-length", "authorization", "x-api-key"] {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::HeaderName::from_static(name),
            HeaderValue::from_static("1"),
        );
        let e = err(vec![Rule::new(
            "h",
            "",
            Action::Forward(Forward::default().headers(h)),
        )]);
        assert!(e.contains(&format!("header `{name}` cannot be set")), "{e}");
    }
    let rw = RewritesConfig {
        request: RewriteConfig::default().set_expr("x", "nope("),
        ..RewritesConfig::default()
    };
    let e = err(vec![Rule::new(
        "rw",
        "",
        Action::Forward(Forward::default().rewrite(rw)),
    )]);
    assert!(
        e.starts_with("rule `rw`: request_rewrites: set_keys_by_expr `x`"),
        "{e}"
    );
}

#[tokio::test]
async fn set_headers_replace_earlier_values_and_keep_others() {
    let mut headers = http::HeaderMap::new();
    headers.insert("x-route", HeaderValue::from_static("new"));
    let engine = RulesEngine::new(
        vec![Rule::new(
            "h",
            "",
            Action::Forward(Forward::default().headers(headers)),
        )],
        target("default"),
    )
    .unwrap();
    let mut r = chat("{}");
    let mut earlier = http::HeaderMap::new();
    earlier.append("x-route", HeaderValue::from_static("old-1"));
    earlier.append("x-route", HeaderValue::from_static("old-2"));
    earlier.insert("x-keep", HeaderValue::from_static("k"));
    r.extensions.insert(UpstreamHeaders(earlier));
    let v = run(&engine, r).await.unwrap();
    assert_eq!(v["headers"], json!({"x-route": "new", "x-keep": "k"}));
}
