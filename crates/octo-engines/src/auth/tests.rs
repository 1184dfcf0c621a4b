use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use octo_core::{ArcEngine, Body, Engine, Protocol, Request, Response, engine_fn};
use serde_json::{Value, json};

use super::*;

/// An inner engine that answers with the identity it saw and the credential headers left.
fn echo(calls: Arc<AtomicUsize>) -> ArcEngine {
    Arc::new(engine_fn(move |req: Request| {
        let calls = calls.clone();
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            let id = req.extensions.get::<Identity>();
            Ok(Response::json(
                200,
                Body::from(json!({
                    "org": id.map(|i| i.org.to_string()),
                    "user": id.map(|i| i.user.to_string()),
                    "authorization": req.headers.contains_key("authorization"),
                    "x_api_key": req.headers.contains_key("x-api-key"),
                    "x_goog_api_key": req.headers.contains_key("x-goog-api-key"),
                    "uri": req.uri.to_string(),
                })),
            ))
        }
    }))
}

fn config() -> AuthConfig {
    AuthConfig {
        orgs: vec![
            OrgConfig::new("acme")
                .key(KeyConfig::new("alice", "sk-acme-alice"))
                .key(KeyConfig::new(
                    "bob",
                    hash_key("sk-acme-bob")
                        .to_uppercase()
                        .replace("SHA256:", "sha256:"),
                ))
                .key(
                    KeyConfig::new("old", "sk-acme-old")
                        .expires_at(SystemTime::now() - Duration::from_secs(1)),
                )
                .key(
                    KeyConfig::new("later", "sk-acme-later")
                        .expires_at(SystemTime::now() + Duration::from_secs(3600)),
                )
                .key(KeyConfig::new("narrow", "sk-acme-narrow").allowed_models(["pub"]))
                .model("priv"),
            OrgConfig::new("beta").key(KeyConfig::new("carol", "sk-beta-carol")),
        ],
        model_access: [
            ("pub".to_owned(), Access::Public),
            ("int".to_owned(), Access::Internal),
            ("priv".to_owned(), Access::Private),
        ]
        .into(),
        default_access: Access::Internal,
    }
}

struct Harness {
    engine: AuthEngine,
    calls: Arc<AtomicUsize>,
}

fn harness(config: AuthConfig) -> Harness {
    let calls = Arc::new(AtomicUsize::new(0));
    let auth = Arc::new(Authenticator::new(config).unwrap());
    Harness {
        engine: AuthEngine::new(auth, echo(calls.clone())),
        calls,
    }
}

