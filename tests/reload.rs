//! Config reload: SIGHUP and file changes swap in a new engine graph atomically; an invalid file
//! is refused and the old config stays; requests in flight finish on the graph they started on.
//!
//! The gateway reports each reload outcome as one stdout line, which these tests wait for (no
//! sleeps).

use futures::StreamExt;
use octo_core::Protocol;
use octo_test::{Gateway, Prompt, config, mock};

async fn status_of(gw: &Gateway, model: &str) -> u16 {
    gw.send(&Prompt::new(Protocol::OpenAiChat, model, "hi"))
        .await
        .status()
        .as_u16()
}

fn with_extra_model(base: &str) -> String {
    base.replace(
        "models:\n",
        "models:\n  added: {targets: [{backend: oa, model: up-added}]}\n",
    )
}

#[tokio::test]
async fn sighup_swaps_in_the_new_config_and_refuses_a_bad_one() {
    let mock = mock().await;
    let base = config(&mock.url());
    let mut gw = Gateway::start_with(&base, &["--watch-interval", "0"]);
    assert_eq!(status_of(&gw, "added").await, 404);

    std::fs::write(&gw.config_path, with_extra_model(&base)).unwrap();
    gw.signal("-HUP");
    let line = gw.next_line();
    assert!(
        line.contains("reloaded") && line.contains("generation 2") && line.contains("SIGHUP"),
        "{line}"
    );
    assert_eq!(status_of(&gw, "added").await, 200);

    std::fs::write(
        &gw.config_path,
        base.replace("backend: oa, model: up-chat", "backend: nope"),
    )
    .unwrap();
    gw.signal("-HUP");
    let line = gw.next_line();
    assert!(line.contains("kept the previous config"), "{line}");
    assert!(line.contains("models.chat.targets[0].backend"), "{line}");
    assert_eq!(
        status_of(&gw, "added").await,
        200,
        "the previous config stays in force"
    );
    assert_eq!(status_of(&gw, "chat").await, 200);
}

#[tokio::test]
async fn a_changed_file_is_picked_up() {
    let mock = mock().await;
    let base = config(&mock.url());
    let mut gw = Gateway::start_with(&base, &["--watch-interval", "50ms"]);
    std::fs::write(&gw.config_path, with_extra_model(&base)).unwrap();
    let line = gw.next_line();
    assert!(
        line.contains("reloaded") && line.contains("file change"),
        "{line}"
    );
    assert_eq!(status_of(&gw, "added").await, 200);
}

#[tokio::test]
async fn in_flight_streams_finish_on_the_old_graph() {
    let mock = mock().await;
    let base = config(&mock.url());
    let mut gw = Gateway::start_with(&base, &["--watch-interval", "0"]);
    let resp = gw
        .send(
            &Prompt::new(
                Protocol::OpenAiChat,
                "chat",
                "[mock:events=30] [mock:interval_ms=10]",
            )
            .stream(true),
        )
        .await;
    let mut chunks = resp.bytes_stream();
    let mut text = String::from_utf8(chunks.next().await.unwrap().unwrap().to_vec()).unwrap();

    // Remove the model while its stream is running.
    let without_chat = base.replace("  chat: {targets: [{backend: oa, model: up-chat}]}\n", "");
    assert_ne!(without_chat, base);
    std::fs::write(&gw.config_path, without_chat).unwrap();
    gw.signal("-HUP");
    assert!(gw.next_line().contains("reloaded"));
    assert_eq!(
        status_of(&gw, "chat").await,
        404,
        "new requests see the new config"
    );

    while let Some(chunk) = chunks.next().await {
        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
}
