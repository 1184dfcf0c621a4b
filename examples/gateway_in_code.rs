//! A gateway built in Rust code, without YAML: gateway keys ([`AuthEngine`]), rules
//! ([`RulesEngine`]: a deny and a route) and a model served by two upstreams with weighted
//! round robin and retries ([`TargetSet`]), behind the HTTP front. The upstreams are in-process
//! mocks, so this runs offline:
//!
//! ```sh
//! cargo run --example gateway_in_code
//! ```
//!
//! `tests/examples.rs` runs it too.

use std::sync::Arc;
use std::time::Duration;

use octo_core::http::{Router, ServeConfig, SharedRouter, serve};
use octo_core::{ArcEngine, Protocol};
use octo_engines::auth::{Access, AuthConfig, AuthEngine, Authenticator, KeyConfig, OrgConfig};
use octo_engines::balance::{StrategyKind, Target, TargetSet};
use octo_engines::endpoint::{EndpointConfig, HttpEndpoint};
use octo_engines::retry::RetryPolicy;
use octo_engines::rules::{Action, Rule, RulesEngine};
use octo_mock::{MockConfig, MockServer};

/// What the example's requests got back.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// Status of a request without a gateway key.
    pub(crate) without_key: u16,
    /// The upstream model that answered each of eight short requests.
    pub(crate) served_by: Vec<String>,
    /// Status and message of a streaming request (denied by a rule).
    pub(crate) stream: (u16, String),
    /// The upstream model that answered a long prompt (routed by a rule).
    pub(crate) long_prompt_served_by: String,
    /// Status of a request for a model this gateway does not serve.
    pub(crate) unknown_model: u16,
}

fn endpoint(name: &str, url: String) -> Result<Arc<HttpEndpoint>, Box<dyn std::error::Error>> {
    let config = EndpointConfig::new(name, url, Protocol::OpenAiChat).api_key("sk-upstream");
    Ok(Arc::new(HttpEndpoint::new(config)?))
}

/// Builds the gateway, serves it on an ephemeral port and sends it a few requests.
pub(crate) async fn run() -> Result<Outcome, Box<dyn std::error::Error>> {
    // Two upstreams (mock servers here; any OpenAI-compatible URL in real life).
    let primary_mock = MockServer::start("127.0.0.1:0".parse()?, MockConfig::default()).await?;
    let secondary_mock = MockServer::start("127.0.0.1:0".parse()?, MockConfig::default()).await?;
    let primary = endpoint("primary", primary_mock.url())?;
    let secondary = endpoint("secondary", secondary_mock.url())?;

    // The model `chat`: 3 of 4 requests to primary, 1 to secondary; a failed attempt moves on.
    let retry = RetryPolicy::new(3, Duration::from_secs(30));
    let chat: ArcEngine = Arc::new(
        TargetSet::builder(
            "chat",
            vec![
                Target::from(primary.clone())
                    .with_model("primary-small")
                    .with_weight(3),
                Target::from(secondary.clone())
                    .with_model("secondary-small")
                    .with_weight(1),
            ],
        )
        .strategy(StrategyKind::WeightedRoundRobin)
        .retry(retry)
        .build()?,
    );
    // Where long prompts go.
    let large: ArcEngine = Arc::new(
        TargetSet::builder(
            "chat",
            vec![Target::from(secondary).with_model("secondary-large")],
        )
        .retry(retry)
        .build()?,
    );

    // Rules, first match wins; expressions are compiled here, once.
    let rules: ArcEngine = Arc::new(RulesEngine::new(
        vec![
            Rule::new(
                "known-models",
                r#"model != "chat""#,
                Action::deny(404, "this gateway serves the model `chat` only"),
            ),
            Rule::new(
                "no-stream",
                "stream == true",
                Action::deny(403, "streaming is not allowed"),
            ),
            Rule::new("long-prompts", "promptTextLen > 40", Action::route(large)),
        ],
        chat,
    )?);

    // Gateway keys: `chat` needs one.
    let auth = Authenticator::new(AuthConfig {
        orgs: vec![OrgConfig::new("acme").key(KeyConfig::new("alice", "sk-acme-alice"))],
        model_access: [("chat".to_owned(), Access::Internal)].into(),
        default_access: Access::Internal,
    })?;
    let gateway: ArcEngine = Arc::new(AuthEngine::new(Arc::new(auth), rules));

    // The HTTP front.
    let router = Router::new()
        .engine(Protocol::OpenAiChat, gateway)
        .health_routes();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/v1/chat/completions", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        listener,
        SharedRouter::new(router),
        ServeConfig::default(),
        async move {
            let _ = stopped.await;
        },
    ));

    let client = reqwest::Client::new();
    let send = |model: &str, text: &str, stream: bool, key: Option<&str>| {
        let body = serde_json::json!({
            "model": model,
            "stream": stream,
            "messages": [{"role": "user", "content": text}],
        });
        let mut req = client.post(&url).body(body.to_string());
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        async move {
            let resp = req.send().await?;
            let status = resp.status().as_u16();
            let bytes = resp.bytes().await?;
            let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            Ok::<_, reqwest::Error>((status, json))
        }
    };
    let key = Some("sk-acme-alice");

    let (without_key, _) = send("chat", "hello", false, None).await?;
    let mut served_by = Vec::new();
    for _ in 0..8 {
        let (_, json) = send("chat", "hello", false, key).await?;
        served_by.push(json["model"].as_str().unwrap_or_default().to_owned());
    }
    let (status, json) = send("chat", "hello", true, key).await?;
    let stream = (
        status,
        json["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    );
    let (_, json) = send(
        "chat",
        "a long prompt that the long-prompts rule sends elsewhere",
        false,
        key,
    )
    .await?;
    let long_prompt_served_by = json["model"].as_str().unwrap_or_default().to_owned();
    let (unknown_model, _) = send("gpt-5", "hello", false, key).await?;

    let _ = stop.send(());
    server.await??;
    primary_mock.shutdown().await;
    secondary_mock.shutdown().await;
    Ok(Outcome {
        without_key,
        served_by,
        stream,
        long_prompt_served_by,
        unknown_model,
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let outcome = run().await?;
    println!("without a key:        {}", outcome.without_key);
    println!("served by:            {}", outcome.served_by.join(" "));
    println!(
        "stream:               {} {}",
        outcome.stream.0, outcome.stream.1
    );
    println!("long prompt served by {}", outcome.long_prompt_served_by);
    println!("unknown model:        {}", outcome.unknown_model);
    Ok(())
}
