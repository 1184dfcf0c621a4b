//! The expression language of rules (`match`) and rewrites (`set_keys_by_expr`).
//!
//! Expressions are [evalexpr] 11.3.1 (pinned: later releases are AGPL), compiled once when an
//! engine is built. The language: `== != < > <= >= && || !`, `+ - * / % ^`, string literals in
//! **double quotes**, integers, floats, `true`/`false`, `()` for "empty", tuples `(a, b)` and the
//! builtins `if(cond, a, b)`, `len`, `min`, `max`, `floor`, `round`, `ceil`, `typeof`,
//! `contains(tuple, v)`, `str::to_lowercase`, `str::to_uppercase`, `str::trim`, `str::from`,
//! `str::substring`, `math::*`. There is no `?:` (write `if(c, a, b)`), no `[i]` indexing (write
//! `messages.0.role`) and no short-circuit: every operand is evaluated, which is why a missing
//! variable reads as empty instead of failing.
//!
//! # Variables
//!
//! | identifier | value |
//! |---|---|
//! | `model`, `RawReq.model` | the requested model: from the path for Gemini, else the body's `model` |
//! | `stream`, `RawReq.stream` | whether a stream was asked for; **`false` when absent** |
//! | `max_tokens`, `temperature`, … | any top-level body field by name |
//! | `metadata.user_id`, `messages.0.role` | nested body fields by dotted path (array index = number) |
//! | `RawReq.<path>` | the same body path, spelled out: the way to reach a body field named like a namespace below (`RawReq.header`) |
//! | `header.x_team` | the client's request header `x-team`: lowercase, `_` stands for `-` (evalexpr reads `-` as minus); several values are joined with `, `. Behind the auth engine, the credential headers read as empty (it removes them) |
//! | `auth.org`, `auth.user` | the org and key name the auth engine found; empty when anonymous |
//! | `promptTextLen` | total characters (Unicode scalar values) of the text of every message |
//! | `prefix<N>`, `suffix<N>` | FNV-1a-32, as 8 lowercase hex digits, of the model followed by the first / last *N* characters of the first message's trimmed text (`prefix20`, `suffix20`, any *N* from 1 to 100000) |
//! | `Features.<name>` | the same features, under one namespace (`Features.prefix20`) |
//!
//! A request without a body (zero bytes or only whitespace, e.g. a `GET`) reads every body field
//! as missing; a body that must be read and is not a JSON object is a 400.
//!
//! JSON values become: string → String, integer → Int, other number → Float, boolean → Boolean,
//! array → Tuple (elements converted the same way), object → String holding its compact JSON text,
//! `null` → empty.
//!
//! **A missing field reads as empty `()`**, never as an error: `max_tokens == ()` tests absence and
//! `str_contains(metadata.tag, "x")` is `false` when `metadata` is absent. Operators that need a
//! number still fail on empty (`max_tokens > 1000` with no `max_tokens`): a rule whose expression
//! fails to evaluate, or yields something other than a boolean, does not match (logged once per
//! rule at warn level, then at debug); a `set_keys_by_expr` entry that fails is skipped.
//!
//! Message text, for the features, is read per protocol: OpenAI Chat and Anthropic `messages[]`
//! (`content` as a string, or the `text` of its text parts), OpenAI Responses `input` (a string, or
//! items with `content`), Gemini `contents[].parts[].text`. Text parts of one message are
//! concatenated without a separator. System prompts outside the message list (Anthropic `system`,
//! Gemini `systemInstruction`, Responses `instructions`) are not messages.
//!
//! # Functions added to evalexpr
//!
//! | function | meaning |
//! |---|---|
//! | `str_contains(s, sub)`, `contains(s, sub)` | substring search (`contains` on a tuple keeps the builtin meaning) |
//! | `starts_with(s, p)`, `startsWith(s, p)` | prefix test |
//! | `ends_with(s, p)`, `endsWith(s, p)` | suffix test |
//! | `matches(s, re)` | regular expression search (unanchored; Rust `regex` syntax); a constant pattern is compiled once, when the engine is built, and an invalid one is a build error |
//!
//! These functions read an empty value as `""`, and numbers and booleans as their text.
//!
//! # Only what is read is extracted
//!
//! Engines list the identifiers their expressions read when they are built. Per request, headers
//! and identity cost nothing; top-level body fields are read with one borrowed scan of the body that
//! skips every other value (no document tree is built); nested paths and the message-text features
//! parse the body once (the parse is cached in the [`Body`](octo_core::Body), so later engines reuse it).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use octo_core::{Protocol, Body, Request};
//! use octo_engines::expr::{Env, EnvSpec, Expr};
//!
//! let rule = Expr::new(r#"stream == true && starts_with(model, "gpt-") && max_tokens > 1000"#).unwrap();
//! let spec = EnvSpec::new([&rule]);
//! let mut req = Request::post(Protocol::OpenAiChat, "/v1/chat/completions",
//!     Body::from_static(br#"{"model":"gpt-4o","stream":true,"max_tokens":4096,"messages":[]}"#));
//! let env = Env::extract(&spec, &mut req).unwrap();
//! assert!(rule.matches(&env).unwrap());
//! assert!(!req.body.is_parsed()); // top-level fields only: no document tree was built
//! # }
//! ```
//!
//! [evalexpr]: https://docs.rs/evalexpr/11.3.1

