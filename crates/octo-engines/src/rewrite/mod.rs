//! Rewriting JSON bodies: `remove_keys`, `set_keys` and `set_keys_by_expr`.
//!
//! - **Fixed order**: `remove_keys` (in list order), then `set_keys` (in the order written), then
//!   `set_keys_by_expr` (in the order written). A later entry sees the earlier ones' result.
//! - **Paths** follow sjson: `.` separates levels, a number indexes an array, `-1` appends (for
//!   `remove_keys`, it names the last element), `\.` is a literal dot. Setting creates what is
//!   missing (an array when the next segment is a number or `-1`, an object otherwise), replaces a
//!   scalar in the way, and pads an array with `null`s up to a named index. A path that names a key
//!   inside an existing array is skipped (warned once).
//! - **Expressions** are compiled when the engine is built and evaluated against the request's
//!   variables ([`crate::expr`]) as the client sent it, before any request rewrite: the same
//!   environment as rules, for request, response and stream rewrites alike (so a response rewrite
//!   can put the client's own `model` back). A result of empty
//!   `()` skips the key (`if(max_tokens > 1000, 1000, ())`); evalexpr has no objects, so an
//!   expression yields a string, number, boolean or array.
//! - **Where**: on the request before the next engine; on a non-stream response; on each stream
//!   event, parsing an event's data only when a stream rewrite is configured. `[DONE]` and events
//!   whose data is not a JSON object pass through untouched, as does a non-JSON response body.
//! - **Cheap when it can be**: top-level keys are set and removed by splicing bytes
//!   ([`Body::set_top_level`](octo_core::Body::set_top_level) and a borrowed scan for removal), so
//!   a request whose rewrite only touches top-level keys (`model`, `stream`, `user`, …) is never
//!   parsed and keeps every other byte; nested paths parse the body once.
//! - **Never shared state**: the engine edits the request it owns; a retry that hands each attempt
//!   a clone of the original request gets the original bytes back.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::sync::Arc;
//! use octo_core::{engine_fn, Protocol, ArcEngine, Body, Engine, Request, Response};
//! use octo_engines::rewrite::{RewriteConfig, RewriteEngine, RewritesConfig};
//! use serde_json::json;
//!
//! let echo: ArcEngine = Arc::new(engine_fn(|req: Request| async move { Ok(Response::json(200, req.body)) }));
//! let config = RewritesConfig {
//!     request: RewriteConfig::default()
//!         .remove("user")
//!         .set("stream_options.include_usage", json!(true))
//!         .set_expr("max_tokens", "if(max_tokens > 1000, 1000, max_tokens)"),
//!     ..RewritesConfig::default()
//! };
//! let engine = RewriteEngine::new(config, echo).unwrap();
//! let req = Request::post(Protocol::OpenAiChat, "/v1/chat/completions",
//!     Body::from_static(br#"{"model":"m","user":"u","max_tokens":4096}"#));
//! let resp = engine.process(req).await.unwrap();
//! let octo_core::ResponseBody::Full(mut body) = resp.body else { unreachable!() };
//! assert_eq!(body.json().unwrap(), &json!({"model":"m","max_tokens":1000,"stream_options":{"include_usage":true}}));
//! # }
//! ```

mod path;
mod splice;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use async_trait::async_trait;
use futures::StreamExt;
use octo_core::{
    ArcEngine, Body, Engine, Error, Event, EventStream, Request, Response, ResponseBody,
};
use serde_json::Value;

use self::path::Path;
use crate::expr::{Env, EnvSpec, Expr, log_eval_failure, value_to_json};
use octo_core::BuildError;
use octo_core::layer::Layer;

/// One rewrite, as configured: plain values, validated by [`RewritePolicy::new`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RewriteConfig {
    /// Paths to remove, in order.
    pub remove_keys: Vec<String>,
    /// Paths to set to a JSON value, in order.
    pub set_keys: Vec<(String, Value)>,
    /// Paths to set to an expression's result, in order.
    pub set_keys_by_expr: Vec<(String, String)>,
}

impl RewriteConfig {
    /// Whether nothing is configured.
    pub fn is_empty(&self) -> bool {
        self.remove_keys.is_empty() && self.set_keys.is_empty() && self.set_keys_by_expr.is_empty()
    }

