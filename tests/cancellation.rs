//! A client that disconnects mid-stream cancels the upstream request promptly.
//!
//! The mock paces 500 events 20 ms apart (10 s in all). The client reads the first event through
//! the gateway and drops the connection; the mock must see its stream cancelled long before it
//! would have finished. No sleeps: the mock signals the cancellation, and the timeout below is only
//! a bound on how long "promptly" may take.

use std::time::Duration;

use futures::StreamExt;
use octo_test::{Gateway, PROTOCOLS, Prompt, config, mock};

#[tokio::test]
async fn client_disconnect_mid_stream_cancels_upstream() {
    let mock = mock().await;
    let gw = Gateway::start(&config(&mock.url()));
    for (i, (protocol, model)) in PROTOCOLS.into_iter().enumerate() {
        let resp = gw
            .send(
                &Prompt::new(protocol, model, "[mock:events=500] [mock:interval_ms=20]")
                    .stream(true),
            )
            .await;
        assert_eq!(resp.status(), 200);
        let mut chunks = resp.bytes_stream();
        let first = chunks.next().await.unwrap().unwrap();
        assert!(!first.is_empty());
        drop(chunks);
        let cancelled = tokio::time::timeout(
            Duration::from_secs(3),
            mock.wait_for(|s| s.streams_cancelled > i as u64),
        )
        .await;
        assert!(
            cancelled.is_ok(),
            "{protocol}: upstream stream still running 3 s after the client left"
        );
        assert_eq!(mock.stats().streams_completed, 0, "{protocol}");
    }
}
