//! Embedding OctoLLM in your own program, without YAML: an upstream client, a middleware written as
//! a closure, and the HTTP front. The upstream here is the in-process mock, so this runs offline:
//!
//! ```sh
//! cargo run --example embed
//! ```

use std::sync::Arc;

use octo_core::http::{Router, ServeConfig, SharedRouter, serve};
use octo_core::{ArcEngine, Engine, Error, Protocol, Request, engine_fn};
use octo_engines::endpoint::{EndpointConfig, HttpEndpoint};
use octo_mock::{MockConfig, MockServer};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mock = MockServer::start("127.0.0.1:0".parse()?, MockConfig::default()).await?;

    // The terminal engine: one pooled client for one upstream.
    let upstream: ArcEngine = Arc::new(HttpEndpoint::new(
        EndpointConfig::new("mock", mock.url(), Protocol::OpenAiChat).api_key("sk-upstream"),
    )?);

    // A middleware: only one model is allowed, and it is renamed for the upstream.
    let inner = upstream.clone();
    let gateway: ArcEngine = Arc::new(engine_fn(move |mut req: Request| {
        let inner = inner.clone();
        async move {
            match req.peek()?.model.as_deref() {
                Some("my-model") => req.set_model("mock-gpt")?,
                other => {
                    return Err(
                        Error::not_found(format!("model {other:?} is not served here"))
                            .with_code("model_not_found"),
                    );
                }
            }
            inner.process(req).await
        }
    }));

    let router = Router::new()
        .engine(Protocol::OpenAiChat, gateway)
        .health_routes();
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

    let answer = reqwest::Client::new()
        .post(format!("http://{addr}/v1/chat/completions"))
        .body(r#"{"model":"my-model","messages":[{"role":"user","content":"hello"}]}"#)
        .send()
        .await?
        .text()
        .await?;
    println!("{answer}");

    let _ = stop.send(());
    server.await??;
    mock.shutdown().await;
    Ok(())
}
