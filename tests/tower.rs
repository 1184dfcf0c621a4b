//! Engines under real tower middleware and back: `EngineService` → tower layers → `ServiceEngine`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use octo_core::tower::{EngineService, ServiceEngine};
use octo_core::{
    ArcEngine, Body, Engine, Error, ErrorKind, Protocol, Request, Response, engine_fn,
};
use tower::ServiceBuilder;

fn req() -> Request {
    Request::post(
        Protocol::OpenAiChat,
        "/v1/chat/completions",
        Body::from_static(br#"{"model":"m"}"#),
    )
}

/// An engine that counts requests in flight and remembers the most it saw at once; each request
/// yields to the scheduler a few times so concurrent requests overlap.
fn counting() -> (ArcEngine, Arc<AtomicUsize>) {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let p = peak.clone();
    let engine: ArcEngine = Arc::new(engine_fn(move |_req: Request| {
        let (in_flight, peak) = (in_flight.clone(), p.clone());
        async move {
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            for _ in 0..8 {
                tokio::task::yield_now().await;
            }
            in_flight.fetch_sub(1, Ordering::SeqCst);
            Ok(Response::json(200, Body::from_static(b"{}")))
        }
    }));
    (engine, peak)
}

async fn run_concurrently(engine: &dyn Engine, n: usize) {
    let results = futures::future::join_all((0..n).map(|_| engine.process(req()))).await;
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().is_ok_and(|r| r.status == 200))
    );
}

#[tokio::test]
async fn tower_concurrency_limit_bounds_an_engine() {
    // Without the middleware the requests overlap...
    let (engine, peak) = counting();
    run_concurrently(&ServiceEngine::new(EngineService::new(engine)), 4).await;
    assert!(peak.load(Ordering::SeqCst) > 1);

    // ...and through tower's ConcurrencyLimit they run one at a time.
    let (engine, peak) = counting();
    let limited = ServiceBuilder::new()
        .concurrency_limit(1)
        .service(EngineService::new(engine));
    run_concurrently(&ServiceEngine::new(limited), 4).await;
    assert_eq!(peak.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn tower_timeout_errors_become_engine_errors() {
    let hang: ArcEngine = Arc::new(engine_fn(|_req: Request| async {
        std::future::pending::<Result<Response, Error>>().await
    }));
    // Unmapped, tower's `Elapsed` is a 500 naming it.
    let plain = ServiceEngine::new(
        ServiceBuilder::new()
            .timeout(Duration::from_secs(5))
            .service(EngineService::new(hang.clone())),
    );
    let e = plain.process(req()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Internal);
    assert!(e.message().contains("timed out"), "{}", e.message());

    // Mapped with tower's `map_err`, it is the error the client should see.
    let mapped = ServiceEngine::new(
        ServiceBuilder::new()
            .map_err(|e: tower::BoxError| match e.downcast::<Error>() {
                Ok(e) => *e,
                Err(e) => Error::timeout(format!("gave up: {e}")),
            })
            .timeout(Duration::from_secs(5))
            .service(EngineService::new(hang)),
    );
    let e = mapped.process(req()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    assert!(e.is_retryable());

    // Engine errors pass through the middleware unchanged.
    let refuse: ArcEngine = Arc::new(engine_fn(|_req: Request| async {
        Err(Error::forbidden("no"))
    }));
    let e = ServiceEngine::new(
        ServiceBuilder::new()
            .timeout(Duration::from_secs(5))
            .service(EngineService::new(refuse)),
    )
    .process(req())
    .await
    .unwrap_err();
    assert_eq!(e.status(), 403);
}