fn chat(model: &str, header: Option<(&'static str, &str)>) -> Request {
    let body = Body::from(Bytes::from(format!(
        r#"{{"model":"{model}","messages":[]}}"#
    )));
    let mut req = Request::post(Protocol::OpenAiChat, "/v1/chat/completions", body);
    if let Some((name, value)) = header {
        req.headers.insert(name, value.parse().unwrap());
    }
    req
}

use bytes::Bytes;

fn bearer(key: &str) -> Option<(&'static str, &str)> {
    Some((
        "authorization",
        Box::leak(format!("Bearer {key}").into_boxed_str()),
    ))
}

async fn ok(h: &Harness, req: Request) -> Value {
    let resp = h.engine.process(req).await.unwrap();
    match resp.body {
        octo_core::ResponseBody::Full(mut b) => b.json().unwrap().clone(),
        _ => panic!("stream"),
    }
}

async fn status(h: &Harness, req: Request) -> u16 {
    match h.engine.process(req).await {
        Ok(r) => r.status.as_u16(),
        Err(e) => e.status().as_u16(),
    }
}

#[tokio::test]
async fn public_model_without_key_is_anonymous() {
    let h = harness(config());
    let v = ok(&h, chat("pub", None)).await;
    assert_eq!(v["org"], Value::Null);
}

#[tokio::test]
async fn non_public_model_without_key_is_401_in_the_clients_protocol() {
    let h = harness(config());
    for model in ["int", "priv", "unlisted"] {
        let e = h.engine.process(chat(model, None)).await.unwrap_err();
        assert_eq!(e.status(), 401, "{model}");
        assert!(
            e.message().contains("requires an API key"),
            "{}",
            e.message()
        );
        let rendered: Value = serde_json::from_slice(&e.render(Protocol::Anthropic).body).unwrap();
        assert_eq!(rendered["error"]["type"], "authentication_error");
        let rendered: Value = serde_json::from_slice(&e.render(Protocol::Gemini).body).unwrap();
        assert_eq!(rendered["error"]["status"], "UNAUTHENTICATED");
    }
    assert_eq!(
        h.calls.load(Ordering::SeqCst),
        0,
        "the inner engine never ran"
    );
}

#[tokio::test]
async fn valid_key_in_each_place_sets_identity_and_is_stripped() {
    let h = harness(config());
    let places: [Option<(&'static str, &str)>; 3] = [
        bearer("sk-acme-alice"),
        Some(("x-api-key", "sk-acme-alice")),
        Some(("x-goog-api-key", "sk-acme-alice")),
    ];
    for place in places {
        let v = ok(&h, chat("int", place)).await;
        assert_eq!(
            (v["org"].as_str(), v["user"].as_str()),
            (Some("acme"), Some("alice"))
        );
        assert_eq!(v["authorization"], false);
        assert_eq!(v["x_api_key"], false);
        assert_eq!(v["x_goog_api_key"], false);
    }
    // Gemini: key in the query, model in the path.
    let mut req = Request::post(
        Protocol::Gemini,
        "/v1beta/models/int:streamGenerateContent?alt=sse&key=sk-beta-carol",
        Body::from_static(b"{\"contents\":[]}"),
    );
    req.route.model = Some("int".into());
    let v = ok(&h, req).await;
    assert_eq!(v["org"], "beta");
    assert_eq!(v["uri"], "/v1beta/models/int:streamGenerateContent?alt=sse");
}

#[tokio::test]
async fn hashed_keys_authenticate() {
    let h = harness(config());
    let v = ok(&h, chat("int", bearer("sk-acme-bob"))).await;
    assert_eq!(v["user"], "bob");
}

#[tokio::test]
async fn wrong_key_is_401_even_on_a_public_model() {
    let h = harness(config());
    for model in ["pub", "int", "priv"] {
        let e = h
            .engine
            .process(chat(model, bearer("sk-acme-alicf")))
            .await
            .unwrap_err();
        assert_eq!(e.status(), 401, "{model}");
        assert_eq!(e.message(), "invalid API key");
        assert!(
            !format!("{e:?}").contains("alicf"),
            "the key is never echoed"
        );
    }
    let basic = Some(("authorization", "Basic YTpi"));
    assert_eq!(status(&h, chat("pub", basic)).await, 401);
    assert_eq!(h.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn private_models_need_the_org_to_list_them() {
    let h = harness(config());
    assert_eq!(
        ok(&h, chat("priv", bearer("sk-acme-alice"))).await["org"],
        "acme"
    );
    let e = h
        .engine
        .process(chat("priv", bearer("sk-beta-carol")))
        .await
        .unwrap_err();
    assert_eq!(e.status(), 403);
    assert!(
        e.message()
            .contains("org `beta` has no access to model `priv`")
    );
    // Internal models are open to every valid key.
    assert_eq!(
        ok(&h, chat("int", bearer("sk-beta-carol"))).await["org"],
        "beta"
    );
}

#[tokio::test]
async fn key_expiry() {
    let h = harness(config());
    let e = h
        .engine
        .process(chat("int", bearer("sk-acme-old")))
        .await
        .unwrap_err();
    assert_eq!(e.status(), 401);
    assert!(e.message().contains("expired"));
    assert_eq!(status(&h, chat("pub", bearer("sk-acme-old"))).await, 401);
    assert_eq!(status(&h, chat("int", bearer("sk-acme-later"))).await, 200);
}

#[tokio::test]
async fn allowed_models_limit_a_key() {
    let h = harness(config());
    assert_eq!(status(&h, chat("pub", bearer("sk-acme-narrow"))).await, 200);
    let e = h
        .engine
        .process(chat("int", bearer("sk-acme-narrow")))
        .await
        .unwrap_err();
    assert_eq!(e.status(), 403);
    assert!(e.message().contains("may not use model `int`"));
    // The restriction holds even where the org would otherwise have access.
    assert_eq!(
        status(&h, chat("priv", bearer("sk-acme-narrow"))).await,
        403
    );
}

#[tokio::test]
async fn an_identity_from_outside_is_not_trusted() {
    let h = harness(config());
    let mut req = chat("pub", None);
    req.extensions.insert(Identity::new("acme", "alice"));
    assert_eq!(ok(&h, req).await["org"], Value::Null);
}

#[tokio::test]
async fn the_body_is_read_only_when_the_answer_depends_on_the_model() {
    // Everything internal: an anonymous request is refused before its (broken) body is read,
    // and a keyed one passes without reading it.
    let mut cfg = config();
    cfg.model_access.clear();
    let h = harness(cfg);
    let broken = |header| {
        let mut req = Request::post(
            Protocol::OpenAiChat,
            "/v1/chat/completions",
            Body::from_static(b"{not json"),
        );
        if let Some((n, v)) = header {
            req.headers
                .insert(n, http::HeaderValue::from_str(v).unwrap());
        }
        req
    };
    assert_eq!(status(&h, broken(None)).await, 401);
    assert_eq!(status(&h, broken(bearer("sk-beta-carol"))).await, 200);
    // With a public model configured, the model must be read: the broken body is a 400.
    let h = harness(config());
    assert_eq!(status(&h, broken(None)).await, 400);
}

#[tokio::test]
async fn model_list_uses_the_default_access() {
    let h = harness(config());
    let list = |header| {
        let mut req = Request::new(
            http::Method::GET,
            "/v1/models".parse().unwrap(),
            Protocol::ModelList,
            Body::empty(),
        );
        if let Some((n, v)) = header {
            req.headers
                .insert(n, http::HeaderValue::from_str(v).unwrap());
        }
        req
    };
    assert_eq!(status(&h, list(None)).await, 401);
    assert_eq!(status(&h, list(bearer("sk-acme-narrow"))).await, 200);
    let auth = h.engine.authenticator();
    let alice = Identity::new("acme", "alice");
    let carol = Identity::new("beta", "carol");
    assert!(auth.may_use(Some(&alice), "priv"));
    assert!(!auth.may_use(Some(&carol), "priv"));
    assert!(auth.may_use(None, "pub"));
    assert!(!auth.may_use(None, "int"));
    assert!(!auth.may_use(Some(&Identity::new("acme", "nobody")), "int"));
}

#[test]
fn construction_errors() {
    let dup = |a: &str, b: &str| AuthConfig {
        orgs: vec![
            OrgConfig::new("a").key(KeyConfig::new("k", a)),
            OrgConfig::new("b").key(KeyConfig::new("k", b)),
        ],
        ..AuthConfig::default()
    };
    let e = Authenticator::new(dup("same", "same")).unwrap_err();
    assert!(
        e.message()
            .contains("org `b` key `k` is the same key as org `a` key `k`"),
        "{e}"
    );
    assert!(!e.message().contains("same,"), "keys are not printed");
    // Plaintext and hashed spellings of one key are still the same key.
    assert!(Authenticator::new(dup("same", &hash_key("same"))).is_err());
    assert!(Authenticator::new(dup("x", "y")).is_ok());

    let one = |org: OrgConfig| {
        Authenticator::new(AuthConfig {
            orgs: vec![org],
            ..AuthConfig::default()
        })
    };
    assert!(
        one(OrgConfig::new("a").key(KeyConfig::new("k", "sha256:abc")))
            .unwrap_err()
            .message()
            .contains("64 hex")
    );
    assert!(one(OrgConfig::new("a").key(KeyConfig::new("k", " "))).is_err());
    assert!(one(OrgConfig::new("a").key(KeyConfig::new("", "x"))).is_err());
    assert!(
        one(OrgConfig::new("a")
            .key(KeyConfig::new("k", "x"))
            .key(KeyConfig::new("k", "y")))
        .is_err()
    );
    assert!(one(OrgConfig::new("")).is_err());
    let twice = AuthConfig {
        orgs: vec![OrgConfig::new("a"), OrgConfig::new("a")],
        ..AuthConfig::default()
    };
    assert!(Authenticator::new(twice).is_err());
}

#[test]
fn access_parses_strictly_and_debug_redacts_keys() {
    assert_eq!("private".parse::<Access>().unwrap(), Access::Private);
    assert!("pubic".parse::<Access>().is_err());
    let k = KeyConfig::new("alice", "sk-secret");
    assert!(!format!("{k:?}").contains("sk-secret"));
    let a = Authenticator::new(config()).unwrap();
    assert!(!format!("{a:?}").contains("sk-acme"));
}

#[tokio::test]
async fn an_authenticated_request_sticks_by_its_key_and_session() {
    use crate::balance::StickyKey;
    let sticky_of = |req: Request| async move {
        let seen = Arc::new(std::sync::Mutex::new(None));
        let inner: ArcEngine = Arc::new(engine_fn({
            let seen = seen.clone();
            move |req: Request| {
                *seen.lock().unwrap() = req.extensions.get::<StickyKey>().cloned();
                async { Ok(Response::json(200, Body::from_static(b"{}"))) }
            }
        }));
        let auth = Arc::new(Authenticator::new(config()).unwrap());
        AuthEngine::new(auth, inner).process(req).await.unwrap();
        seen.lock().unwrap().clone().map(|k| k.0)
    };
    assert_eq!(
        sticky_of(chat("pub", bearer("sk-acme-alice")))
            .await
            .as_deref(),
        Some("acme/alice")
    );
    let mut req = chat("pub", bearer("sk-acme-alice"));
    req.headers.insert("x-session-id", " s-1 ".parse().unwrap());
    assert_eq!(sticky_of(req).await.as_deref(), Some("acme/alice/s-1"));
    // Anonymous: no key of ours (the balancer falls back to `x-session-id` itself).
    assert_eq!(sticky_of(chat("pub", None)).await, None);
    // One set before the auth engine is kept.
    let mut req = chat("pub", bearer("sk-acme-alice"));
    req.extensions.insert(StickyKey("mine".into()));
    assert_eq!(sticky_of(req).await.as_deref(), Some("mine"));
}
