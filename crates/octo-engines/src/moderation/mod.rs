//! Content moderation through an OpenAI-compatible `POST /v1/moderations`, on the request before
//! it is sent and, optionally, on the answer.
//!
//! [`ModerationEngine`] sits in front of a model's targets:
//!
//! - **Input:** the request's text ([`request_texts`]: every message, the system prompt or
//!   instructions, tool results) is checked before anything is sent. Flagged: a 400 in the
//!   client's protocol with code `content_policy_violation` and the flagged categories in the
//!   message; the upstream never sees the request.
//! - **Output, full answers** (`on: input_and_output`): the answer's text and tool-call
//!   arguments ([`answer_text`]) are checked before the answer is returned; flagged, the answer
//!   is withheld and the client gets the same 400.
//! - **Output, streams:** events are held back and checked in windows. Once the text held since
//!   the last check reaches `window` characters (and at the end of the stream, so the tail is
//!   never skipped), the text checked is that new text preceded by the previous window's last
//!   `window` characters, so a phrase split across two windows is still seen whole. When the
//!   check passes the held events are released in order; when it flags, the held events are
//!   dropped, the upstream stream is closed and the stream ends with the protocol's in-band error
//!   event (code `content_policy_violation`). What the client received before was checked.
//!   The cost is latency: the first events wait for the first window (or the end of a short
//!   answer) and one moderation call.
//! - **A failing moderation endpoint** (unreachable, timeout, error status, not a moderation
//!   answer) follows `on_error`: `allow` lets the text through (and logs a warning), `deny`
//!   refuses with a 503 `moderation_unavailable` (retryable), or ends a stream with that error.
//! - **Errors of the upstream** pass through unchecked (there is no answer text).
//!
//! Outcomes are counted per model ([`Outcome`]).

mod client;
mod stats;
mod text;

use std::collections::VecDeque;
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use http::StatusCode;
use octo_core::layer::Layer;
use octo_core::{
    ArcEngine, Engine, Error, Event, EventStream, Protocol, Request, Response, ResponseBody,
};

pub use client::{MAX_PART_CHARS, Moderator, Verdict, parse_verdict};
pub use stats::{ModerationCounters, Outcome, counters, snapshot};
pub use text::{answer_text, event_text, request_texts};

use stats::Tally;

/// What a failing moderation endpoint means for the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnError {
    /// Let the text through.
    Allow,
    /// Refuse it (503 `moderation_unavailable`).
    #[default]
    Deny,
}

/// The default stream window, in characters.
pub const DEFAULT_WINDOW: usize = 500;

/// The moderation of one model: settings checked once, waiting for the engine to wrap.
#[derive(Debug, Clone)]
pub struct ModerationLayer {
    model: String,
    moderator: Moderator,
    output: bool,
    on_error: OnError,
    window: usize,
}

impl ModerationLayer {
    /// Input moderation of model `model` (the metrics label) through `moderator`; a failing
    /// endpoint refuses (see [`ModerationLayer::on_error`]).
    pub fn new(model: impl Into<String>, moderator: Moderator) -> Self {
        ModerationLayer {
            model: model.into(),
            moderator,
            output: false,
            on_error: OnError::default(),
            window: DEFAULT_WINDOW,
        }
    }

    /// Also check answers, streams in windows of `window` characters (at least 1).
    pub fn with_output(mut self, window: usize) -> Self {
        self.output = true;
        self.window = window.max(1);
        self
    }

    /// What a failing moderation endpoint means.
    pub fn on_error(mut self, on_error: OnError) -> Self {
        self.on_error = on_error;
        self
    }
}

impl Layer for ModerationLayer {
    fn layer(&self, inner: ArcEngine) -> ArcEngine {
        Arc::new(ModerationEngine {
            inner,
            check: Arc::new(Check {
                moderator: self.moderator.clone(),
                on_error: self.on_error,
            }),
            output: self.output,
            window: self.window,
            counters: stats::counters(&self.model),
        })
    }
}

/// Moderation in front of an engine; see the [module docs](self).
pub struct ModerationEngine {
    inner: ArcEngine,
    check: Arc<Check>,
    output: bool,
    window: usize,
    counters: Arc<ModerationCounters>,
}

impl std::fmt::Debug for ModerationEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModerationEngine")
            .field("moderator", &self.check.moderator)
            .field("output", &self.output)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

/// Whose text was flagged.
#[derive(Debug, Clone, Copy)]
enum Side {
    Input,
    Output,
}

/// The refusal of flagged text.
fn flagged(side: Side, categories: &[String]) -> Error {
    let what = match side {
        Side::Input => "the request was flagged by content moderation",
        Side::Output => "the answer was flagged by content moderation",
    };
    let cats = if categories.is_empty() {
        "no category named".to_owned()
    } else {
        format!("categories: {}", categories.join(", "))
    };
    let tail = match side {
        Side::Input => "it was not sent to the model",
        Side::Output => "it was withheld",
    };
    Error::bad_request(format!("content_policy_violation: {what} ({cats}); {tail}"))
        .with_code("content_policy_violation")
}

