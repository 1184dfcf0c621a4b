use evalexpr::Value;
use octo_core::{Body, Protocol, Request};

use super::*;
use crate::auth::Identity;

/// An OpenAI Chat request with `body`.
fn req(body: &'static str) -> Request {
    octo_test::request_with_body(Protocol::OpenAiChat, "m", false, body)
}

/// Evaluates `src` against `req` as a condition.
fn check(src: &str, req: &mut Request) -> bool {
    let e = Expr::new(src).unwrap();
    let env = Env::extract(&EnvSpec::new([&e]), req).unwrap();
    e.matches(&env).unwrap()
}

fn eval(src: &str, req: &mut Request) -> Value {
    let e = Expr::new(src).unwrap();
    let env = Env::extract(&EnvSpec::new([&e]), req).unwrap();
    e.eval(&env).unwrap()
}

const CHAT: &str = r#"{"model":"gpt-4o","max_tokens":2048,"temperature":0.7,
  "metadata":{"user_id":"u-1","tags":["a","b"]},
  "messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}]}"#;

#[test]
fn top_level_fields_are_read_without_a_parse() {
    let mut r = req(CHAT);
    assert!(check(
        r#"model == "gpt-4o" && max_tokens == 2048 && temperature > 0.5 && stream == false"#,
        &mut r
    ));
    assert!(!r.body.is_parsed(), "a borrowed scan, no document tree");
    // An object reads as its compact JSON text, an array as a tuple.
    assert_eq!(
        eval("metadata", &mut r),
        Value::String(r#"{"tags":["a","b"],"user_id":"u-1"}"#.into())
    );
    assert!(!r.body.is_parsed());
    assert!(check("len(messages) == 2", &mut r));
}

#[test]
fn nested_paths_parse_once() {
    let mut r = req(CHAT);
    assert!(check(
        r#"messages.0.role == "system" && metadata.user_id == "u-1" && metadata.tags.1 == "b""#,
        &mut r
    ));
    assert!(r.body.is_parsed());
    assert!(!r.body.is_dirty(), "reading never changes the bytes");
    assert!(check("RawReq.messages.1.content == \"hi\"", &mut r));
}

#[test]
fn missing_fields_read_as_empty_never_as_errors() {
    let mut r = req(r#"{"model":"m"}"#);
    assert!(check("max_tokens == ()", &mut r));
    assert!(check("metadata.user_id == ()", &mut r));
    assert!(check("messages.5.role == ()", &mut r));
    // No short-circuit in evalexpr: the missing operand is still evaluated, and must not fail.
    assert!(check("true || nothing.here == 1", &mut r));
    assert!(check(r#"!str_contains(metadata.tag, "x")"#, &mut r));
    assert!(check(r#"header.x_absent == () && auth.org == """#, &mut r));
    // A type error on empty is an evaluation error, which rules treat as "no match".
    let e = Expr::new("max_tokens > 1000").unwrap();
    let env = Env::extract(&EnvSpec::new([&e]), &mut r).unwrap();
    assert!(e.matches(&env).is_err());
    // Unknown identifiers read as empty even in an environment built for other expressions.
    assert_eq!(Env::empty().get("anything"), &Value::Empty);
}

#[test]
fn stream_is_false_when_absent_and_route_params_win() {
    let mut r = req(r#"{"model":"m"}"#);
    assert!(check("stream == false", &mut r));
    let mut r = req(r#"{"model":"m","stream":true}"#);
    assert!(check("stream == true && RawReq.stream", &mut r));
    // Gemini: model and stream come from the path; the body is not even read.
    let mut g = Request::post(
        Protocol::Gemini,
        "/v1beta/models/gemini-x:streamGenerateContent",
        Body::from_static(b"not json"),
    );
    g.route.model = Some("gemini-x".into());
    g.route.stream = Some(true);
    assert!(check(r#"model == "gemini-x" && stream"#, &mut g));
}

#[test]
fn headers_and_identity() {
    let mut r = req("{}");
    r.headers.insert("x-team", "red".parse().unwrap());
    r.headers.append("x-tag", "a".parse().unwrap());
    r.headers.append("x-tag", "b".parse().unwrap());
    assert!(check(
        r#"header.x_team == "red" && header.X_TAG == "a, b""#,
        &mut r
    ));
    assert!(check(r#"auth.org == "" && auth.user == """#, &mut r));
    r.extensions.insert(Identity::new("acme", "alice"));
    assert!(check(
        r#"auth.org == "acme" && auth.user == "alice""#,
        &mut r
    ));
    assert!(!r.body.is_parsed());
}

#[test]
fn octollm_features_reference_values() {
    let mut r = req(
        r#"{"model":"glm-4.7","messages":[{"role":"user","content":"who are you? I am testing the rule engine."}]}"#,
    );
    assert!(check(
        r#"prefix20 == "c6eec1e7" && suffix20 == "efc888e0" && promptTextLen == 42"#,
        &mut r
    ));
    assert!(check(
        r#"Features.prefix20 == "c6eec1e7" && Features.promptTextLen == 42"#,
        &mut r
    ));
    // No messages: length 0, hashes empty.
    let mut empty = req(r#"{"model":"glm-4.7"}"#);
    assert!(check("promptTextLen == 0 && prefix20 == ()", &mut empty));
}

#[test]
fn string_functions() {
    let mut r = req(r#"{"model":"gpt-4o-mini","user":"ops-42"}"#);
    assert!(check(
        r#"str_contains(model, "4o") && contains(model, "mini")"#,
        &mut r
    ));
    assert!(check(
        r#"starts_with(model, "gpt-") && startsWith(model, "gpt")"#,
        &mut r
    ));
    assert!(check(
        r#"ends_with(model, "mini") && endsWith(model, "-mini")"#,
        &mut r
    ));
    assert!(check(
        r#"matches(user, "^ops-[0-9]+$") && !matches(model, "claude")"#,
        &mut r
    ));
    // The builtin tuple `contains` still works.
    assert!(check(
        r#"contains(("a", "b"), "b") && !contains((1, 2), 3)"#,
        &mut r
    ));
    // Dynamic patterns are compiled at evaluation time.
    assert!(check(r#"matches(model, "gpt" + "-4o")"#, &mut r));
    let bad = Expr::new(r#"matches(model, "(" + "")"#).unwrap();
    let env = Env::extract(&EnvSpec::new([&bad]), &mut r).unwrap();
    assert!(bad.eval(&env).is_err());
    // Numbers read as their text.
    let mut n = req(r#"{"n":12345}"#);
    assert!(check(r#"starts_with(n, "123")"#, &mut n));
}

#[test]
fn build_errors_say_why() {
    let err = |src: &str| Expr::new(src).unwrap_err().to_string();
    assert!(err("(stream == true").contains("invalid expression `(stream == true`"));
    assert!(err("stream === true").contains("assignment"));
    assert!(err("x = 1").contains("assignment"));
    assert!(err("stream ==").contains("missing an operand"));
    assert!(err("a ? b : c").contains("if(c, a, b)"));
    assert!(err("role == 'system'").contains("double quotes"));
    assert!(err("RawReq.messages[0].role == 1").contains("messages.0.role"));
    let e = err("shout(model)");
    assert!(e.contains("unknown function `shout` (at byte 0)"), "{e}");
    assert!(err(r#"matches(model, "(")"#).contains("bad regex"));
    assert!(err("auth.team == 1").contains("auth.org"));
    assert!(err("  ").contains("empty"));
    assert!(err("RawReq == 1").contains("name a field"));
    // Builtins are known.
    assert!(Expr::new(r#"str::to_lowercase(model) == "x" && if(true, 1, 2) == 1"#).is_ok());
    assert!(Expr::new("math::abs(-1) == 1").is_ok());
}

#[test]
fn non_boolean_results_do_not_match() {
    let mut r = req(r#"{"model":"m"}"#);
    let e = Expr::new("model").unwrap();
    let env = Env::extract(&EnvSpec::new([&e]), &mut r).unwrap();
    assert!(e.matches(&env).is_err());
    assert_eq!(e.reads().collect::<Vec<_>>(), ["model"]);
}

#[test]
fn a_broken_body_is_a_400_only_when_the_body_is_read() {
    let mut r = req("{broken");
    let e = Expr::new("model == 1").unwrap();
    let err = Env::extract(&EnvSpec::new([&e]), &mut r).unwrap_err();
    assert_eq!(err.status(), 400);
    let h = Expr::new(r#"header.x == "1""#).unwrap();
    assert!(Env::extract(&EnvSpec::new([&h]), &mut r).is_ok());
}

#[test]
fn duplicate_keys_last_wins_like_a_parse() {
    let mut r = req(r#"{"model":"a","model":"b"}"#);
    assert!(check(r#"model == "b""#, &mut r));
}

#[test]
fn value_to_json_conversions() {
    assert_eq!(value_to_json(&Value::Empty), None);
    assert_eq!(value_to_json(&Value::Int(3)), Some(serde_json::json!(3)));
    assert_eq!(value_to_json(&Value::Float(f64::NAN)), None);
    assert_eq!(
        value_to_json(&Value::Tuple(vec![
            Value::Boolean(true),
            Value::Empty,
            "s".into()
        ])),
        Some(serde_json::json!([true, null, "s"]))
    );
}

#[test]
fn a_request_without_a_body_reads_fields_as_missing() {
    let mut get = Request::new(
        http::Method::GET,
        "/v1/models".parse().unwrap(),
        Protocol::ModelList,
        Body::empty(),
    );
    assert!(check(
        "model == () && stream == false && messages.0.role == ()",
        &mut get
    ));
}

#[test]
fn documented_examples_compile() {
    for src in [
        "stream == true",
        "promptTextLen > 100000",
        r#"header.x_team == "red" && starts_with(model, "gpt-")"#,
        "if(max_tokens > 4096, 4096, ())",
        "if(temperature == (), 1, temperature)",
        r#"messages.0.role == "system""#,
        r#"startsWith(model, "gpt") && contains(model, "4o") && matches(model, "^gpt-4o(-mini)?$")"#,
        "Features.prefix20 == prefix20",
    ] {
        Expr::new(src).unwrap_or_else(|e| panic!("{src}: {e}"));
    }
    let mut r = req(r#"{"max_tokens":9000}"#);
    assert_eq!(
        eval("if(max_tokens > 4096, 4096, ())", &mut r),
        Value::Int(4096)
    );
    assert_eq!(
        eval("if(temperature == (), 1, temperature)", &mut r),
        Value::Int(1)
    );
}
