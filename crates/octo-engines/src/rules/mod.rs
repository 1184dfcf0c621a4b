//! First-match rules: deny a request, or route, rewrite and tag it.
//!
//! - Each [`Rule`] has a name, a `match` expression in evalexpr ([`crate::expr`] documents the
//!   language and the variables), an optional org it applies to, and an [`Action`]. Expressions are
//!   compiled when the engine is built; a bad one is a [`BuildError`] naming the rule and the reason.
//!   An empty expression always matches.
//! - Per request the variables every rule (and every rule's rewrite) reads are extracted **once**,
//!   reading no more of the body than they need; the identity comes from the auth engine.
//! - Rules are tried in order and the **first match wins**. A rule scoped to an org is skipped for
//!   other orgs and for anonymous requests (the server puts org rules before model rules). A
//!   rule whose expression fails to evaluate (`max_tokens > 1000` with no `max_tokens`) or does
//!   not yield a boolean does not match; the failure is logged once at warn level.
//! - No match: the request goes to the default engine.
//!
//! Actions:
//! - [`Action::Deny`]: a non-retryable error with the configured status (default 400, validated to
//!   be 4xx or 5xx) and message, rendered in the client's protocol by the front.
//! - [`Action::Forward`]: optionally rewrite the request (and its response and stream, see
//!   [`crate::rewrite`]; expressions see the same variables as the rules), set upstream headers
//!   ([`UpstreamHeaders`]; a name set earlier is replaced, protected names such as
//!   `authorization` or `content-length` are refused when the engine is built), then call the rule's route (an engine the caller builds, e.g. a
//!   balancer over weighted targets) or, without one, the default engine. A forward with nothing set
//!   is an "allow" that stops later rules from matching.
//!
//! The matched rule's name is recorded in the request's extensions as [`MatchedRule`].
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::sync::Arc;
//! use octo_core::{engine_fn, Protocol, ArcEngine, Body, Engine, Request, Response};
//! use octo_engines::rules::{Action, Rule, RulesEngine};
//!
//! let named = |name: &'static str| -> ArcEngine {
//!     Arc::new(engine_fn(move |_req: Request| async move {
//!         Ok(Response::json(200, Body::from_static(name.as_bytes())))
//!     }))
//! };
//! let engine = RulesEngine::new(vec![
//!     Rule::new("no-stream", "stream == true", Action::deny(403, "streaming is not allowed")),
//!     Rule::new("big", "promptTextLen > 20", Action::route(named("\"big\""))),
//! ], named("\"default\"")).unwrap();
//!
//! let chat = |body: &'static str| Request::post(Protocol::OpenAiChat, "/v1/chat/completions", Body::from_static(body.as_bytes()));
//! let denied = engine.process(chat(r#"{"model":"m","stream":true}"#)).await.unwrap_err();
//! assert_eq!((denied.status().as_u16(), denied.message()), (403, "streaming is not allowed"));
//! let big = engine.process(chat(r#"{"model":"m","messages":[{"role":"user","content":"a long enough question"}]}"#)).await.unwrap();
//! # let octo_core::ResponseBody::Full(b) = big.body else { unreachable!() };
//! assert_eq!(&b.to_bytes()[..], b"\"big\"");
//! # }
//! ```

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use async_trait::async_trait;
use http::{HeaderMap, StatusCode};
use octo_core::layer::Layer;
use octo_core::{
    ArcEngine, BuildError, BuildErrorKind, Engine, Error, ErrorKind, Request, Response,
};

use crate::add_header::{UpstreamHeaders, is_protected};
use crate::auth::Identity;
use crate::expr::{Env, EnvSpec, Expr, log_eval_failure};
use crate::rewrite::{Rewrites, RewritesConfig};

/// A rule as configured.
#[derive(Clone)]
pub struct Rule {
    /// The rule's name (unique within an engine), used in errors and logs.
    pub name: String,
    /// The condition; empty means "always".
    pub expr: String,
    /// If set, the rule applies only to requests authenticated for this org.
    pub org: Option<String>,
    /// What to do on a match.
    pub action: Action,
}

impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rule")
            .field("name", &self.name)
            .field("expr", &self.expr)
            .field("org", &self.org)
            .field("action", &self.action)
            .finish()
    }
}

impl Rule {
    /// A rule for everyone.
    pub fn new(name: impl Into<String>, expr: impl Into<String>, action: Action) -> Self {
        Rule {
            name: name.into(),
            expr: expr.into(),
            org: None,
            action,
        }
    }

    /// Restricts the rule to requests authenticated for `org`.
    pub fn for_org(mut self, org: impl Into<String>) -> Self {
        self.org = Some(org.into());
        self
    }
}

/// What a matching rule does.
// Built once per config, so the size difference between variants does not matter; boxing would
// only make the API clumsier.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
pub enum Action {
    /// Refuse the request.
    Deny(Deny),
    /// Rewrite, tag and send the request on.
    Forward(Forward),
}

impl Action {
    /// Refuse with `status` and `message`.
    pub fn deny(status: u16, message: impl Into<String>) -> Self {
        Action::Deny(Deny {
            status,
            message: message.into(),
        })
    }

    /// Send to `engine`.
    pub fn route(engine: ArcEngine) -> Self {
        Action::Forward(Forward::to(engine))
    }
}

impl fmt::Debug for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Deny(d) => d.fmt(f),
            Action::Forward(fw) => fw.fmt(f),
        }
    }
}

/// A refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deny {
    /// The HTTP status: 4xx or 5xx.
    pub status: u16,
    /// The message the client sees; empty means "request denied by rule `<name>`".
    pub message: String,
}

impl Deny {
    /// A 400 with `message` (a deny never answers with status 0 or 200).
    pub fn new(message: impl Into<String>) -> Self {
        Deny {
            status: 400,
            message: message.into(),
        }
    }
}

/// Send the request on, possibly rewritten, with extra upstream headers.
#[derive(Clone, Default)]
pub struct Forward {
    /// Where to; `None`: the engine's default.
    pub route: Option<ArcEngine>,
    /// Request, response and stream rewrites.
    pub rewrite: RewritesConfig,
    /// Headers for the upstream request (replacing same-named ones set earlier).
    pub set_headers: HeaderMap,
}

impl fmt::Debug for Forward {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Forward")
            .field("route", &self.route.as_ref().map(|_| "<engine>"))
            .field("rewrite", &self.rewrite)
            .field("set_headers", &self.set_headers)
            .finish()
    }
}

impl Forward {
    /// Forward to `engine`.
    pub fn to(engine: ArcEngine) -> Self {
        Forward {
            route: Some(engine),
            ..Forward::default()
        }
    }

    /// Sets the rewrites.
    pub fn rewrite(mut self, rewrite: RewritesConfig) -> Self {
        self.rewrite = rewrite;
        self
    }

    /// Sets the upstream headers.
    pub fn headers(mut self, headers: HeaderMap) -> Self {
        self.set_headers = headers;
        self
    }
}

/// The name of the rule that matched, in the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchedRule(pub Arc<str>);

struct Compiled {
    name: Arc<str>,
    expr: Option<Expr>,
    org: Option<Arc<str>>,
    action: CompiledAction,
    warned: AtomicBool,
}

enum CompiledAction {
    Deny(DenyError),
    Forward {
        route: Option<ArcEngine>,
        rewrites: Option<Arc<Rewrites>>,
        headers: HeaderMap,
    },
}

/// Evaluates rules in order and runs the first match's action; see the [module docs](self).
pub struct RulesEngine {
    rules: Arc<[Compiled]>,
    default: ArcEngine,
    spec: Arc<EnvSpec>,
}

/// Compiled rules waiting for the engine they fall through to: the [`Layer`] form of
/// [`RulesEngine`]. `RulesLayer::new(rules)?.layer(default)` is `RulesEngine::new(rules, default)?`.
#[derive(Clone)]
pub struct RulesLayer {
    rules: Arc<[Compiled]>,
    spec: Arc<EnvSpec>,
}

