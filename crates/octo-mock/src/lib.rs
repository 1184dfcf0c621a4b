//! # octo-mock
//!
//! A deterministic mock LLM upstream for OctoLLM's tests, demo and benchmarks. One server speaks
//! the four provider wire protocols the way the real APIs do:
//!
//! | route | protocol |
//! |---|---|
//! | `POST /v1/chat/completions` | OpenAI Chat Completions (JSON or data-only SSE ending in `[DONE]`) |
//! | `POST /v1/responses` | OpenAI Responses (JSON or `event:` SSE with `sequence_number`) |
//! | `POST /v1/messages` | Anthropic Messages (JSON or `event:` SSE) |
//! | `POST /{v1,v1beta}/models/{model}:generateContent` | Gemini, unary JSON |
//! | `POST /{v1,v1beta}/models/{model}:streamGenerateContent[?alt=sse]` | Gemini, SSE or a JSON array |
//! | `POST /v1/messages/count_tokens` | Anthropic token count: `{"input_tokens": N}` |
//! | `POST /{v1,v1beta}/models/{model}:countTokens` | Gemini token count: `{"totalTokens": N, …}` |
//! | `POST /v1/embeddings` | OpenAI embeddings: deterministic unit vectors (float or base64), `usage` |
//! | `POST /{v1,v1beta}/models/{model}:embedContent`, `:batchEmbedContents` | Gemini embeddings: the same vectors, no usage |
//! | `POST /v1/moderations` | OpenAI moderation: flags text containing `[[flag:CATEGORY]]` (e.g. `[[flag:violence]]`); only `x-mock-*` header directives apply |
//! | `GET /v1/models` | OpenAI-shaped list of mock models |
//! | `GET /_mock/requests`, `GET /_mock/stats`, `POST /_mock/reset` | introspection |
//!
//! `GET /_mock/requests` lists the recorded requests (method, HTTP `version` — `HTTP/1.1`, or
//! `HTTP/2.0` when the client spoke h2c —, path and query, headers, body length and FNV-1a digest); with `?body=1` each entry also has the `body` (as JSON when it parses).
//!
//! Replies are derived from the request only (`"Hello from octo-mock. You said: <last user text,
//! first 64 chars>"`, split into word-sized stream pieces), ids come from a per-server counter
//! (`chatcmpl-mock-1`, `resp_mock_2`, `msg_mock_3`, tool ids `call_mock_1` / `toolu_mock_2`), and
//! usage is `input = body_len / 4 + 1`, `output = text pieces + 2 per tool call`. The token-count
//! calls answer that same `body_len / 4 + 1` (so a test can tell it from the gateway's estimate);
//! the delay and fault directives apply to them too.
//!
//! # Directives
//!
//! Faults, pacing and tool calls are requested per request, either with a header
//! `x-mock-<name>: <value>` or with a token `[mock:<name>=<value>]` / `[mock:<name>]` anywhere in
//! the raw request body. Headers win over the body. Unknown names and unparsable values are ignored.
//!
//! | name | effect |
//! |---|---|
//! | `status=N` (400..=599) | answer HTTP N with the protocol's error body; 429 gets `retry-after` |
//! | `retry_after=S` | `retry-after` value for `status` (default 1; sent for any status when given) |
//! | `no_retry_after` | an injected 429 comes without `retry-after` |
//! | `latency_ms=N` | delay before the response head (also before `status`/`reset`) |
//! | `jitter_ms=N` | add a deterministic pseudo-random `0..=N` ms to the latency |
//! | `interval_ms=N` | pause between two streamed events |
//! | `events=N` | exactly N text delta events (pieces merged, or `" mock"` filler appended) |
//! | `timeout` | never answer; the request is counted in `requests_cancelled` when the client leaves |
//! | `reset` | drop the connection without a response (HTTP/2: reset the stream) |
//! | `truncate=K` | stream: send the first K events, then end the body cleanly without the rest |
//! | `abort=K` | stream: send the first K events, then fail the body (connection/stream reset) |
//! | `midstream_error=K` | stream: after K content events, send the protocol's in-band error event and end |
//! | `tool`, `tools=N` | with tools defined, answer N parallel calls (cycling through the tools) with arguments `{"query":"mock","n":<i>}` |
//! | `tool=NAME` | call the defined tool `NAME` (any value but a flag word), with arguments built from its parameter schema: each required parameter gets the `tool_arg` text (strings), that text split on whitespace (arrays of strings), its `minimum` or 0 (numbers), `false`, its first `enum` value, or a filled object. An undefined `NAME` acts like `tool` |
//! | `tool_arg=TEXT` | the text for `tool=NAME` (default `mock`), e.g. `[mock:tool=Bash] [mock:tool_arg=echo hi]` |
//! | `tool_args=B64` | the exact arguments of every tool call: a JSON object, base64-encoded (standard or URL-safe alphabet, padding optional; up to 16 KiB in a body token, unlike the 64 bytes of the others), or as is in a header. Multi-line strings, quotes and `]` survive, e.g. `[mock:tool=Write] [mock:tool_args=eyJhIjoiYlxuYyJ9]` calls `Write` with `{"a":"b\nc"}`; `x-mock-tool-args: {"a":"b\nc"}` does the same. Wins over `tool_arg`; an invalid value is ignored |
//! | `say=TEXT` | the reply text is exactly TEXT instead of the echo: base64 of UTF-8 text (standard or URL-safe alphabet, padding optional; up to 16 KiB in a body token), or the value as is when it is not base64 (e.g. in a header). A reply can so carry what the request does not, e.g. a moderation marker: `[mock:say=W1tmbGFnOnZpb2xlbmNlXV0=]` answers `[[flag:violence]]` |
//! | `echo_key` | injected errors (`status`, `midstream_error`) quote the API key the request presented (`; Incorrect API key provided: KEY`), as providers do: for tests that the gateway never passes its keys on |
//! | `max_tokens` | answer text truncated for length (`length`, `max_tokens`, `MAX_TOKENS`, `incomplete`) |
//! | `thinking` | the answer starts with reasoning, `"The mock thinks before it answers."`, signed in the protocol's own way: an Anthropic `thinking` block with `signature` (streamed as `thinking_delta` + `signature_delta`), OpenAI Chat `reasoning_content` + LiteLLM's `thinking_blocks[].signature` (streamed as two deltas), a Responses `reasoning` item with a `summary_text` and `encrypted_content` (streamed with the `reasoning_summary_*` events), a Gemini `thought: true` part with `thoughtSignature`. Each protocol has its own fixed signature, base64 of `mock-anthropic-signature`, `mock-chat-signature`, `mock-responses-encrypted-content`, `mock-gemini-thought-signature` |
//!
//! # Real-API rules, vendor dialects, structured output
//!
//! Requests the real APIs refuse get their 400 with the provider's message (module `rules`):
//! Anthropic with thinking on (budget, forced tool choice, temperature, and a final assistant
//! tool turn that does not start with a signed thinking block); DeepSeek and Kimi models (by
//! name: `deepseek…`, `kimi…`/`moonshot…`) whose assistant tool-call messages lack
//! `reasoning_content`. With the `thinking` directive a Chat model's reasoning comes in its
//! vendor's field: `reasoning_content` without `thinking_blocks` for DeepSeek and Kimi,
//! `reasoning` for `vllm…` models. A request for structured output (Chat `response_format`,
//! Responses `text.format`, Anthropic `output_config.format` / `output_format`, Gemini
//! `responseMimeType: application/json` with `responseJsonSchema` / `responseSchema`) is answered
//! with JSON: `{"reply": "<the usual text>"}` for any object, else a deterministic value of the
//! schema with every property filled.
//!
//! Flag directives accept `0`/`false`/`no`/`off` to switch them off (useful in a header to override
//! the body). A forcing tool choice (`"required"`, a named function, Anthropic `any`/`tool`, Gemini
//! mode `ANY`) also produces tool calls; a `none` choice prevents them, and so does a conversation
//! whose last message is a tool result (the mock then answers with text, so agent loops end).
//!
//! In header names `-` may replace `_` (`x-mock-interval-ms` = `x-mock-interval_ms`).
//!
//! # Stop sequences
//!
//! The mock honours the protocol's stop parameter (OpenAI Chat `stop`, a string or a list;
//! Anthropic `stop_sequences`; Gemini `generationConfig.stopSequences`; the Responses API has none):
//! when one occurs in the reply text, the text is cut before the earliest match, which is not sent,
//! and the reply ends as that API ends it: `finish_reason: "stop"` (Chat), `stop_reason:
//! "stop_sequence"` with the matched `stop_sequence` (Anthropic), `finishReason: "STOP"` (Gemini).
//! Tool calls and `max_tokens` win over a match.
//!
//! # Counters and cancellation
//!
//! Every recorded request bumps [`MockStats::requests`]. A streamed response counts in
//! `streams_started`, then in exactly one of `streams_completed` (last event handed to the
//! connection, including clean `truncate`/`midstream_error` endings), `streams_aborted` (the
//! `abort` directive) or `streams_cancelled` (the body was dropped before its end: the client went
//! away). A request dropped before its response head (during `latency_ms` or `timeout`) counts in
//! `requests_cancelled`. [`MockServer::wait_for`] resolves as soon as a predicate on the counters
//! holds, without sleeps or polling:
//!
//! ```no_run
//! use octo_mock::{MockConfig, MockServer};
//!
//! # async fn demo() -> std::io::Result<()> {
//! let mock = MockServer::start("127.0.0.1:0".parse().unwrap(), MockConfig::default()).await?;
//! let base = mock.url(); // e.g. "http://127.0.0.1:40123"
//! // … point the gateway at `base`, stream a request with `x-mock-interval-ms: 50` through it
//! // and drop the client half-way …
//! mock.wait_for(|s| s.streams_cancelled >= 1).await;
//! assert_eq!(mock.requests().len(), 1);
//! mock.shutdown().await;
//! # let _ = base;
//! # Ok(())
//! # }
//! ```

