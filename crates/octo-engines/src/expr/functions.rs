//! The string functions evalexpr 11 lacks: substring, prefix, suffix and regex search.

use evalexpr::{EmptyContextWithBuiltinFunctions, EvalexprError, Node, Operator, Value};
use regex::{Regex, RegexBuilder};

use super::Env;

/// Names of the functions this module adds.
const OURS: [&str; 7] = [
    "str_contains",
    "contains",
    "starts_with",
    "startsWith",
    "ends_with",
    "endsWith",
    "matches",
];

/// Listed in "unknown function" errors.
pub(crate) const KNOWN_HINT: &str = "str_contains, contains, starts_with, ends_with, matches, \
     if, len, min, max, floor, round, ceil, typeof, contains_any, str::to_lowercase, \
     str::to_uppercase, str::trim, str::from, str::substring, math::*";

/// The largest compiled regex accepted (bytes of automaton), so a pattern cannot eat memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Whether `name` is one of ours or an evalexpr builtin.
pub(crate) fn is_known(name: &str) -> bool {
    if OURS.contains(&name) {
        return true;
    }
    // evalexpr has no public list of builtins: call it with a dummy argument and see whether the
    // name resolved (a wrong argument is a different error). The name is a single token already.
    !matches!(
        evalexpr::eval_with_context(&format!("{name}(())"), &EmptyContextWithBuiltinFunctions),
        Err(EvalexprError::FunctionIdentifierNotFound(_))
    )
}

/// Compiles a pattern with the size limit.
pub(crate) fn compile_regex(pattern: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
}

/// The constant string patterns passed as the second argument of `matches(…)` in `node`.
pub(crate) fn constant_patterns(node: &Node) -> Vec<String> {
    let mut out = Vec::new();
    for n in node.iter() {
        if !matches!(n.operator(), Operator::FunctionIdentifier { identifier } if identifier == "matches")
        {
            continue;
        }
        // A call's single child is its argument: a tuple node for two arguments.
        let Some(mut arg) = n.children().first() else {
            continue;
        };
        // Parentheses are a root node around the tuple.
        while matches!(arg.operator(), Operator::RootNode) && arg.children().len() == 1 {
            arg = &arg.children()[0];
        }
        if !matches!(arg.operator(), Operator::Tuple) {
            continue;
        }
        if let Some(mut pattern) = arg.children().get(1) {
            while matches!(pattern.operator(), Operator::RootNode) && pattern.children().len() == 1
            {
                pattern = &pattern.children()[0];
            }
            if let Operator::Const {
                value: Value::String(s),
            } = pattern.operator()
            {
                out.push(s.clone());
            }
        }
    }
    out
}

/// Calls one of our functions; `FunctionIdentifierNotFound` hands the call to evalexpr's builtins.
pub(crate) fn call(env: &Env, name: &str, arg: &Value) -> Result<Value, EvalexprError> {
    let op: fn(&str, &str) -> bool = match name {
        "str_contains" => |s, sub| s.contains(sub),
        "contains" => {
            // Keep the builtin tuple meaning; strings (and empty) get substring search.
            match arg {
                Value::Tuple(args)
                    if args.len() == 2 && matches!(args[0], Value::String(_) | Value::Empty) =>
                {
                    |s, sub| s.contains(sub)
                }
                _ => return Err(EvalexprError::FunctionIdentifierNotFound(name.to_owned())),
            }
        }
        "starts_with" | "startsWith" => |s, p| s.starts_with(p),
        "ends_with" | "endsWith" => |s, p| s.ends_with(p),
        "matches" => {
            let args = arg.as_fixed_len_tuple(2)?;
            let subject = text(&args[0])?;
            let pattern = text(&args[1])?;
            let found = match env.regex(&pattern) {
                Some(re) => re.is_match(&subject),
                None => compile_regex(&pattern)
                    .map_err(|e| {
                        EvalexprError::CustomMessage(format!("bad regex {pattern:?}: {e}"))
                    })?
                    .is_match(&subject),
            };
            return Ok(Value::Boolean(found));
        }
        _ => return Err(EvalexprError::FunctionIdentifierNotFound(name.to_owned())),
    };
    let args = arg.as_fixed_len_tuple(2)?;
    Ok(Value::Boolean(op(&text(&args[0])?, &text(&args[1])?)))
}

/// A string argument: empty reads as `""`, numbers and booleans as their text.
fn text(v: &Value) -> Result<std::borrow::Cow<'_, str>, EvalexprError> {
    use std::borrow::Cow;
    Ok(match v {
        Value::String(s) => Cow::Borrowed(s.as_str()),
        Value::Empty => Cow::Borrowed(""),
        Value::Int(i) => Cow::Owned(i.to_string()),
        Value::Float(f) => Cow::Owned(f.to_string()),
        Value::Boolean(b) => Cow::Owned(b.to_string()),
        Value::Tuple(_) => return Err(EvalexprError::expected_string(v.clone())),
    })
}
