//! Your own observer of finished requests: a token and cost counter per model, fed by the
//! gateway's request records (`octo_core::record`). The upstream is the in-process mock, so this
//! runs offline:
//!
//! ```sh
//! cargo run --example observer
//! ```
//!
//! An observer is called once per request, on the task that completes it: it must only do cheap
//! in-memory work (as here) or hand the record to a bounded queue, never block.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use octo_core::http::{Router, ServeConfig, SharedRouter, serve};
use octo_core::record::{Observer, Price, Record};
use octo_core::{ArcEngine, Protocol};
use octo_engines::endpoint::{EndpointConfig, HttpEndpoint};
use octo_mock::{MockConfig, MockServer};

/// Requests, tokens and cost per model.
#[derive(Default)]
pub(crate) struct PerModel(Mutex<BTreeMap<String, (u64, u64, f64)>>);

impl Observer for PerModel {
    fn on_complete(&self, record: &Arc<Record>) {
        let model = record.model.clone().unwrap_or_default();
        let tokens = record.usage.map_or(0, |u| u.total_tokens());
        let mut totals = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let entry = totals.entry(model).or_default();
        entry.0 += 1;
        entry.1 += tokens;
        entry.2 += record.cost_usd.unwrap_or(0.0);
    }
}

impl PerModel {
    /// `(model, requests, tokens, cost)` so far.
    pub(crate) fn totals(&self) -> Vec<(String, u64, u64, f64)> {
        let totals = self.0.lock().unwrap_or_else(|e| e.into_inner());
        totals
            .iter()
            .map(|(m, (n, t, c))| (m.clone(), *n, *t, *c))
            .collect()
    }
}

/// Serves three requests through a gateway observed by [`PerModel`] and returns its totals.
pub(crate) async fn run() -> Result<Vec<(String, u64, u64, f64)>, Box<dyn std::error::Error>> {
    let mock = MockServer::start("127.0.0.1:0".parse()?, MockConfig::default()).await?;
    let upstream: ArcEngine = Arc::new(HttpEndpoint::new(EndpointConfig::new(
        "mock",
        mock.url(),
        Protocol::OpenAiChat,
    ))?);
    let per_model = Arc::new(PerModel::default());
    // A flat price for every model: $1 per million input tokens, $2 per million output tokens.
    let price = Price {
        input: 1.0,
        output: 2.0,
        source: "example".into(),
        ..Price::default()
    };
    let router = Router::new()
        .engine(Protocol::OpenAiChat, upstream)
        .pricing(Arc::new(move |r: &Record| {
            r.usage.map(|u| (price.cost(&u), price.clone()))
        }))
        .observe(per_model.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
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
    for model in ["gpt-a", "gpt-a", "gpt-b"] {
        let resp = client
            .post(format!("http://{addr}/v1/chat/completions"))
            .body(format!(
                r#"{{"model":"{model}","messages":[{{"role":"user","content":"hello"}}]}}"#
            ))
            .send()
            .await?;
        // The record completes when the answer is complete: read it all.
        resp.bytes().await?;
    }
    let _ = stop.send(());
    server.await??;
    mock.shutdown().await;
    Ok(per_model.totals())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    for (model, requests, tokens, cost) in run().await? {
        println!("{model}: {requests} requests, {tokens} tokens, ${cost:.6}");
    }
    Ok(())
}