    /// Adds a path to remove.
    pub fn remove(mut self, path: impl Into<String>) -> Self {
        self.remove_keys.push(path.into());
        self
    }

    /// Adds a path to set.
    pub fn set(mut self, path: impl Into<String>, value: Value) -> Self {
        self.set_keys.push((path.into(), value));
        self
    }

    /// Adds a path to set from an expression.
    pub fn set_expr(mut self, path: impl Into<String>, expr: impl Into<String>) -> Self {
        self.set_keys_by_expr.push((path.into(), expr.into()));
        self
    }

    /// Layers `other` over `self` (a model's rewrite over its backend's): `other` wins for a path
    /// both set (keeping `self`'s position), new paths are appended, and `remove_keys` are
    /// concatenated (`self`'s first).
    pub fn merge(mut self, other: RewriteConfig) -> Self {
        self.remove_keys.extend(other.remove_keys);
        for (path, value) in other.set_keys {
            match self.set_keys.iter_mut().find(|(p, _)| *p == path) {
                Some(slot) => slot.1 = value,
                None => self.set_keys.push((path, value)),
            }
        }
        for (path, expr) in other.set_keys_by_expr {
            match self.set_keys_by_expr.iter_mut().find(|(p, _)| *p == path) {
                Some(slot) => slot.1 = expr,
                None => self.set_keys_by_expr.push((path, expr)),
            }
        }
        self
    }
}

/// A compiled [`RewriteConfig`]: parsed paths and expressions.
pub struct RewritePolicy {
    remove: Vec<Path>,
    set: Vec<(Path, Value, AtomicBool)>,
    by_expr: Vec<(Path, Expr, AtomicBool)>,
}

impl fmt::Debug for RewritePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RewritePolicy")
            .field("remove_keys", &self.remove)
            .field(
                "set_keys",
                &self.set.iter().map(|(p, v, _)| (p, v)).collect::<Vec<_>>(),
            )
            .field(
                "set_keys_by_expr",
                &self
                    .by_expr
                    .iter()
                    .map(|(p, e, _)| (p, e))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl RewritePolicy {
    /// Compiles `config`.
    ///
    /// # Errors
    /// A bad path (empty segment, trailing `\`, huge index) or expression, named with its key.
    pub fn new(config: RewriteConfig) -> Result<Self, BuildError> {
        let remove = config
            .remove_keys
            .iter()
            .map(|p| Path::parse(p).map_err(|e| e.context("remove_keys")))
            .collect::<Result<_, _>>()?;
        let set = config
            .set_keys
            .into_iter()
            .map(|(p, v)| {
                Path::parse(&p)
                    .map(|p| (p, v, AtomicBool::new(false)))
                    .map_err(|e| e.context("set_keys"))
            })
            .collect::<Result<_, _>>()?;
        let by_expr = config
            .set_keys_by_expr
            .into_iter()
            .map(|(p, src)| {
                let path = Path::parse(&p).map_err(|e| e.context("set_keys_by_expr"))?;
                let expr = Expr::new(&src)
                    .map_err(|e| e.context(format_args!("set_keys_by_expr `{p}`")))?;
                Ok((path, expr, AtomicBool::new(false)))
            })
            .collect::<Result<_, BuildError>>()?;
        Ok(RewritePolicy {
            remove,
            set,
            by_expr,
        })
    }

    /// A policy that changes nothing.
    pub fn empty() -> Self {
        RewritePolicy {
            remove: Vec::new(),
            set: Vec::new(),
            by_expr: Vec::new(),
        }
    }

    /// Whether the policy changes nothing.
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty() && self.by_expr.is_empty()
    }

    /// The expressions the policy evaluates (for building an [`EnvSpec`]).
    pub fn exprs(&self) -> impl Iterator<Item = &Expr> {
        self.by_expr.iter().map(|(_, e, _)| e)
    }

    /// Applies the policy to `body`, evaluating expressions against `env`.
    ///
    /// # Errors
    /// A 400 when the body is not a JSON object (or array, for nested paths); the body may then be
    /// partly rewritten, so callers that want all-or-nothing apply to a clone.
    pub fn apply(&self, body: &mut Body, env: &Env) -> Result<(), Error> {
        let top_level: Option<Vec<&str>> = self.remove.iter().map(Path::top_level).collect();
        match top_level {
            Some(keys) if keys.is_empty() => {}
            Some(keys) if !body.is_parsed() => {
                // Top-level keys of an unparsed body: splice them out, keep every other byte.
                match splice::remove_top_level(&body.to_bytes(), &keys) {
                    Ok(Some(bytes)) => body.set_bytes(bytes),
                    Ok(None) => {}
                    Err(e) => {
                        return Err(Error::bad_request(format!(
                            "request body must be a JSON object: {e}"
                        ))
                        .with_code("invalid_json"));
                    }
                }
            }
            _ => {
                let present = {
                    let doc = body.json()?;
                    self.remove.iter().any(|p| p.exists(doc))
                };
                if present {
                    let doc = body.json_mut()?;
                    for p in &self.remove {
                        p.remove(doc);
                    }
                }
            }
        }
        for (path, value, warned) in &self.set {
            set_one(body, path, value, warned)?;
        }
        for (path, expr, warned) in &self.by_expr {
            match expr.eval(env) {
                Ok(v) => {
                    if let Some(json) = value_to_json(&v) {
                        set_one(body, path, &json, warned)?;
                    }
                }
                Err(e) => log_eval_failure(warned, &format!("set_keys_by_expr `{path}`"), &e),
            }
        }
        Ok(())
    }

    /// Rewrites one stream event; `[DONE]` and events whose data is not a JSON object pass
    /// through untouched.
    pub fn apply_event(&self, event: Event, env: &Env) -> Event {
        if self.is_empty() || event.is_done_marker() {
            return event;
        }
        let mut data = event.data_body().clone();
        match self.apply(&mut data, env) {
            // Unchanged (say, only absent keys removed): keep the event and its raw frame.
            Ok(()) if !data.is_dirty() && data.to_bytes() == event.data_body().to_bytes() => event,
            Ok(()) => {
                let mut event = event;
                *event.data_mut() = data;
                event
            }
            Err(_) => event,
        }
    }
}