mod body;
mod directives;
mod embeddings;
mod moderation;
mod protocols;
mod record;
mod reply;
mod rules;
mod service;
mod sse;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use record::{MockStats, RecordedRequest};

use record::State;

/// Server-wide defaults. Per-request directives override them.
///
/// `Default` gives all-zero delays and seed 0: the mock answers as fast as it can.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MockConfig {
    /// Delay before every LLM response head (overridden by the `latency_ms` directive).
    pub latency: Duration,
    /// Upper bound of an extra deterministic pseudo-random delay added to `latency`
    /// (overridden by `jitter_ms`).
    pub jitter: Duration,
    /// Pause between two streamed events (overridden by `interval_ms`).
    pub event_interval: Duration,
    /// Seed of the jitter sequence; the same seed gives the same delays in the same order.
    pub seed: u64,
    /// HTTP/2 (h2c) streams one connection may have open at once (`SETTINGS_MAX_CONCURRENT_STREAMS`);
    /// `None` means 1024. A gateway multiplexes every stream to a backend over one connection, so
    /// many-streams benchmarks raise it.
    pub h2_max_concurrent_streams: Option<u32>,
}

/// A running mock server. Dropping it (like [`MockServer::shutdown`]) stops accepting and closes the
/// open connections; `shutdown` also waits until that is done.
pub struct MockServer {
    addr: SocketAddr,
    state: Arc<State>,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for MockServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockServer")
            .field("addr", &self.addr)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl MockServer {
    /// Binds `addr` (port 0 picks a free port) and starts serving HTTP/1.1 and h2c on the current
    /// Tokio runtime, one task per connection.
    pub async fn start(addr: SocketAddr, config: MockConfig) -> std::io::Result<MockServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::new(config));
        let (stop, stop_rx) = watch::channel(false);
        let max_streams = config.h2_max_concurrent_streams.unwrap_or(1024);
        let task = tokio::spawn(accept_loop(
            listener,
            Arc::clone(&state),
            stop_rx,
            max_streams,
        ));
        Ok(MockServer {
            addr,
            state,
            stop,
            task: Some(task),
        })
    }

    /// The bound address (with the real port when started on port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL without a trailing slash, e.g. `http://127.0.0.1:40123`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The last 256 recorded requests, oldest first (introspection requests are not recorded).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> MockStats {
        self.state.stats()
    }

    /// Resolves with the first stats snapshot for which `pred` holds (immediately if it already
    /// does). Wakes on every counter change; no polling.
    pub async fn wait_for(&self, pred: impl Fn(&MockStats) -> bool) -> MockStats {
        self.state.wait_for(pred).await
    }

    /// Clears the request log and the counters and restarts the id and jitter sequences, like
    /// `POST /_mock/reset`.
    pub fn reset(&self) {
        self.state.reset();
    }

    /// Stops accepting, closes every open connection (in-flight streams count as cancelled) and
    /// waits until the server task has finished.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

async fn accept_loop(
    listener: TcpListener,
    state: Arc<State>,
    mut stop: watch::Receiver<bool>,
    max_streams: u32,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http2().max_concurrent_streams(max_streams);
    let builder = Arc::new(builder);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _peer)) = accepted else {
                    // Out of file descriptors or similar: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let builder = Arc::clone(&builder);
                let state = Arc::clone(&state);
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        service::handle(Arc::clone(&state), req)
                    });
                    let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = stop.changed() => break,
        }
    }
    drop(listener);
    connections.shutdown().await;
}
