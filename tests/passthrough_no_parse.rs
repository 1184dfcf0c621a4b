//! A 1 MiB request passed through is never parsed into a document tree.
//!
//! The gateway runs in this process (the same code the binary runs), so the process-wide parse
//! counter of `octo_core::Body` can be read. This file holds one test so nothing else parses in
//! the same process meanwhile.

use octo_core::Protocol;
use octo_core::body::full_parse_count;

#[tokio::test]
async fn one_mib_passthrough_body_is_never_parsed() {
    let mock = octo_test::mock().await;
    let text = octo_test::config(&mock.url());
    let config = octo_server::config::parse(&text, "test", &|_| None).unwrap();
    let gateway = octo_server::build(&config, "test").unwrap();
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(octo_server::run(
        gateway,
        "127.0.0.1:0".parse().unwrap(),
        move |addr| {
            let _ = addr_tx.send(addr);
        },
        async move {
            let _ = stop_rx.await;
        },
    ));
    let addr = addr_rx.await.unwrap();

    let filler = "lorem ipsum ".repeat(1024 * 1024 / 12);
    let body = octo_test::body_for(Protocol::OpenAiChat, "chat", &filler, false);
    assert!(body.len() >= 1024 * 1024);
    let before = full_parse_count();
    let resp = octo_test::client()
        .post(format!("http://{addr}/v1/chat/completions"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let _ = resp.bytes().await.unwrap();
    assert_eq!(
        full_parse_count(),
        before,
        "the gateway built a document tree"
    );

    let seen = mock.requests();
    assert_eq!(
        seen[0].body.len(),
        body.len() + "up-chat".len() - "chat".len()
    );
    stop_tx.send(()).unwrap();
    server.await.unwrap().unwrap();
}