fn set_one(body: &mut Body, path: &Path, value: &Value, warned: &AtomicBool) -> Result<(), Error> {
    if let Some(key) = path.top_level() {
        return body.set_top_level(key, value);
    }
    if !matches!(body.json()?, Value::Object(_) | Value::Array(_)) {
        return Err(
            Error::bad_request("request body must be a JSON object").with_code("invalid_json")
        );
    }
    let doc = body.json_mut()?;
    if let Err(why) = path.set(doc, value.clone()) {
        if !warned.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::warn!(target: "octollm::rewrite", "rewrite of `{path}` skipped: {why}");
        }
    }
    Ok(())
}

/// Request, response and stream rewrites, as configured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RewritesConfig {
    /// Applied to the request before the next engine.
    pub request: RewriteConfig,
    /// Applied to a non-stream response body.
    pub response: RewriteConfig,
    /// Applied to each stream event's data.
    pub stream: RewriteConfig,
}

impl RewritesConfig {
    /// Whether nothing is configured.
    pub fn is_empty(&self) -> bool {
        self.request.is_empty() && self.response.is_empty() && self.stream.is_empty()
    }
}

/// Compiled [`RewritesConfig`].
#[derive(Debug)]
pub struct Rewrites {
    /// The request rewrite.
    pub request: RewritePolicy,
    /// The non-stream response rewrite.
    pub response: RewritePolicy,
    /// The per-event stream rewrite.
    pub stream: RewritePolicy,
}

impl Rewrites {
    /// Compiles `config`.
    ///
    /// # Errors
    /// As [`RewritePolicy::new`], prefixed with `request_rewrites`, `response_rewrites` or
    /// `stream_chunk_rewrites` (the config keys).
    pub fn new(config: RewritesConfig) -> Result<Self, BuildError> {
        Ok(Rewrites {
            request: RewritePolicy::new(config.request)
                .map_err(|e| e.context("request_rewrites"))?,
            response: RewritePolicy::new(config.response)
                .map_err(|e| e.context("response_rewrites"))?,
            stream: RewritePolicy::new(config.stream)
                .map_err(|e| e.context("stream_chunk_rewrites"))?,
        })
    }

