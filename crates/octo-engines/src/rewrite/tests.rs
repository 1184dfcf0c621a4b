use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use octo_core::{
    ArcEngine, Body, Engine, Event, EventStream, Protocol, Request, Response, engine_fn,
};
use serde_json::{Value, json};

use super::*;

/// An OpenAI Chat request with `body`.
fn req(body: &'static str) -> Request {
    octo_test::request_with_body(Protocol::OpenAiChat, "m", false, body)
}

/// Records each request body it sees (and whether it arrived parsed), answers with `reply`.
fn recorder(seen: Arc<Mutex<Vec<(Bytes, bool)>>>, reply: Value) -> ArcEngine {
    Arc::new(engine_fn(move |req: Request| {
        let seen = seen.clone();
        let reply = reply.clone();
        async move {
            let parsed = req.body.is_parsed();
            seen.lock().unwrap().push((req.body.to_bytes(), parsed));
            Ok(Response::json(200, Body::from(reply)))
        }
    }))
}

fn echo() -> ArcEngine {
    Arc::new(engine_fn(|req: Request| async move {
        Ok(Response::json(200, req.body))
    }))
}

async fn full(resp: Response) -> Value {
    match resp.body {
        ResponseBody::Full(mut b) => b.json().unwrap().clone(),
        ResponseBody::Stream(_) => panic!("stream"),
    }
}

fn request_only(c: RewriteConfig) -> RewritesConfig {
    RewritesConfig {
        request: c,
        ..RewritesConfig::default()
    }
}

