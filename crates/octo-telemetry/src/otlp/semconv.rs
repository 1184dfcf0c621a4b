//! The attribute names and values the spans carry: OpenTelemetry semantic conventions v1.41 (the
//! GenAI inference span, HTTP and error attributes) and the gateway's own `octollm.*` attributes.
//!
//! Every name the exporter writes is a constant here, so following a rename of the (still
//! experimental) GenAI conventions is a change to this one file.

use octo_core::Protocol;

/// The schema the names follow (written as the scope's `schema_url`).
pub const SCHEMA_URL: &str = "https://opentelemetry.io/schemas/1.41.0";

/// The kind of GenAI operation (`chat`).
pub const GEN_AI_OPERATION_NAME: &str = "gen_ai.operation.name";
/// Who serves the model, as far as the gateway knows from the upstream's protocol.
pub const GEN_AI_PROVIDER_NAME: &str = "gen_ai.provider.name";
/// The model asked for.
pub const GEN_AI_REQUEST_MODEL: &str = "gen_ai.request.model";
/// The model that answered (the name sent upstream).
pub const GEN_AI_RESPONSE_MODEL: &str = "gen_ai.response.model";
/// `true` when the client asked for a stream (set only then).
pub const GEN_AI_REQUEST_STREAM: &str = "gen_ai.request.stream";
/// Seconds from the request to the first chunk of a stream.
pub const GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: &str = "gen_ai.response.time_to_first_chunk";
/// Why generation stopped (a string array).
pub const GEN_AI_RESPONSE_FINISH_REASONS: &str = "gen_ai.response.finish_reasons";
/// All input tokens, cache reads and cache writes included.
pub const GEN_AI_USAGE_INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
/// All output tokens, reasoning included.
pub const GEN_AI_USAGE_OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";
/// Input tokens read from a prompt cache.
pub const GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: &str = "gen_ai.usage.cache_read.input_tokens";
/// Input tokens written to a prompt cache.
pub const GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: &str =
    "gen_ai.usage.cache_creation.input_tokens";
/// The part of the output spent on reasoning.
pub const GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: &str = "gen_ai.usage.reasoning.output_tokens";
/// A low-cardinality error class: here the HTTP status as a string (`502`), or
/// [`ERROR_TYPE_OTHER`].
pub const ERROR_TYPE: &str = "error.type";
/// The HTTP status of the answer.
pub const HTTP_RESPONSE_STATUS_CODE: &str = "http.response.status_code";

/// `gen_ai.operation.name` for chat completions, messages and generate-content calls.
pub const OPERATION_CHAT: &str = "chat";
/// `gen_ai.operation.name` for embeddings.
pub const OPERATION_EMBEDDINGS: &str = "embeddings";
/// `gen_ai.provider.name` for the OpenAI protocols.
pub const PROVIDER_OPENAI: &str = "openai";
/// `gen_ai.provider.name` for the Anthropic protocol.
pub const PROVIDER_ANTHROPIC: &str = "anthropic";
/// `gen_ai.provider.name` for the Gemini protocol (AI Studio).
pub const PROVIDER_GCP_GEMINI: &str = "gcp.gemini";
/// `error.type` when no status says what failed.
pub const ERROR_TYPE_OTHER: &str = "_OTHER";

/// Resource: the service's name.
pub const SERVICE_NAME: &str = "service.name";
/// Resource: the service's version.
pub const SERVICE_VERSION: &str = "service.version";

/// The gateway's request id (`x-octollm-request-id`).
pub const OCTOLLM_REQUEST_ID: &str = "octollm.request.id";
/// The protocol the client spoke (`openai_chat`, …).
pub const OCTOLLM_CLIENT_PROTOCOL: &str = "octollm.client_protocol";
/// The backend's configured name.
pub const OCTOLLM_BACKEND: &str = "octollm.backend";
/// The name of the backend key used (never the key).
pub const OCTOLLM_KEY: &str = "octollm.key";
/// The caller's org.
pub const OCTOLLM_ORG: &str = "octollm.org";
/// The name of the caller's gateway key within its org (never the key).
pub const OCTOLLM_USER: &str = "octollm.user";
/// The routing rule that matched.
pub const OCTOLLM_RULE: &str = "octollm.rule";
/// The request's cost in US dollars, when priced.
pub const OCTOLLM_COST_USD: &str = "octollm.cost_usd";
/// `true` when the answer came from the response cache.
pub const OCTOLLM_CACHE_HIT: &str = "octollm.cache_hit";
/// The gateway's own time for the request, microseconds.
pub const OCTOLLM_OVERHEAD_US: &str = "octollm.overhead_us";
/// Why an attempt was skipped or failed.
pub const OCTOLLM_REASON: &str = "octollm.reason";
/// The event on a request span for an attempt the gateway skipped (breaker open, no key).
pub const EVENT_ATTEMPT_SKIPPED: &str = "octollm.attempt.skipped";

/// `gen_ai.provider.name` for an upstream spoken to in `protocol`.
pub fn provider_name(protocol: Protocol) -> Option<&'static str> {
    match protocol {
        Protocol::OpenAiChat | Protocol::OpenAiResponses | Protocol::OpenAiEmbeddings => {
            Some(PROVIDER_OPENAI)
        }
        Protocol::Anthropic => Some(PROVIDER_ANTHROPIC),
        Protocol::Gemini | Protocol::GeminiEmbeddings => Some(PROVIDER_GCP_GEMINI),
        _ => None,
    }
}

/// `gen_ai.operation.name` for a client speaking `protocol`.
pub fn operation_name(protocol: Protocol) -> &'static str {
    if protocol.is_embeddings() {
        OPERATION_EMBEDDINGS
    } else {
        OPERATION_CHAT
    }
}