    /// Whether nothing is rewritten.
    pub fn is_empty(&self) -> bool {
        self.request.is_empty() && self.response.is_empty() && self.stream.is_empty()
    }

    /// Every expression of the three policies.
    pub fn exprs(&self) -> impl Iterator<Item = &Expr> {
        self.request
            .exprs()
            .chain(self.response.exprs())
            .chain(self.stream.exprs())
    }

    /// Rewrites the request body.
    ///
    /// # Errors
    /// A 400 when the body is not a JSON object.
    pub fn rewrite_request(&self, req: &mut Request, env: &Env) -> Result<(), Error> {
        if self.request.is_empty() {
            return Ok(());
        }
        self.request.apply(&mut req.body, env)
    }

    /// Rewrites a response: the body of a full one (left as is when it is not JSON), each event of a
    /// stream (lazily, as the client pulls).
    pub fn rewrite_response(self: &Arc<Self>, mut resp: Response, env: Arc<Env>) -> Response {
        resp.body = match resp.body {
            ResponseBody::Full(body) if !self.response.is_empty() => {
                let mut copy = body.clone();
                match self.response.apply(&mut copy, &env) {
                    Ok(()) => ResponseBody::Full(copy),
                    Err(e) => {
                        tracing::debug!(target: "octollm::rewrite", "response rewrite skipped: {e}");
                        ResponseBody::Full(body)
                    }
                }
            }
            ResponseBody::Stream(events) if !self.stream.is_empty() => {
                let this = self.clone();
                ResponseBody::Stream(EventStream::new(
                    events.map(move |item| item.map(|event| this.stream.apply_event(event, &env))),
                ))
            }
            other => other,
        };
        resp
    }
}

/// Compiled rewrites waiting for the engine they wrap: the [`Layer`] form of [`RewriteEngine`].
#[derive(Debug, Clone)]
pub struct RewriteLayer {
    rewrites: Arc<Rewrites>,
}

impl RewriteLayer {
    /// Compiles `config`.
    ///
    /// # Errors
    /// As [`Rewrites::new`].
    pub fn new(config: RewritesConfig) -> Result<Self, BuildError> {
        Ok(RewriteLayer {
            rewrites: Arc::new(Rewrites::new(config)?),
        })
    }
}

impl Layer for RewriteLayer {
    fn layer(&self, inner: ArcEngine) -> ArcEngine {
        Arc::new(RewriteEngine::from_rewrites(self.rewrites.clone(), inner))
    }
}

/// Applies [`Rewrites`] around the next engine; see the [module docs](self).
pub struct RewriteEngine {
    rewrites: Arc<Rewrites>,
    spec: Arc<EnvSpec>,
    next: ArcEngine,
}

impl fmt::Debug for RewriteEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RewriteEngine")
            .field("rewrites", &self.rewrites)
            .finish()
    }
}

impl RewriteEngine {
    /// Compiles `config` and wraps `next`.
    ///
    /// # Errors
    /// As [`Rewrites::new`].
    pub fn new(config: RewritesConfig, next: ArcEngine) -> Result<Self, BuildError> {
        Ok(Self::from_rewrites(Arc::new(Rewrites::new(config)?), next))
    }

    /// Wraps `next` with already compiled rewrites.
    pub fn from_rewrites(rewrites: Arc<Rewrites>, next: ArcEngine) -> Self {
        let spec = EnvSpec::new(rewrites.exprs());
        RewriteEngine {
            rewrites,
            spec,
            next,
        }
    }
}

#[async_trait]
impl Engine for RewriteEngine {
    async fn process(&self, mut req: Request) -> Result<Response, Error> {
        let env = Env::extract(&self.spec, &mut req)?;
        self.rewrites.rewrite_request(&mut req, &env)?;
        let resp = self.next.process(req).await?;
        Ok(self.rewrites.rewrite_response(resp, Arc::new(env)))
    }
}

#[cfg(test)]
mod tests;
