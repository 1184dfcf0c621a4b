//! Per-request variable values: which to extract ([`EnvSpec`]) and the extracted set ([`Env`]).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use evalexpr::{Context, EvalexprError, EvalexprResult, Value};
use octo_core::{Body, Error, Request, RouteParams};
use regex::Regex;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::Expr;
use super::features::{message_texts, prefix_hash, suffix_hash};
use super::functions;
use super::vars::{Source, classify};
use crate::auth::Identity;

static EMPTY: Value = Value::Empty;

/// The variables a set of expressions reads, decided once when an engine is built.
///
/// Build it from every expression an engine evaluates, then call [`Env::extract`] per request.
#[derive(Debug, Default)]
pub struct EnvSpec {
    vars: Vec<(String, Source)>,
    index: HashMap<String, usize>,
    /// Top-level body keys to scan for (when no full parse is needed).
    top_level: Vec<String>,
    /// Whether some variable needs a full parse (nested path or message text).
    full_parse: bool,
    regexes: HashMap<String, Regex>,
}

impl EnvSpec {
    /// The variables read by `exprs`.
    pub fn new<'a>(exprs: impl IntoIterator<Item = &'a Expr>) -> Arc<EnvSpec> {
        let mut spec = EnvSpec::default();
        for expr in exprs {
            for name in &expr.reads {
                if spec.index.contains_key(name) {
                    continue;
                }
                // Expr::new has classified every identifier already.
                let Ok(source) = classify(name) else {
                    continue;
                };
                match &source {
                    Source::Body(path) if path.len() > 1 => spec.full_parse = true,
                    Source::Body(path) => push_unique(&mut spec.top_level, &path[0]),
                    s if s.needs_text() => spec.full_parse = true,
                    _ => {}
                }
                spec.index.insert(name.clone(), spec.vars.len());
                spec.vars.push((name.clone(), source));
            }
            for (pattern, re) in &expr.regexes {
                spec.regexes.insert(pattern.clone(), re.clone());
            }
        }
        for key in ["model", "stream"] {
            if spec.vars.iter().any(|(_, s)| is_scalar(s, key)) {
                push_unique(&mut spec.top_level, key);
            }
        }
        Arc::new(spec)
    }

    /// Whether no variable is read (extraction is free).
    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }

    /// Whether extraction reads the body.
    pub fn reads_body(&self) -> bool {
        self.full_parse || !self.top_level.is_empty()
    }

    /// Whether extraction parses the whole body (nested paths or message-text features).
    pub fn parses_body(&self) -> bool {
        self.full_parse
    }
}

fn push_unique(list: &mut Vec<String>, key: &str) {
    if !list.iter().any(|k| k == key) {
        list.push(key.to_owned());
    }
}

fn is_scalar(source: &Source, key: &str) -> bool {
    match source {
        Source::Model => key == "model",
        Source::Stream => key == "stream",
        // The hashes include the model.
        Source::Prefix(_) | Source::Suffix(_) => key == "model",
        _ => false,
    }
}

