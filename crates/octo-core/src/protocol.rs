//! The wire protocol a request or response speaks.
//!
//! Every request entering the gateway is tagged with the [`Protocol`] of the route it arrived on, so
//! engines know how to read its body, how to address an upstream and how to render an error the client
//! will understand, without sniffing the JSON.

use std::fmt;
use std::str::FromStr;

/// An LLM API protocol, as spoken by a client or an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Protocol {
    /// OpenAI Chat Completions (`POST /v1/chat/completions`).
    OpenAiChat,
    /// OpenAI Responses (`POST /v1/responses`).
    OpenAiResponses,
    /// Anthropic Messages (`POST /v1/messages`).
    Anthropic,
    /// Google Gemini `generateContent` / `streamGenerateContent`.
    Gemini,
    /// A model listing (`GET /v1/models`).
    ModelList,
    /// OpenAI embeddings (`POST /v1/embeddings`).
    OpenAiEmbeddings,
    /// Gemini embeddings (`models/{model}:embedContent` and `:batchEmbedContents`).
    GeminiEmbeddings,
}

impl Protocol {
    /// The four chat protocols the gateway converts between.
    pub const CHAT_PROTOCOLS: [Protocol; 4] = [
        Protocol::OpenAiChat,
        Protocol::OpenAiResponses,
        Protocol::Anthropic,
        Protocol::Gemini,
    ];

    /// Whether this is one of the four chat protocols ([`Protocol::CHAT_PROTOCOLS`]).
    pub const fn is_chat(self) -> bool {
        matches!(
            self,
            Protocol::OpenAiChat
                | Protocol::OpenAiResponses
                | Protocol::Anthropic
                | Protocol::Gemini
        )
    }

    /// Whether this is one of the two embeddings protocols.
    pub const fn is_embeddings(self) -> bool {
        matches!(
            self,
            Protocol::OpenAiEmbeddings | Protocol::GeminiEmbeddings
        )
    }

    /// The embeddings protocol of the provider API this protocol belongs to: OpenAI's chat
    /// protocols come with `POST /v1/embeddings`, Gemini's `generateContent` with `embedContent`;
    /// Anthropic has no embeddings API (`None`).
    ///
    /// ```
    /// use octo_core::Protocol;
    /// assert_eq!(Protocol::OpenAiResponses.embeddings(), Some(Protocol::OpenAiEmbeddings));
    /// assert_eq!(Protocol::Gemini.embeddings(), Some(Protocol::GeminiEmbeddings));
    /// assert_eq!(Protocol::Anthropic.embeddings(), None);
    /// ```
    pub const fn embeddings(self) -> Option<Protocol> {
        match self {
            Protocol::OpenAiChat | Protocol::OpenAiResponses | Protocol::OpenAiEmbeddings => {
                Some(Protocol::OpenAiEmbeddings)
            }
            Protocol::Gemini | Protocol::GeminiEmbeddings => Some(Protocol::GeminiEmbeddings),
            Protocol::Anthropic | Protocol::ModelList => None,
        }
    }

    /// The name used in configuration files (`openai_chat`, `openai_responses`, `anthropic`, `gemini`, …).
    pub const fn config_name(self) -> &'static str {
        match self {
            Protocol::OpenAiChat => "openai_chat",
            Protocol::OpenAiResponses => "openai_responses",
            Protocol::Anthropic => "anthropic",
            Protocol::Gemini => "gemini",
            Protocol::ModelList => "model_list",
            Protocol::OpenAiEmbeddings => "openai_embeddings",
            Protocol::GeminiEmbeddings => "gemini_embeddings",
        }
    }

    /// The family used to shape errors: every OpenAI format shares one error body.
    pub const fn error_family(self) -> ErrorFamily {
        match self {
            Protocol::Anthropic => ErrorFamily::Anthropic,
            Protocol::Gemini | Protocol::GeminiEmbeddings => ErrorFamily::Gemini,
            _ => ErrorFamily::OpenAi,
        }
    }
}

/// `openai_chat, anthropic`: the config names of `formats`, for messages.
pub fn protocol_list(formats: &[Protocol]) -> String {
    formats
        .iter()
        .map(|f| f.config_name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The three error-body conventions of the supported protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorFamily {
    /// `{"error":{"message","type","param","code"}}`.
    OpenAi,
    /// `{"type":"error","error":{"type","message"}}`.
    Anthropic,
    /// `{"error":{"code","message","status"}}`.
    Gemini,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.config_name())
    }
}

/// The error returned when a protocol name is not known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownProtocol(pub String);

impl fmt::Display for UnknownProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown protocol `{}`; expected one of openai_chat, openai_responses, anthropic, gemini, openai_embeddings, gemini_embeddings",
            self.0
        )
    }
}

impl std::error::Error for UnknownProtocol {}

impl FromStr for Protocol {
    type Err = UnknownProtocol;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "openai_chat" => Protocol::OpenAiChat,
            "openai_responses" => Protocol::OpenAiResponses,
            "anthropic" => Protocol::Anthropic,
            "gemini" => Protocol::Gemini,
            "openai_embeddings" => Protocol::OpenAiEmbeddings,
            "gemini_embeddings" => Protocol::GeminiEmbeddings,
            other => return Err(UnknownProtocol(other.to_owned())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names_round_trip() {
        for f in Protocol::CHAT_PROTOCOLS {
            assert_eq!(f.config_name().parse::<Protocol>().unwrap(), f);
        }
        for f in [Protocol::OpenAiEmbeddings, Protocol::GeminiEmbeddings] {
            assert_eq!(f.config_name().parse::<Protocol>().unwrap(), f);
            assert!(f.is_embeddings() && !f.is_chat());
        }
        assert!("openai".parse::<Protocol>().is_err());
    }
}