#[tokio::test]
async fn fixed_order_remove_then_set_then_expr() {
    let config = RewriteConfig::default()
        .set("max_tokens", json!(5))
        .set_expr("max_tokens", "1000")
        .remove("temperature")
        .set("temperature", json!(0.2));
    let engine = RewriteEngine::new(request_only(config), echo()).unwrap();
    let v = full(
        engine
            .process(req(r#"{"model":"m","temperature":1,"max_tokens":1}"#))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(v, json!({"model":"m","temperature":0.2,"max_tokens":1000}));
}

#[tokio::test]
async fn set_keys_keep_the_order_written() {
    let a = RewriteConfig::default()
        .set("a.b", json!(1))
        .set("a", json!("x"));
    let b = RewriteConfig::default()
        .set("a", json!("x"))
        .set("a.b", json!(1));
    let va = full(
        RewriteEngine::new(request_only(a), echo())
            .unwrap()
            .process(req("{}"))
            .await
            .unwrap(),
    )
    .await;
    let vb = full(
        RewriteEngine::new(request_only(b), echo())
            .unwrap()
            .process(req("{}"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(va, json!({"a":"x"}));
    assert_eq!(vb, json!({"a":{"b":1}}));
}

#[tokio::test]
async fn nested_paths_create_objects() {
    let config = RewriteConfig::default().set("stream_options.include_usage", json!(true));
    let engine = RewriteEngine::new(request_only(config), echo()).unwrap();
    let v = full(engine.process(req(r#"{"stream":true}"#)).await.unwrap()).await;
    assert_eq!(
        v,
        json!({"stream":true,"stream_options":{"include_usage":true}})
    );
}

#[tokio::test]
async fn an_empty_expression_result_skips_the_key() {
    let config = RewriteConfig::default()
        .set_expr("max_tokens", "if(max_tokens > 1000, 1000, ())")
        .set_expr("tagged", r#"if(str_contains(model, "gpt"), true, ())"#)
        .set_expr("team", "header.x_team");
    let engine = RewriteEngine::new(request_only(config), echo()).unwrap();
    let v = full(
        engine
            .process(req(r#"{"model":"claude","max_tokens":10}"#))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(v, json!({"model":"claude","max_tokens":10}));
    let mut r = req(r#"{"model":"gpt-4o","max_tokens":4096}"#);
    r.headers.insert("x-team", "red".parse().unwrap());
    let v = full(engine.process(r).await.unwrap()).await;
    assert_eq!(
        v,
        json!({"model":"gpt-4o","max_tokens":1000,"tagged":true,"team":"red"})
    );
    // Missing `max_tokens`: `() > 1000` fails to evaluate; the key is skipped, the request passes.
    let v = full(engine.process(req(r#"{"model":"x"}"#)).await.unwrap()).await;
    assert_eq!(v, json!({"model":"x"}));
}

#[tokio::test]
async fn top_level_sets_splice_bytes_without_parsing() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let config = RewriteConfig::default()
        .set("model", json!("upstream-name"))
        .set("stream", json!(false));
    let engine =
        RewriteEngine::new(request_only(config), recorder(seen.clone(), json!({}))).unwrap();
    engine
        .process(req(
            r#"{"model":"alias", "messages":[{"role":"user","content":"hi"}]}"#,
        ))
        .await
        .unwrap();
    let (bytes, parsed) = seen.lock().unwrap()[0].clone();
    assert!(!parsed, "no document tree was built");
    assert_eq!(
        &bytes[..],
        br#"{"stream":false,"model":"upstream-name", "messages":[{"role":"user","content":"hi"}]}"#
    );
}

#[tokio::test]
async fn response_rewrite_reads_the_clients_request() {
    let config = RewritesConfig {
        request: RewriteConfig::default().set("model", json!("upstream-name")),
        response: RewriteConfig::default()
            .set_expr("model", "model")
            .remove("system_fingerprint"),
        ..RewritesConfig::default()
    };
    let seen = Arc::new(Mutex::new(Vec::new()));
    let upstream = recorder(
        seen.clone(),
        json!({"model":"upstream-name","system_fingerprint":"fp","choices":[]}),
    );
    let engine = RewriteEngine::new(config, upstream).unwrap();
    let v = full(engine.process(req(r#"{"model":"alias"}"#)).await.unwrap()).await;
    assert_eq!(v, json!({"model":"alias","choices":[]}));
    assert_eq!(
        &seen.lock().unwrap()[0].0[..],
        br#"{"model":"upstream-name"}"#
    );
}

#[tokio::test]
async fn non_json_response_bodies_pass_untouched() {
    let text: ArcEngine = Arc::new(engine_fn(|_req: Request| async {
        Ok(Response::json(200, Body::from_static(b"plain text")))
    }));
    let config = RewritesConfig {
        response: RewriteConfig::default().set("a", json!(1)),
        ..RewritesConfig::default()
    };
    let resp = RewriteEngine::new(config, text)
        .unwrap()
        .process(req("{}"))
        .await
        .unwrap();
    let ResponseBody::Full(body) = resp.body else {
        panic!()
    };
    assert_eq!(&body.to_bytes()[..], b"plain text");
}

#[tokio::test]
async fn each_stream_event_is_rewritten_and_done_passes() {
    let upstream: ArcEngine = Arc::new(engine_fn(|_req: Request| async {
        Ok(Response::stream(EventStream::iter(vec![
            Event::data(Bytes::from_static(
                br#"{"model":"up","choices":[{"delta":{"content":"a"}}]}"#,
            )),
            Event::named("ping", Bytes::from_static(b"not json")),
            Event::data(Bytes::from_static(b"[DONE]")),
        ])))
    }));
    let config = RewritesConfig {
        stream: RewriteConfig::default()
            .set_expr("model", "model")
            .remove("choices.0.delta.content")
            .set("choices.0.delta.text", json!("b")),
        ..RewritesConfig::default()
    };
    let engine = RewriteEngine::new(config, upstream).unwrap();
    let resp = engine
        .process(req(r#"{"model":"alias","stream":true}"#))
        .await
        .unwrap();
    let ResponseBody::Stream(mut events) = resp.body else {
        panic!("not a stream")
    };
    let mut out = Vec::new();
    while let Some(ev) = events.next().await {
        out.push(ev.unwrap());
    }
    let first: Value = serde_json::from_slice(&out[0].data_body().to_bytes()).unwrap();
    assert_eq!(
        first,
        json!({"model":"alias","choices":[{"delta":{"text":"b"}}]})
    );
    assert_eq!(&out[1].data_body().to_bytes()[..], b"not json");
    assert_eq!(out[1].name(), Some("ping"));
    assert!(out[2].is_done_marker());
}

#[tokio::test]
async fn attempts_never_see_each_others_changes() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let config = RewriteConfig::default()
        .remove("user")
        .set("metadata.attempt", json!(1))
        .set("tags.-1", json!("x"));
    let engine =
        RewriteEngine::new(request_only(config), recorder(seen.clone(), json!({}))).unwrap();
    let original = req(r#"{"model":"m","user":"u","tags":[]}"#);
    let mut parsed = original.clone();
    parsed.body.json().unwrap(); // a parse cached before the retry loop is shared by clones
    for _ in 0..2 {
        engine.process(parsed.clone()).await.unwrap();
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].0, seen[1].0, "both attempts send identical bytes");
    let v: Value = serde_json::from_slice(&seen[0].0).unwrap();
    assert_eq!(
        v,
        json!({"model":"m","metadata":{"attempt":1},"tags":["x"]})
    );
    assert_eq!(
        parsed.body.json().unwrap(),
        &json!({"model":"m","user":"u","tags":[]})
    );
    assert_eq!(
        &original.body.to_bytes()[..],
        br#"{"model":"m","user":"u","tags":[]}"#
    );
}

#[tokio::test]
async fn a_request_body_that_is_not_an_object_is_a_400() {
    let engine = RewriteEngine::new(
        request_only(RewriteConfig::default().set("a", json!(1))),
        echo(),
    )
    .unwrap();
    let e = engine.process(req("[1,2]")).await.unwrap_err();
    assert_eq!(e.status(), 400);
    let engine = RewriteEngine::new(
        request_only(RewriteConfig::default().set("a.b", json!(1))),
        echo(),
    )
    .unwrap();
    assert_eq!(engine.process(req("7")).await.unwrap_err().status(), 400);
}

#[tokio::test]
async fn removing_an_absent_key_keeps_the_bytes() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let engine = RewriteEngine::new(
        request_only(RewriteConfig::default().remove("user")),
        recorder(seen.clone(), json!({})),
    )
    .unwrap();
    engine.process(req(r#"{"z":1, "a":2}"#)).await.unwrap();
    assert_eq!(&seen.lock().unwrap()[0].0[..], br#"{"z":1, "a":2}"#);
}

#[test]
fn build_errors_name_the_key() {
    let e =
        Rewrites::new(request_only(RewriteConfig::default().set("a..b", json!(1)))).unwrap_err();
    assert!(
        e.message()
            .starts_with("request_rewrites: set_keys: path `a..b`"),
        "{e}"
    );
    let e = Rewrites::new(RewritesConfig {
        response: RewriteConfig::default().set_expr("max_tokens", "max_tokens >"),
        ..RewritesConfig::default()
    })
    .unwrap_err();
    assert!(
        e.message()
            .starts_with("response_rewrites: set_keys_by_expr `max_tokens`: invalid expression"),
        "{e}"
    );
    let e = Rewrites::new(RewritesConfig {
        stream: RewriteConfig::default().remove(r"a\"),
        ..RewritesConfig::default()
    })
    .unwrap_err();
    assert!(
        e.message()
            .starts_with("stream_chunk_rewrites: remove_keys"),
        "{e}"
    );
}

#[test]
fn merge_layers_model_over_backend() {
    let backend = RewriteConfig::default()
        .set("a", json!(1))
        .set("b", json!(2))
        .remove("x")
        .set_expr("e", "1");
    let model = RewriteConfig::default()
        .set("b", json!(3))
        .set("c", json!(4))
        .remove("y")
        .set_expr("e", "2");
    let merged = backend.merge(model);
    assert_eq!(
        merged.set_keys,
        vec![
            ("a".into(), json!(1)),
            ("b".into(), json!(3)),
            ("c".into(), json!(4))
        ]
    );
    assert_eq!(merged.remove_keys, ["x", "y"]);
    assert_eq!(merged.set_keys_by_expr, vec![("e".into(), "2".into())]);
    assert!(RewriteConfig::default().is_empty() && RewritesConfig::default().is_empty());
}

#[tokio::test]
async fn unchanged_events_keep_their_raw_frame() {
    let [first, second] = <[_; 2]>::try_from(octo_test::events(
        "data:  {\"a\":1}\n\ndata: {\"user\":\"u\"}\n\n",
    ))
    .unwrap();
    assert!(first.raw_frame().is_some());
    let policy = RewritePolicy::new(RewriteConfig::default().remove("user")).unwrap();
    let env = Env::empty();
    let kept = policy.apply_event(first.clone(), &env);
    assert_eq!(
        kept.raw_frame(),
        first.raw_frame(),
        "nothing removed: same bytes out"
    );
    let changed = policy.apply_event(second, &env);
    assert_eq!(&changed.to_frame()[..], b"data: {}\n\n");
}

#[tokio::test]
async fn top_level_removes_splice_bytes_without_parsing() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let config = RewriteConfig::default()
        .remove("user")
        .remove("metadata")
        .set("model", json!("up"));
    let engine =
        RewriteEngine::new(request_only(config), recorder(seen.clone(), json!({}))).unwrap();
    engine
        .process(req(
            r#"{"user":"u", "model":"alias", "metadata":{"a":1}, "messages":[]}"#,
        ))
        .await
        .unwrap();
    let (bytes, parsed) = seen.lock().unwrap()[0].clone();
    assert!(!parsed);
    assert_eq!(&bytes[..], br#"{"model":"up", "messages":[]}"#);
    // Not an object: 400, as for any rewrite of a request.
    assert_eq!(engine.process(req("[1]")).await.unwrap_err().status(), 400);
}