/// The values of one request's variables; the evalexpr context expressions are evaluated in.
///
/// Identifiers the [`EnvSpec`] does not know read as empty, like missing fields.
#[derive(Clone)]
pub struct Env {
    spec: Arc<EnvSpec>,
    values: Vec<Value>,
}

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values can hold request content: print names only.
        f.debug_struct("Env")
            .field(
                "vars",
                &self.spec.vars.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Env {
    /// An environment where every variable reads as empty.
    pub fn empty() -> Env {
        Env {
            spec: Arc::new(EnvSpec::default()),
            values: Vec::new(),
        }
    }

    /// Extracts the variables `spec` lists from `req`.
    ///
    /// Reads the body only when a variable needs it: a borrowed scan for top-level fields, one
    /// (cached) full parse for nested paths and message-text features.
    ///
    /// # Errors
    /// A 400 when the body must be read and is not a JSON object.
    pub fn extract(spec: &Arc<EnvSpec>, req: &mut Request) -> Result<Env, Error> {
        let mut values = Vec::with_capacity(spec.vars.len());
        if spec.is_empty() {
            return Ok(Env {
                spec: spec.clone(),
                values,
            });
        }
        let body = BodyView::read(spec, &mut req.body, &req.route)?;
        let identity = req.extensions.get::<Identity>();
        let route_model = req.route.model.as_deref();
        let model = || -> Value {
            match route_model {
                Some(m) => Value::String(m.to_owned()),
                None => body.top("model"),
            }
        };
        let model_text = || match model() {
            Value::String(s) => s,
            _ => String::new(),
        };
        let texts = spec
            .vars
            .iter()
            .any(|(_, s)| s.needs_text())
            .then(|| body.tree().map(message_texts).unwrap_or_default());
        for (_, source) in &spec.vars {
            let v = match source {
                Source::Model => model(),
                Source::Stream => match req.route.stream {
                    Some(s) => Value::Boolean(s),
                    None => match body.top("stream") {
                        b @ Value::Boolean(_) => b,
                        Value::Empty => Value::Boolean(false),
                        other => other,
                    },
                },
                Source::Body(path) => body.path(path),
                Source::Header(name) => header_value(&req.headers, name),
                Source::Org => identity.map_or(Value::String(String::new()), |i| {
                    Value::String(i.org.to_string())
                }),
                Source::User => identity.map_or(Value::String(String::new()), |i| {
                    Value::String(i.user.to_string())
                }),
                Source::PromptTextLen => {
                    let n = texts.as_ref().map_or(0, |t| t.total_chars);
                    Value::Int(i64::try_from(n).unwrap_or(i64::MAX))
                }
                Source::Prefix(n) => match texts.as_ref().and_then(|t| t.first.as_deref()) {
                    Some(text) => Value::String(prefix_hash(&model_text(), text, *n)),
                    None => Value::Empty,
                },
                Source::Suffix(n) => match texts.as_ref().and_then(|t| t.first.as_deref()) {
                    Some(text) => Value::String(suffix_hash(&model_text(), text, *n)),
                    None => Value::Empty,
                },
            };
            values.push(v);
        }
        Ok(Env {
            spec: spec.clone(),
            values,
        })
    }

    /// The value of `identifier` (empty when unknown or missing).
    pub fn get(&self, identifier: &str) -> &Value {
        self.spec
            .index
            .get(identifier)
            .and_then(|&i| self.values.get(i))
            .unwrap_or(&EMPTY)
    }

    /// A precompiled regex for a constant `matches` pattern.
    pub(crate) fn regex(&self, pattern: &str) -> Option<&Regex> {
        self.spec.regexes.get(pattern)
    }
}

impl Context for Env {
    fn get_value(&self, identifier: &str) -> Option<&Value> {
        Some(self.get(identifier))
    }

    fn call_function(&self, identifier: &str, argument: &Value) -> EvalexprResult<Value> {
        functions::call(self, identifier, argument)
    }

    fn are_builtin_functions_disabled(&self) -> bool {
        false
    }

    fn set_builtin_functions_disabled(&mut self, disabled: bool) -> EvalexprResult<()> {
        if disabled {
            Err(EvalexprError::BuiltinFunctionsCannotBeDisabled)
        } else {
            Ok(())
        }
    }
}

fn header_value(headers: &http::HeaderMap, name: &http::HeaderName) -> Value {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Value::Empty;
    };
    let mut s = String::from_utf8_lossy(first.as_bytes()).into_owned();
    for v in values {
        s.push_str(", ");
        s.push_str(&String::from_utf8_lossy(v.as_bytes()));
    }
    Value::String(s)
}

