//! A minimal valid request for each protocol: one user turn of text, for a model, streaming or
//! not. [`Prompt`] gives it as the path and body a client sends over HTTP, or as the
//! [`Request`] an engine receives.

use bytes::Bytes;
use octo_core::{Body, Protocol, Request, RouteParams};

/// A one-turn request in one protocol, built step by step.
///
/// ```
/// use octo_core::Protocol;
/// use octo_test::Prompt;
///
/// let prompt = Prompt::new(Protocol::Anthropic, "claude", "hi").stream(true);
/// assert_eq!(prompt.path(), "/v1/messages");
/// assert_eq!(
///     prompt.body(),
///     r#"{"model":"claude","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#
/// );
/// ```
#[derive(Debug, Clone)]
pub struct Prompt {
    protocol: Protocol,
    model: String,
    text: String,
    stream: bool,
    max_tokens: u32,
    include_usage: bool,
}

impl Prompt {
    /// A non-streaming request of `protocol` for `model` whose one user turn is `text`.
    pub fn new(protocol: Protocol, model: impl Into<String>, text: impl Into<String>) -> Self {
        Prompt {
            protocol,
            model: model.into(),
            text: text.into(),
            stream: false,
            max_tokens: 64,
            include_usage: false,
        }
    }

    /// Asks for a stream (`"stream": true`, or Gemini's `streamGenerateContent` path).
    pub fn stream(mut self, stream: bool) -> Self {
        self.stream = stream;
        self
    }

    /// Anthropic's `max_tokens` (64 unless set; the other protocols leave it out).
    pub fn max_tokens(mut self, max_tokens: u32) -> Self {
        self.max_tokens = max_tokens;
        self
    }

    /// OpenAI Chat's `stream_options: {include_usage: true}` on a streaming request.
    pub fn include_usage(mut self) -> Self {
        self.include_usage = true;
        self
    }

    /// Where the request goes on the gateway (Gemini's path names the model).
    pub fn path(&self) -> String {
        path_for(self.protocol, &self.model, self.stream)
    }

    /// The JSON body, with fields in the order the protocol's documentation shows them.
    pub fn body(&self) -> String {
        let Prompt {
            model,
            stream,
            max_tokens,
            ..
        } = self;
        let text = serde_json::to_string(&self.text).unwrap();
        let model = serde_json::to_string(model).unwrap();
        match self.protocol {
            Protocol::OpenAiChat => {
                let usage = if self.include_usage && *stream {
                    r#","stream_options":{"include_usage":true}"#
                } else {
                    ""
                };
                format!(
                    r#"{{"model":{model},"stream":{stream}{usage},"messages":[{{"role":"user","content":{text}}}]}}"#
                )
            }
            Protocol::OpenAiResponses => {
                format!(r#"{{"model":{model},"stream":{stream},"input":{text}}}"#)
            }
            Protocol::Anthropic => format!(
                r#"{{"model":{model},"max_tokens":{max_tokens},"stream":{stream},"messages":[{{"role":"user","content":{text}}}]}}"#
            ),
            _ => format!(r#"{{"contents":[{{"role":"user","parts":[{{"text":{text}}}]}}]}}"#),
        }
    }

    /// The request as the gateway's front hands it to the engines: the protocol's path and this
    /// body, with the model and stream flag of a Gemini path in [`Request::route`].
    pub fn request(&self) -> Request {
        request_with_body(self.protocol, &self.model, self.stream, self.body())
    }
}

/// Where requests of `protocol` go on the gateway, for `model` (named in Gemini's path only).
pub fn path_for(protocol: Protocol, model: &str, stream: bool) -> String {
    match protocol {
        Protocol::OpenAiChat => "/v1/chat/completions".into(),
        Protocol::OpenAiResponses => "/v1/responses".into(),
        Protocol::Anthropic => "/v1/messages".into(),
        _ if stream => format!("/v1beta/models/{model}:streamGenerateContent?alt=sse"),
        _ => format!("/v1beta/models/{model}:generateContent"),
    }
}

/// The body of [`Prompt::new`]`(protocol, model, text).stream(stream)`.
pub fn body_for(protocol: Protocol, model: &str, text: &str, stream: bool) -> String {
    Prompt::new(protocol, model, text).stream(stream).body()
}

/// A request of `protocol` for `model` with the given body, as the front hands it to the engines:
/// the protocol's path, and for Gemini the model and stream flag of the path in
/// [`Request::route`].
///
/// ```
/// use octo_core::Protocol;
///
/// let req = octo_test::request_with_body(Protocol::OpenAiChat, "m", false, "{}");
/// assert_eq!(req.uri.path(), "/v1/chat/completions");
/// ```
pub fn request_with_body(
    protocol: Protocol,
    model: &str,
    stream: bool,
    body: impl Into<Bytes>,
) -> Request {
    let mut req = Request::post(
        protocol,
        &path_for(protocol, model, stream),
        Body::from_bytes(body),
    );
    if protocol == Protocol::Gemini {
        req.route = RouteParams {
            model: Some(model.to_owned()),
            stream: Some(stream),
        };
    }
    req
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_json_with_the_text_escaped() {
        for protocol in Protocol::CHAT_PROTOCOLS {
            for stream in [false, true] {
                let body = Prompt::new(protocol, "m", "say \"hi\"\n")
                    .stream(stream)
                    .include_usage()
                    .body();
                let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                assert!(body.contains(r#""say \"hi\"\n""#), "{body}");
                if protocol != Protocol::Gemini {
                    assert_eq!(v["model"], "m", "{body}");
                    assert_eq!(v["stream"], stream, "{body}");
                }
            }
        }
    }

    #[test]
    fn include_usage_applies_to_streaming_chat_only() {
        let chat = Prompt::new(Protocol::OpenAiChat, "m", "x").include_usage();
        assert!(!chat.body().contains("stream_options"));
        assert!(chat.stream(true).body().contains("stream_options"));
    }

    #[test]
    fn gemini_requests_carry_the_paths_model_and_stream_flag() {
        let req = Prompt::new(Protocol::Gemini, "g", "x")
            .stream(true)
            .request();
        assert_eq!(req.route.model.as_deref(), Some("g"));
        assert_eq!(req.route.stream, Some(true));
        assert_eq!(req.uri.path(), "/v1beta/models/g:streamGenerateContent");
    }
}
