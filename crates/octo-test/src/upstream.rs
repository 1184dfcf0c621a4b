//! Upstreams for tests: the mock LLM upstream and an in-process server for any engine, each on an
//! ephemeral loopback port and stopped when dropped.

use std::net::TcpListener;

use octo_core::ArcEngine;
use octo_core::http::{Router, ServeConfig, SharedRouter, serve};
use octo_mock::{MockConfig, MockServer};

/// Starts the mock upstream on an ephemeral loopback port with zero delays.
///
/// ```no_run
/// # async fn demo() {
/// let mock = octo_test::mock().await;
/// println!("mock upstream at {}", mock.url());
/// # }
/// ```
pub async fn mock() -> MockServer {
    mock_with(MockConfig::default()).await
}

/// Starts the mock upstream on an ephemeral loopback port with `config`.
pub async fn mock_with(config: MockConfig) -> MockServer {
    MockServer::start("127.0.0.1:0".parse().unwrap(), config)
        .await
        .expect("start the mock upstream")
}

/// A loopback URL where nothing listens (the port was just released).
pub fn closed_port_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

/// An in-process upstream serving one engine on every chat protocol's route, on an ephemeral port;
/// stops when dropped.
pub struct Upstream {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Upstream {
    /// Serves `engine`; must be called inside a Tokio runtime.
    pub async fn start(engine: ArcEngine) -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let mut router = Router::new();
        for protocol in octo_core::Protocol::CHAT_PROTOCOLS {
            router = router.engine(protocol, engine.clone());
        }
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(
            listener,
            SharedRouter::new(router),
            ServeConfig::default(),
            async {
                let _ = stopped.await;
            },
        ));
        Upstream {
            url,
            stop: Some(stop),
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