/// One moderation call and what its outcome means.
#[derive(Debug)]
struct Check {
    moderator: Moderator,
    on_error: OnError,
}

impl Check {
    /// `Ok` when `texts` may pass; the refusal otherwise. Raises `tally`.
    async fn run(&self, side: Side, texts: &[String], tally: &Tally) -> Result<(), Error> {
        match self.moderator.check(texts).await {
            Ok(v) if v.flagged => {
                tally.raise(match side {
                    Side::Input => Outcome::FlaggedInput,
                    Side::Output => Outcome::FlaggedOutput,
                });
                Err(flagged(side, &v.categories))
            }
            Ok(_) => Ok(()),
            Err(e) => match self.on_error {
                OnError::Allow => {
                    tally.raise(Outcome::ErrorAllowed);
                    tracing::warn!(error = %e.message(), "moderation failed; allowed by on_error: allow");
                    Ok(())
                }
                OnError::Deny => {
                    tally.raise(Outcome::ErrorDenied);
                    tracing::warn!(error = %e.message(), "moderation failed; refused by on_error: deny");
                    Err(Error::upstream(format!(
                        "content moderation is unavailable ({}); the request was refused (on_error: deny)",
                        e.message()
                    ))
                    .with_status(StatusCode::SERVICE_UNAVAILABLE)
                    .with_code("moderation_unavailable")
                    .with_retryable(true))
                }
            },
        }
    }
}

#[async_trait]
impl Engine for ModerationEngine {
    async fn process(&self, mut req: Request) -> Result<Response, Error> {
        let protocol = req.protocol;
        let texts = request_texts(protocol, req.body.json()?);
        let tally = Tally::new(self.counters.clone());
        self.check.run(Side::Input, &texts, &tally).await?;
        let mut resp = self.inner.process(req).await?;
        if !self.output || resp.status != StatusCode::OK {
            return Ok(resp);
        }
        match &mut resp.body {
            ResponseBody::Full(body) => {
                let text = match body.json() {
                    Ok(v) => answer_text(protocol, v),
                    Err(_) => String::from_utf8_lossy(&body.to_bytes()).into_owned(),
                };
                self.check.run(Side::Output, &[text], &tally).await?;
            }
            ResponseBody::Stream(events) => {
                let events = std::mem::replace(events, EventStream::iter(Vec::new()));
                resp.body = ResponseBody::Stream(windowed(
                    events,
                    Window {
                        protocol,
                        window: self.window,
                        check: self.check.clone(),
                        tally,
                        held: Vec::new(),
                        pending: String::new(),
                        pending_chars: 0,
                        context: String::new(),
                        out: VecDeque::new(),
                        done: false,
                    },
                ));
            }
        }
        Ok(resp)
    }
}

/// The state of a stream checked in windows.
struct Window {
    protocol: Protocol,
    window: usize,
    check: Arc<Check>,
    tally: Tally,
    /// Events not yet checked.
    held: Vec<Event>,
    /// Their text.
    pending: String,
    pending_chars: usize,
    /// The last `window` characters already checked.
    context: String,
    /// What goes to the client next.
    out: VecDeque<Result<Event, Error>>,
    done: bool,
}

impl Window {
    fn hold(&mut self, ev: Event) {
        let text = event_text(self.protocol, ev.name(), &ev.data_body().to_bytes());
        self.pending_chars += text.chars().count();
        self.pending.push_str(&text);
        self.held.push(ev);
    }

    /// Checks what is held (when it has text) and releases it, or ends the stream with the
    /// refusal.
    async fn flush(&mut self) {
        if !self.pending.is_empty() {
            let texts = [format!("{}{}", self.context, self.pending)];
            if let Err(e) = self.check.run(Side::Output, &texts, &self.tally).await {
                self.held.clear();
                self.out.push_back(Err(e));
                self.done = true;
                return;
            }
            let [text] = texts;
            let skip = text.chars().count().saturating_sub(self.window);
            self.context = text.chars().skip(skip).collect();
            self.pending.clear();
            self.pending_chars = 0;
        }
        self.out.extend(self.held.drain(..).map(Ok));
    }
}

/// `events` checked in windows; see the [module docs](self).
fn windowed(events: EventStream, state: Window) -> EventStream {
    let stream = futures::stream::unfold((events, state), |(mut events, mut st)| async move {
        loop {
            if let Some(item) = st.out.pop_front() {
                return Some((item, (events, st)));
            }
            if st.done {
                return None;
            }
            match events.next().await {
                Some(Ok(ev)) => {
                    st.hold(ev);
                    if st.pending_chars >= st.window {
                        st.flush().await;
                    }
                }
                Some(Err(e)) => {
                    st.flush().await;
                    if !st.done {
                        st.out.push_back(Err(e));
                        st.done = true;
                    }
                }
                None => {
                    st.flush().await;
                    st.done = true;
                }
            }
        }
    });
    EventStream::new(stream.fuse())
}

#[cfg(test)]
mod tests;
