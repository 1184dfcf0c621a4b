//! Embeddings conversion never panics: the first byte picks the direction (OpenAI client → Gemini
//! upstream or the reverse) and whether the rest is the client's request or the upstream's answer
//! to a fixed request of that direction.
#![no_main]

use libfuzzer_sys::fuzz_target;
use octo_convert::embeddings::{convert_embeddings_request, merge_gemini_answers};
use octo_core::{Body, Protocol};
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let (client, upstream) = if selector & 1 == 0 {
        (Protocol::OpenAiEmbeddings, Protocol::GeminiEmbeddings)
    } else {
        (Protocol::GeminiEmbeddings, Protocol::OpenAiEmbeddings)
    };
    let mut body = Body::from_bytes(rest.to_vec());
    let Ok(json) = body.json() else {
        return;
    };
    if selector & 2 == 0 {
        if let Ok(conv) = convert_embeddings_request(client, upstream, json, "m") {
            let _ = conv.upstream_bodies();
            let _ = conv.answer.convert(json);
        }
    } else {
        let request = match client {
            Protocol::OpenAiEmbeddings => json!({"model": "m", "input": ["a", "b"], "encoding_format": "base64"}),
            _ => json!({"requests": [{"content": {"parts": [{"text": "a"}]}}]}),
        };
        if let Ok(conv) = convert_embeddings_request(client, upstream, &request, "m") {
            let _ = conv.answer.convert(&merge_gemini_answers(vec![json.clone()]));
        }
    }
});
