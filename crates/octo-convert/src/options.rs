//! The settings of a conversion: what the converter fills in or leaves out where the protocols differ.

/// The default `max_tokens` sent to an Anthropic upstream when the client set no limit.
///
/// 4096 is the largest output every Claude model accepts (older ones refuse more); set
/// [`ConvertOptions::default_max_tokens`] higher for models that allow it.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// Which field carries the output-token limit toward an OpenAI Chat upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OpenAiMaxTokens {
    /// `max_completion_tokens`: what OpenAI's current models require (o-series and gpt-5 refuse
    /// `max_tokens`). The default.
    #[default]
    MaxCompletionTokens,
    /// The deprecated `max_tokens`, for OpenAI-compatible servers that only know it.
    MaxTokens,
}

/// What happens to the client's reasoning controls on a converted request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ReasoningMode {
    /// Map them to the upstream's own controls (`reasoning_effort`, `thinking`, `reasoning`,
    /// `thinkingConfig`). The default.
    #[default]
    Pass,
    /// Send none, for upstream models that refuse them (OpenAI's non-reasoning models answer 400
    /// to `reasoning_effort`, which is what Claude Code's adaptive thinking becomes toward Chat).
    /// Reasoning blocks already in the history are still carried where the upstream can take them.
    Drop,
}

/// How an OpenAI-compatible upstream carries reasoning beside `content` in Chat messages and
/// chunks, and wants it back in the history (`docs/conversion.md`, "Reasoning from
/// OpenAI-compatible vendors").
///
/// Every dialect's reasoning is *read* (`reasoning_content`, `reasoning`, LiteLLM's
/// `thinking_blocks`, OpenRouter's `reasoning_details`); the dialect decides what is *written*
/// on replayed assistant messages.
///
/// ```
/// use octo_convert::ReasoningDialect;
///
/// assert_eq!(ReasoningDialect::detect("deepseek-v4-pro"), ReasoningDialect::DeepSeek);
/// assert_eq!(ReasoningDialect::detect("kimi-k2.5"), ReasoningDialect::Kimi);
/// assert_eq!(ReasoningDialect::detect("gpt-4o"), ReasoningDialect::LiteLlm);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ReasoningDialect {
    /// Picked from the upstream model's name ([`ReasoningDialect::detect`]). The default.
    #[default]
    Auto,
    /// `reasoning_content` and LiteLLM's `thinking_blocks` (with signatures): OpenAI-compatible
    /// proxies in front of Anthropic (LiteLLM), and any server that ignores unknown fields.
    LiteLlm,
    /// DeepSeek: `reasoning_content` on every assistant message with tool calls (an empty string
    /// when there was none; the API answers 400 without it), none on other messages (ignored there,
    /// and refused by the older `deepseek-reasoner`).
    DeepSeek,
    /// Kimi (Moonshot): `reasoning_content` on every assistant message, never empty on one with
    /// tool calls (400 "reasoning_content is missing in assistant tool call message").
    Kimi,
    /// vLLM ≥ 0.9 (and servers following it: Ollama, Groq): `reasoning`, which the chat template
    /// renders for the turns after the last user message.
    Vllm,
    /// OpenRouter: `reasoning` and `reasoning_details` (text with its signature, encrypted data),
    /// which OpenRouter needs back for Anthropic and Gemini models.
    OpenRouter,
    /// No reasoning in the history at all.
    None,
}

impl ReasoningDialect {
    /// The dialect of an upstream model name: `deepseek…` → DeepSeek, `kimi…` / `moonshot…` →
    /// Kimi, anything else → LiteLLM's fields.
    pub fn detect(model: &str) -> ReasoningDialect {
        // Case-insensitive without lowercasing a copy (this runs for every converted request).
        let has = |needle: &str| {
            model
                .as_bytes()
                .windows(needle.len())
                .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
        };
        if has("deepseek") {
            ReasoningDialect::DeepSeek
        } else if has("kimi") || has("moonshot") {
            ReasoningDialect::Kimi
        } else {
            ReasoningDialect::LiteLlm
        }
    }

    /// This dialect, with [`ReasoningDialect::Auto`] resolved for `model`.
    pub fn resolve(self, model: &str) -> ReasoningDialect {
        match self {
            ReasoningDialect::Auto => ReasoningDialect::detect(model),
            other => other,
        }
    }
}

/// Conversion settings.
///
/// ```
/// use octo_convert::{ConvertOptions, OpenAiMaxTokens, ReasoningMode};
///
/// let opts = ConvertOptions::default()
///     .with_default_max_tokens(8192)
///     .with_openai_max_tokens_field(OpenAiMaxTokens::MaxTokens)
///     .with_reasoning(ReasoningMode::Drop);
/// assert_eq!(opts.default_max_tokens, 8192);
/// assert_eq!(opts.reasoning, ReasoningMode::Drop);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConvertOptions {
    /// `max_tokens` for an Anthropic upstream (which requires it) when the client gave none.
    /// Default [`DEFAULT_MAX_TOKENS`] (4096).
    pub default_max_tokens: u32,
    /// The field used for the output limit toward an OpenAI Chat upstream. Default
    /// [`OpenAiMaxTokens::MaxCompletionTokens`].
    pub openai_max_tokens_field: OpenAiMaxTokens,
    /// Whether reasoning controls reach the upstream. Default [`ReasoningMode::Pass`].
    pub reasoning: ReasoningMode,
    /// How reasoning is written into an OpenAI Chat upstream's history. Default
    /// [`ReasoningDialect::Auto`].
    pub reasoning_dialect: ReasoningDialect,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        ConvertOptions {
            default_max_tokens: DEFAULT_MAX_TOKENS,
            openai_max_tokens_field: OpenAiMaxTokens::default(),
            reasoning: ReasoningMode::default(),
            reasoning_dialect: ReasoningDialect::default(),
        }
    }
}

impl ConvertOptions {
    /// Sets [`ConvertOptions::default_max_tokens`].
    pub fn with_default_max_tokens(mut self, max_tokens: u32) -> Self {
        self.default_max_tokens = max_tokens;
        self
    }

    /// Sets [`ConvertOptions::openai_max_tokens_field`].
    pub fn with_openai_max_tokens_field(mut self, field: OpenAiMaxTokens) -> Self {
        self.openai_max_tokens_field = field;
        self
    }

    /// Sets [`ConvertOptions::reasoning_dialect`].
    pub fn with_reasoning_dialect(mut self, dialect: ReasoningDialect) -> Self {
        self.reasoning_dialect = dialect;
        self
    }

    /// Sets [`ConvertOptions::reasoning`].
    pub fn with_reasoning(mut self, mode: ReasoningMode) -> Self {
        self.reasoning = mode;
        self
    }
}
