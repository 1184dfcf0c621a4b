//! One codec per protocol behind one trait, and the one place that picks it.
//!
//! A [`Codec`] reads and writes one protocol on both sides of the gateway: requests (decoded when
//! the client speaks it, encoded when the upstream does), complete responses and streams. No code
//! is specific to a pair of protocols; a conversion is always "decode with the source's codec,
//! encode with the target's". [`codec`] is the only `match` on [`Protocol`] in the crate: a
//! protocol that is not one of the four chat protocols is an explicit error.

use std::sync::Arc;

use octo_core::{Error, Protocol, RouteParams};
use serde_json::Value;

use crate::canonical::{CanonicalRequest, CanonicalResponse};
use crate::options::ConvertOptions;
use crate::stream::{Decoder, Encoder};
use crate::tools::ToolMap;
use crate::{anthropic, gemini, openai_chat, openai_responses};

/// What a client-side encoder needs to know about the request it answers.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClientSide {
    /// The model the client asked for (used when the upstream names none).
    pub(crate) model: String,
    /// Whether usage goes into the client's stream.
    pub(crate) include_usage: bool,
    /// How the client declared its non-function tools.
    pub(crate) tools: Arc<ToolMap>,
}

/// One protocol's decoders and encoders; see the [module docs](self).
pub(crate) trait Codec: Sync {
    /// Reads a client request into `r`, which [`crate::request`] has already filled with what every
    /// protocol reads the same way (`model`, `stream`, usage in streams).
    fn decode_request(
        &self,
        body: &Value,
        route: &RouteParams,
        r: CanonicalRequest,
    ) -> Result<CanonicalRequest, Error>;

    /// Writes the request body sent to an upstream of this protocol.
    fn encode_request(
        &self,
        r: &CanonicalRequest,
        options: &ConvertOptions,
    ) -> Result<Value, Error>;

    /// [`Codec::encode_request`]'s body as the bytes sent. A codec that writes them without
    /// building the document (for the requests it can) overrides this; the bytes must be the same.
    fn encode_request_bytes(
        &self,
        r: &CanonicalRequest,
        options: &ConvertOptions,
    ) -> Result<Vec<u8>, Error> {
        Ok(serde_json::to_vec(&self.encode_request(r, options)?).unwrap_or_default())
    }

    /// The route of a request sent to an upstream of this protocol: empty, except for protocols
    /// whose path carries request fields (Gemini: the model and the streaming flag).
    fn upstream_route(&self, r: &CanonicalRequest) -> RouteParams {
        let _ = r;
        RouteParams::default()
    }

    /// Reads an upstream's complete answer.
    fn decode_response(&self, body: &Value) -> Result<CanonicalResponse, Error>;

    /// Reads an upstream's complete answer straight from its bytes, when this codec has a fast
    /// path for the answer's shape; `None` otherwise (the caller then parses the document and
    /// calls [`Codec::decode_response`]). When it answers, it answers what
    /// [`Codec::decode_response`] answers for the parsed bytes.
    fn decode_response_bytes(&self, body: &[u8]) -> Option<CanonicalResponse> {
        let _ = body;
        None
    }

    /// Writes the complete answer for a client of this protocol.
    fn encode_response(&self, r: &CanonicalResponse, client: &ClientSide) -> Value;

    /// [`Codec::encode_response`]'s document as bytes (what the client receives). A codec that
    /// writes them without building the document overrides this; the bytes must be the same.
    fn encode_response_bytes(&self, r: &CanonicalResponse, client: &ClientSide) -> Vec<u8> {
        serde_json::to_vec(&self.encode_response(r, client)).unwrap_or_default()
    }

    /// A decoder for an upstream stream in this protocol.
    fn stream_decoder(&self) -> Box<dyn Decoder>;

    /// An encoder of the stream for a client of this protocol.
    fn stream_encoder(&self, client: &ClientSide) -> Box<dyn Encoder>;
}

/// The codec of `protocol`; an `unsupported` error for a protocol that is not a chat protocol.
pub(crate) fn codec(protocol: Protocol) -> Result<&'static dyn Codec, Error> {
    match protocol {
        Protocol::OpenAiChat => Ok(&openai_chat::OpenAiChat),
        Protocol::OpenAiResponses => Ok(&openai_responses::OpenAiResponses),
        Protocol::Anthropic => Ok(&anthropic::Anthropic),
        Protocol::Gemini => Ok(&gemini::Gemini),
        other => Err(Error::unsupported(format!("{other} cannot be converted"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_chat_protocols_have_a_codec() {
        for p in Protocol::CHAT_PROTOCOLS {
            assert!(codec(p).is_ok(), "{p}");
        }
        let e = codec(Protocol::ModelList).err().expect("no codec");
        assert!(
            e.message().contains("cannot be converted"),
            "{}",
            e.message()
        );
    }
}