/// The body as the variables need it: nothing, scanned top-level fields, or the parsed tree.
enum BodyView<'a> {
    None,
    Top(Vec<(usize, Value)>, &'a EnvSpec),
    Tree(&'a serde_json::Value),
}

impl<'a> BodyView<'a> {
    fn read(
        spec: &'a EnvSpec,
        body: &'a mut Body,
        route: &RouteParams,
    ) -> Result<BodyView<'a>, Error> {
        let mut wanted: Vec<&str> = spec.top_level.iter().map(String::as_str).collect();
        // Gemini carries these in the path; no need to read the body for them.
        if route.model.is_some() {
            wanted.retain(|k| *k != "model");
        }
        if route.stream.is_some() {
            wanted.retain(|k| *k != "stream");
        }
        // No fields wanted, or no body at all (a `GET`): every field reads as missing.
        let blank = body
            .known_len()
            .is_some_and(|_| body.to_bytes().iter().all(u8::is_ascii_whitespace));
        if (!spec.full_parse && wanted.is_empty()) || blank {
            return Ok(BodyView::None);
        }
        if spec.full_parse || body.is_parsed() {
            return Ok(BodyView::Tree(body.json()?));
        }
        let bytes = body.to_bytes();
        let found = scan_top_level(&bytes, &spec.top_level).map_err(|e| invalid_json(&e))?;
        Ok(BodyView::Top(found, spec))
    }

    fn tree(&self) -> Option<&serde_json::Value> {
        match self {
            BodyView::Tree(v) => Some(v),
            _ => None,
        }
    }

    /// A top-level field.
    fn top(&self, key: &str) -> Value {
        match self {
            BodyView::None => Value::Empty,
            BodyView::Top(found, spec) => spec
                .top_level
                .iter()
                .position(|k| k == key)
                .and_then(|i| found.iter().find(|(j, _)| *j == i))
                .map_or(Value::Empty, |(_, v)| v.clone()),
            BodyView::Tree(v) => v.get(key).map_or(Value::Empty, json_to_value),
        }
    }

    fn path(&self, path: &[String]) -> Value {
        match (self, path) {
            (BodyView::Tree(v), _) => lookup(v, path).map_or(Value::Empty, json_to_value),
            (_, [key]) => self.top(key),
            _ => Value::Empty,
        }
    }
}

/// Follows a dotted path: object keys, and array indexes by number.
fn lookup<'v>(mut v: &'v serde_json::Value, path: &[String]) -> Option<&'v serde_json::Value> {
    for seg in path {
        v = match v {
            serde_json::Value::Object(map) => map.get(seg)?,
            serde_json::Value::Array(items) => items.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(v)
}

/// JSON → evalexpr; objects become their compact JSON text.
pub(crate) fn json_to_value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Empty,
        serde_json::Value::Bool(b) => Value::Boolean(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(items) => Value::Tuple(items.iter().map(json_to_value).collect()),
        serde_json::Value::Object(_) => Value::String(v.to_string()),
    }
}

/// A raw top-level value → evalexpr, parsing only that value.
fn raw_to_value(raw: &RawValue) -> Value {
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'{') => {
            // Compact form, like a parsed object's.
            serde_json::from_str::<serde_json::Value>(text)
                .map_or(Value::Empty, |v| Value::String(v.to_string()))
        }
        _ => serde_json::from_str::<serde_json::Value>(text)
            .map_or(Value::Empty, |v| json_to_value(&v)),
    }
}

fn invalid_json(e: &serde_json::Error) -> Error {
    let what = match e.classify() {
        serde_json::error::Category::Data => "request body must be a JSON object",
        _ => "request body is not valid JSON",
    };
    Error::bad_request(format!("{what}: {e}")).with_code("invalid_json")
}

/// One pass over a JSON object: the raw values of `wanted` keys (by index; the last duplicate
/// wins), skipping every other value without allocating it. The whole document is validated.
fn scan_top_level(
    bytes: &[u8],
    wanted: &[String],
) -> Result<Vec<(usize, Value)>, serde_json::Error> {
    struct KeyIndex<'w>(&'w [String]);
    impl<'de> DeserializeSeed<'de> for KeyIndex<'_> {
        type Value = Option<usize>;
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
            d.deserialize_str(self)
        }
    }
    impl Visitor<'_> for KeyIndex<'_> {
        type Value = Option<usize>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object key")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<usize>, E> {
            Ok(self.0.iter().position(|k| k == v))
        }
    }
    struct Scan<'w>(&'w [String]);
    impl<'de> Visitor<'de> for Scan<'_> {
        type Value = Vec<(usize, &'de RawValue)>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut found: Vec<(usize, &'de RawValue)> = Vec::new();
            while let Some(key) = map.next_key_seed(KeyIndex(self.0))? {
                match key {
                    Some(i) => {
                        let raw = map.next_value::<&'de RawValue>()?;
                        found.retain(|(j, _)| *j != i);
                        found.push((i, raw));
                    }
                    None => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(found)
        }
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let found = de::Deserializer::deserialize_map(&mut de, Scan(wanted))?;
    de.end()?;
    Ok(found
        .into_iter()
        .map(|(i, raw)| (i, raw_to_value(raw)))
        .collect())
}
