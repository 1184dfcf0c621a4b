//! The wire protocol a request or response speaks.
//!
//! Every request entering the gateway is tagged with the [`ApiFormat`] of the route it arrived on, so
//! engines know how to read its body, how to address an upstream and how to render an error the client
//! will understand, without sniffing the JSON.

use std::fmt;
use std::str::FromStr;

/// An LLM API protocol, as spoken by a client or an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ApiFormat {
    /// OpenAI Chat Completions (`POST /v1/chat/completions`).
    ChatCompletions,
    /// OpenAI Responses (`POST /v1/responses`).
    Responses,
    /// Anthropic Messages (`POST /v1/messages`).
    Messages,
    /// Google Gemini `generateContent` / `streamGenerateContent`.
    GenerateContent,
    /// OpenAI Embeddings (`POST /v1/embeddings`); routed, not yet converted.
    Embeddings,
    /// A model listing (`GET /v1/models`).
    ModelList,
}

impl ApiFormat {
    /// The four chat protocols the gateway converts between.
    pub const CHAT_PROTOCOLS: [ApiFormat; 4] = [
        ApiFormat::ChatCompletions,
        ApiFormat::Responses,
        ApiFormat::Messages,
        ApiFormat::GenerateContent,
    ];

    /// The name used in configuration files (`openai_chat`, `openai_responses`, `anthropic`, `gemini`, …).
    pub const fn config_name(self) -> &'static str {
        match self {
            ApiFormat::ChatCompletions => "openai_chat",
            ApiFormat::Responses => "openai_responses",
            ApiFormat::Messages => "anthropic",
            ApiFormat::GenerateContent => "gemini",
            ApiFormat::Embeddings => "openai_embeddings",
            ApiFormat::ModelList => "model_list",
        }
    }

    /// The family used to shape errors: every OpenAI format shares one error body.
    pub const fn error_family(self) -> ErrorFamily {
        match self {
            ApiFormat::Messages => ErrorFamily::Anthropic,
            ApiFormat::GenerateContent => ErrorFamily::Gemini,
            _ => ErrorFamily::OpenAi,
        }
    }
}

/// `openai_chat, anthropic`: the config names of `formats`, for messages.
pub fn format_list(formats: &[ApiFormat]) -> String {
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

impl fmt::Display for ApiFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.config_name())
    }
}

/// The error returned when a protocol name is not known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownFormat(pub String);

impl fmt::Display for UnknownFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown protocol `{}`; expected one of openai_chat, openai_responses, anthropic, gemini",
            self.0
        )
    }
}

impl std::error::Error for UnknownFormat {}

impl FromStr for ApiFormat {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "openai_chat" => ApiFormat::ChatCompletions,
            "openai_responses" => ApiFormat::Responses,
            "anthropic" => ApiFormat::Messages,
            "gemini" => ApiFormat::GenerateContent,
            "openai_embeddings" => ApiFormat::Embeddings,
            other => return Err(UnknownFormat(other.to_owned())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names_round_trip() {
        for f in ApiFormat::CHAT_PROTOCOLS {
            assert_eq!(f.config_name().parse::<ApiFormat>().unwrap(), f);
        }
        assert!("openai".parse::<ApiFormat>().is_err());
    }
}