impl fmt::Debug for RulesLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RulesLayer")
            .field(
                "rules",
                &self.rules.iter().map(|r| &*r.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl RulesLayer {
    /// Compiles `rules`.
    ///
    /// # Errors
    /// As [`RulesEngine::new`].
    pub fn new(rules: Vec<Rule>) -> Result<Self, BuildError> {
        let compiled = compile(rules)?;
        let exprs = compiled.iter().flat_map(|c| {
            let rewrite_exprs = match &c.action {
                CompiledAction::Forward {
                    rewrites: Some(rw), ..
                } => Some(rw.exprs()),
                _ => None,
            };
            c.expr.iter().chain(rewrite_exprs.into_iter().flatten())
        });
        let spec = EnvSpec::new(exprs);
        Ok(RulesLayer {
            rules: compiled.into(),
            spec,
        })
    }

    /// The rules engine over `default` (requests no rule matches go there).
    pub fn engine(&self, default: ArcEngine) -> RulesEngine {
        RulesEngine {
            rules: self.rules.clone(),
            default,
            spec: self.spec.clone(),
        }
    }
}

impl Layer for RulesLayer {
    fn layer(&self, inner: ArcEngine) -> ArcEngine {
        Arc::new(self.engine(inner))
    }
}

impl fmt::Debug for RulesEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RulesEngine")
            .field(
                "rules",
                &self.rules.iter().map(|r| &*r.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl RulesEngine {
    /// Compiles `rules`; requests no rule matches go to `default`.
    ///
    /// # Errors
    /// An empty or duplicate rule name, a bad expression, a deny status outside 400–599, a bad
    /// rewrite, or a reserved header in `set_headers`; each names the rule.
    pub fn new(rules: Vec<Rule>, default: ArcEngine) -> Result<Self, BuildError> {
        Ok(RulesLayer::new(rules)?.engine(default))
    }

    /// The names of the rules, in evaluation order.
    pub fn rule_names(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| &*r.name)
    }

    /// The index of the first rule matching `req` (extracting its variables).
    fn first_match(&self, req: &mut Request) -> Result<(Option<usize>, Env), Error> {
        let env = Env::extract(&self.spec, req)?;
        let org = req.extensions.get::<Identity>().map(|i| i.org.clone());
        for (i, rule) in self.rules.iter().enumerate() {
            if let Some(scope) = &rule.org {
                if org.as_ref() != Some(scope) {
                    continue;
                }
            }
            let hit = match &rule.expr {
                None => true,
                Some(e) => match e.matches(&env) {
                    Ok(b) => b,
                    Err(err) => {
                        log_eval_failure(&rule.warned, &format!("rule `{}`", rule.name), &err);
                        false
                    }
                },
            };
            if hit {
                return Ok((Some(i), env));
            }
        }
        Ok((None, env))
    }

    /// The name of the first rule matching `req`, without running its action (for diagnostics).
    ///
    /// # Errors
    /// A 400 when a rule must read the body and it is not a JSON object.
    pub fn matching_rule(&self, req: &mut Request) -> Result<Option<&str>, Error> {
        Ok(self.first_match(req)?.0.map(|i| &*self.rules[i].name))
    }
}

/// Sets `headers` on the request's [`UpstreamHeaders`]: a name already there is replaced (all its
/// values), other names are kept.
fn set_upstream_headers(req: &mut Request, headers: &HeaderMap) {
    if headers.is_empty() {
        return;
    }
    let target = &mut req.extensions.get_or_insert_default::<UpstreamHeaders>().0;
    for name in headers.keys() {
        target.remove(name);
        for value in headers.get_all(name) {
            target.append(name.clone(), value.clone());
        }
    }
}

/// A validated deny: the parts of the error it answers with.
struct DenyError {
    kind: ErrorKind,
    status: StatusCode,
    message: String,
}

impl DenyError {
    fn to_error(&self) -> Error {
        Error::new(self.kind, self.message.clone())
            .with_status(self.status)
            .with_code("request_denied")
            .with_retryable(false)
    }
}

/// Checks and compiles `rules`, in order.
fn compile(rules: Vec<Rule>) -> Result<Vec<Compiled>, BuildError> {
    let mut compiled: Vec<Compiled> = Vec::with_capacity(rules.len());
    for rule in rules {
        if rule.name.is_empty() {
            return Err(BuildError::new(
                BuildErrorKind::Missing,
                "a rule has an empty name",
            ));
        }
        let here = format!("rule `{}`", rule.name);
        if compiled.iter().any(|c| *c.name == rule.name) {
            return Err(BuildError::new(
                BuildErrorKind::Conflict,
                format!("{here} is defined twice"),
            ));
        }
        let expr = if rule.expr.trim().is_empty() {
            None
        } else {
            Some(Expr::new(&rule.expr).map_err(|e| e.context(&here))?)
        };
        let action = match rule.action {
            Action::Deny(deny) => {
                CompiledAction::Deny(deny_error(&rule.name, deny).map_err(|e| e.context(&here))?)
            }
            Action::Forward(fw) => {
                for name in fw.set_headers.keys() {
                    if is_protected(name) {
                        return Err(BuildError::invalid(format!(
                            "{here}: header `{name}` cannot be set by a rule"
                        )));
                    }
                }
                let rewrites = if fw.rewrite.is_empty() {
                    None
                } else {
                    Some(Arc::new(
                        Rewrites::new(fw.rewrite).map_err(|e| e.context(&here))?,
                    ))
                };
                CompiledAction::Forward {
                    route: fw.route,
                    rewrites,
                    headers: fw.set_headers,
                }
            }
        };
        compiled.push(Compiled {
            name: rule.name.as_str().into(),
            expr,
            org: rule.org.map(|o| o.as_str().into()),
            action,
            warned: AtomicBool::new(false),
        });
    }
    Ok(compiled)
}

/// Validates a deny action.
fn deny_error(rule: &str, deny: Deny) -> Result<DenyError, BuildError> {
    let status = StatusCode::from_u16(deny.status)
        .ok()
        .filter(|s| s.is_client_error() || s.is_server_error())
        .ok_or_else(|| {
            BuildError::invalid(format!(
                "deny status {} is not an error status; use 400–599 (default 400)",
                deny.status
            ))
        })?;
    let message = if deny.message.is_empty() {
        format!("request denied by rule `{rule}`")
    } else {
        deny.message
    };
    let kind = match status.as_u16() {
        401 => ErrorKind::Unauthorized,
        403 => ErrorKind::Forbidden,
        404 => ErrorKind::NotFound,
        413 => ErrorKind::PayloadTooLarge,
        429 => ErrorKind::RateLimited,
        500..=599 => ErrorKind::Internal,
        _ => ErrorKind::BadRequest,
    };
    Ok(DenyError {
        kind,
        status,
        message,
    })
}

#[async_trait]
impl Engine for RulesEngine {
    async fn process(&self, mut req: Request) -> Result<Response, Error> {
        let (hit, env) = self.first_match(&mut req)?;
        let Some(i) = hit else {
            return self.default.process(req).await;
        };
        let rule = &self.rules[i];
        if let Some(record) = req.extensions.get::<octo_core::record::RequestRecord>() {
            record.set_rule(rule.name.clone());
        }
        req.extensions.insert(MatchedRule(rule.name.clone()));
        match &rule.action {
            CompiledAction::Deny(d) => Err(d.to_error()),
            CompiledAction::Forward {
                route,
                rewrites,
                headers,
            } => {
                if let Some(rw) = rewrites {
                    rw.rewrite_request(&mut req, &env)?;
                }
                set_upstream_headers(&mut req, headers);
                let next = route.as_ref().unwrap_or(&self.default);
                let resp = next.process(req).await?;
                Ok(match rewrites {
                    Some(rw) => rw.rewrite_response(resp, Arc::new(env)),
                    None => resp,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests;