mod env;
mod features;
mod functions;
mod vars;

use std::fmt;

use evalexpr::{EvalexprError, Node, Value};
use regex::Regex;

pub use self::env::{Env, EnvSpec};

use octo_core::BuildError;

/// A compiled expression: parsed and checked once, evaluated per request against an [`Env`].
#[derive(Clone)]
pub struct Expr {
    source: String,
    node: Node,
    /// Identifiers the expression reads, deduplicated, in first-seen order.
    reads: Vec<String>,
    /// Constant regex patterns given to `matches`, compiled.
    regexes: Vec<(String, Regex)>,
}

impl fmt::Debug for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Expr").field(&self.source).finish()
    }
}

impl Expr {
    /// Compiles `source`.
    ///
    /// # Errors
    /// A [`BuildError`] saying why: a syntax error, an assignment (expressions cannot change
    /// anything), an unknown function or variable namespace, or an invalid constant regex.
    pub fn new(source: &str) -> Result<Expr, BuildError> {
        let invalid =
            |why: String| BuildError::invalid(format!("invalid expression `{source}`: {why}"));
        if source.trim().is_empty() {
            return Err(invalid("it is empty".into()));
        }
        let node = evalexpr::build_operator_tree(source).map_err(|e| invalid(e.to_string()))?;
        check_shape(&node).map_err(invalid)?;
        for name in node.iter_function_identifiers() {
            if !functions::is_known(name) {
                let hint = if source.contains('?') {
                    " (there is no `c ? a : b`; write `if(c, a, b)`)"
                } else {
                    ""
                };
                return Err(invalid(format!(
                    "unknown function `{name}`{}{hint}; available: {}",
                    position(source, name),
                    functions::KNOWN_HINT
                )));
            }
        }
        let mut reads: Vec<String> = Vec::new();
        for name in node.iter_read_variable_identifiers() {
            if reads.iter().any(|r| r == name) {
                continue;
            }
            check_identifier(name)
                .and_then(|()| vars::classify(name).map(drop))
                .map_err(|why| invalid(format!("{why}{}", position(source, name))))?;
            reads.push(name.to_owned());
        }
        let regexes = functions::constant_patterns(&node)
            .into_iter()
            .map(|pattern| {
                functions::compile_regex(&pattern)
                    .map(|re| (pattern.clone(), re))
                    .map_err(|e| invalid(format!("bad regex {pattern:?} in `matches`: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Expr {
            source: source.to_owned(),
            node,
            reads,
            regexes,
        })
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The identifiers the expression reads.
    pub fn reads(&self) -> impl Iterator<Item = &str> {
        self.reads.iter().map(String::as_str)
    }

    /// Evaluates the expression.
    ///
    /// # Errors
    /// An evalexpr error: a type error (`() > 1`), a wrong argument count, a bad dynamic regex.
    /// A missing variable is never an error (it reads as empty).
    pub fn eval(&self, env: &Env) -> Result<Value, EvalexprError> {
        self.node.eval_with_context(env)
    }

    /// Evaluates the expression as a condition.
    ///
    /// # Errors
    /// As [`Expr::eval`], and when the result is not a boolean.
    pub fn matches(&self, env: &Env) -> Result<bool, EvalexprError> {
        match self.eval(env)? {
            Value::Boolean(b) => Ok(b),
            other => Err(EvalexprError::expected_boolean(other)),
        }
    }
}

/// Refuses trees evalexpr builds but cannot evaluate: operators missing operands (`x ==`) and
/// assignments (`x = 1`, and `a === b`, which evalexpr reads as `(a ==) = b`).
fn check_shape(node: &Node) -> Result<(), String> {
    use evalexpr::Operator as Op;
    let op = node.operator();
    let n = node.children().len();
    let ok = match op {
        Op::RootNode => n <= 1,
        Op::Add
        | Op::Sub
        | Op::Mul
        | Op::Div
        | Op::Mod
        | Op::Exp
        | Op::Eq
        | Op::Neq
        | Op::Gt
        | Op::Lt
        | Op::Geq
        | Op::Leq
        | Op::And
        | Op::Or => n == 2,
        Op::Neg | Op::Not | Op::FunctionIdentifier { .. } => n == 1,
        Op::Tuple | Op::Chain => n >= 2,
        Op::Const { .. } | Op::VariableIdentifierRead { .. } => n == 0,
        Op::Assign
        | Op::AddAssign
        | Op::SubAssign
        | Op::MulAssign
        | Op::DivAssign
        | Op::ModAssign
        | Op::ExpAssign
        | Op::AndAssign
        | Op::OrAssign
        | Op::VariableIdentifierWrite { .. } => {
            return Err(
                "it contains an assignment; expressions only read (compare with `==`)".into(),
            );
        }
    };
    if !ok {
        return Err(format!("operator `{op}` is missing an operand"));
    }
    node.children().iter().try_for_each(check_shape)
}

/// Variable names are letters, digits, `_` and `.`; anything else is a sign of another language.
fn check_identifier(name: &str) -> Result<(), String> {
    if name.starts_with('\'') {
        return Err(format!("`{name}`: strings are written in double quotes"));
    }
    if name.contains('[') {
        return Err(format!(
            "`{name}`: there is no `[i]` indexing; write a dotted path such as `messages.0.role`"
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_alphanumeric() || c == '_' || c == '.')
    {
        return Err(format!(
            "`{name}` is not a variable name (letters, digits, `_` and `.` only)"
        ));
    }
    Ok(())
}

/// ` at byte N` for the first occurrence of `needle` in `source`, or nothing.
fn position(source: &str, needle: &str) -> String {
    source
        .find(needle)
        .map(|at| format!(" (at byte {at})"))
        .unwrap_or_default()
}

/// Converts an evalexpr result to JSON; `None` for empty (the key is skipped) and non-finite floats.
pub(crate) fn value_to_json(value: &Value) -> Option<serde_json::Value> {
    Some(match value {
        Value::Empty => return None,
        Value::String(s) => serde_json::Value::String(s.clone()),
        Value::Int(i) => serde_json::Value::from(*i),
        Value::Float(f) => serde_json::Value::Number(serde_json::Number::from_f64(*f)?),
        Value::Boolean(b) => serde_json::Value::Bool(*b),
        Value::Tuple(items) => serde_json::Value::Array(
            items
                .iter()
                .map(|v| value_to_json(v).unwrap_or(serde_json::Value::Null))
                .collect(),
        ),
    })
}

/// Logs an evaluation failure: at warn level the first time for `what`, at debug afterwards, with
/// the error text cut short (it can quote request content).
pub(crate) fn log_eval_failure(
    once: &std::sync::atomic::AtomicBool,
    what: &str,
    e: &EvalexprError,
) {
    let mut text = e.to_string();
    if text.len() > 200 {
        let mut cut = 200;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    if once.swap(true, std::sync::atomic::Ordering::Relaxed) {
        tracing::debug!(target: "octollm::expr", "{what} could not be evaluated: {text}");
    } else {
        tracing::warn!(
            target: "octollm::expr",
            "{what} could not be evaluated (further failures are logged at debug level): {text}"
        );
    }
}

#[cfg(test)]
mod tests;
