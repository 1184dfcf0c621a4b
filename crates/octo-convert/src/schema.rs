//! JSON Schema ⇄ Gemini's schema subset.
//!
//! Gemini `functionDeclarations[].parameters` takes an OpenAPI-3 subset and rejects the whole request
//! on an unknown keyword (`additionalProperties`, `$schema`, `$ref`, `propertyNames`, …; see
//! `docs/conversion.md`, "Tools"). [`to_gemini`] therefore keeps an allowlist of keywords, resolves local `$ref`s,
//! turns `type: [T, "null"]` into `type: T, nullable: true`, `const` into a one-value `enum`,
//! `oneOf` into `anyOf`, merges `allOf`, drops non-string enums and unsupported `format`s, removes
//! empty `properties` and `required` names that are not properties. [`from_gemini`] lower-cases
//! Gemini's upper-case type names so the schema is plain JSON Schema again.

use serde_json::{Map, Value};

/// Keywords Gemini's `Schema` accepts.
const ALLOWED: [&str; 20] = [
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "items",
    "properties",
    "required",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "minimum",
    "maximum",
    "anyOf",
    "propertyOrdering",
];

/// How deep `$ref`s are followed (recursive schemas are cut here).
const MAX_REF_DEPTH: usize = 8;
/// How deep a schema may nest at all.
const MAX_DEPTH: usize = 64;
/// How many nodes one conversion may produce (bounds the work `$ref` expansion can cause).
const MAX_NODES: usize = 20_000;

/// The schema cleaned for Gemini; `None` when nothing is left to send (an object without
/// properties, which Gemini refuses as `parameters`).
pub(crate) fn to_gemini(schema: &Value) -> Option<Value> {
    let mut budget = MAX_NODES;
    let cleaned = clean(schema, schema, 0, 0, &mut budget);
    let is_empty_object = cleaned.get("type").and_then(Value::as_str) == Some("object")
        && cleaned.get("properties").is_none();
    if is_empty_object || cleaned.as_object().is_some_and(Map::is_empty) {
        return None;
    }
    Some(cleaned)
}

fn clean(node: &Value, root: &Value, ref_depth: usize, depth: usize, budget: &mut usize) -> Value {
    let Some(obj) = node.as_object() else {
        return Value::Object(Map::new());
    };
    if depth > MAX_DEPTH || *budget == 0 {
        return Value::Object(Map::new());
    }
    *budget -= 1;
    if let Some(Value::String(r)) = obj.get("$ref") {
        if ref_depth < MAX_REF_DEPTH {
            if let Some(target) = resolve_ref(root, r) {
                let mut resolved = clean(target, root, ref_depth + 1, depth + 1, budget);
                // Sibling keywords (description, …) next to `$ref` win.
                let siblings = clean(
                    &Value::Object(
                        obj.iter()
                            .filter(|(k, _)| *k != "$ref")
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect(),
                    ),
                    root,
                    ref_depth,
                    depth + 1,
                    budget,
                );
                if let (Some(r), Some(s)) = (resolved.as_object_mut(), siblings.as_object()) {
                    for (k, v) in s {
                        r.insert(k.clone(), v.clone());
                    }
                }
                return resolved;
            }
        }
        tracing::debug!(reference = %r, "unresolvable or recursive $ref replaced by an open schema");
        return Value::Object(Map::new());
    }
    // allOf: merge the parts into this node first.
    let merged;
    let obj = if let Some(Value::Array(parts)) = obj.get("allOf") {
        let mut m: Map<String, Value> = obj
            .iter()
            .filter(|(k, _)| *k != "allOf")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for part in parts {
            let part = match part.get("$ref").and_then(Value::as_str) {
                Some(r) => resolve_ref(root, r).unwrap_or(part),
                None => part,
            };
            let Some(p) = part.as_object() else { continue };
            for (k, v) in p {
                match (k.as_str(), m.get_mut(k)) {
                    ("properties", Some(Value::Object(existing))) => {
                        if let Value::Object(more) = v {
                            existing.extend(more.clone());
                        }
                    }
                    ("required", Some(Value::Array(existing))) => {
                        if let Value::Array(more) = v {
                            existing.extend(more.iter().cloned());
                        }
                    }
                    _ => {
                        m.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        merged = m;
        &merged
    } else {
        obj
    };

    let mut out = Map::new();
    for (key, value) in obj {
        match key.as_str() {
            "type" => match value {
                Value::String(t) => {
                    out.insert("type".into(), Value::String(t.to_ascii_lowercase()));
                }
                Value::Array(types) => {
                    let names: Vec<&str> = types.iter().filter_map(Value::as_str).collect();
                    if names.contains(&"null") {
                        out.insert("nullable".into(), Value::Bool(true));
                    }
                    if let Some(t) = names.iter().find(|t| **t != "null") {
                        out.insert("type".into(), Value::String(t.to_ascii_lowercase()));
                    }
                }
                _ => {}
            },
            "const" => {
                if let Value::String(_) = value {
                    out.insert("enum".into(), Value::Array(vec![value.clone()]));
                }
            }
            "enum" => {
                if let Value::Array(values) = value {
                    if values.iter().all(Value::is_string) {
                        out.insert("enum".into(), value.clone());
                    } else {
                        tracing::debug!("dropping a non-string enum Gemini cannot express");
                    }
                }
            }
            "format" => {
                let ok = matches!(
                    value.as_str(),
                    Some("enum" | "date-time" | "int32" | "int64" | "float" | "double")
                );
                if ok {
                    out.insert("format".into(), value.clone());
                }
            }
            "properties" => {
                if let Value::Object(props) = value {
                    let cleaned: Map<String, Value> = props
                        .iter()
                        .map(|(k, v)| (k.clone(), clean(v, root, ref_depth, depth + 1, budget)))
                        .collect();
                    if !cleaned.is_empty() {
                        out.insert("properties".into(), Value::Object(cleaned));
                    }
                }
            }
            "items" => {
                let item = match value {
                    Value::Array(items) => items.first().unwrap_or(&Value::Null),
                    v => v,
                };
                if item.is_object() {
                    out.insert(
                        "items".into(),
                        clean(item, root, ref_depth, depth + 1, budget),
                    );
                }
            }
            "anyOf" | "oneOf" => {
                if let Value::Array(options) = value {
                    let cleaned: Vec<Value> = options
                        .iter()
                        .filter(|o| o.get("type").and_then(Value::as_str) != Some("null"))
                        .map(|o| clean(o, root, ref_depth, depth + 1, budget))
                        .collect();
                    if options.len() != cleaned.len() {
                        out.insert("nullable".into(), Value::Bool(true));
                    }
                    match cleaned.len() {
                        0 => {}
                        1 => {
                            if let Some(Value::Object(only)) = cleaned.into_iter().next() {
                                for (k, v) in only {
                                    out.entry(k).or_insert(v);
                                }
                            }
                        }
                        _ => {
                            out.insert("anyOf".into(), Value::Array(cleaned));
                        }
                    }
                }
            }
            k if ALLOWED.contains(&k) => {
                out.insert(key.clone(), value.clone());
            }
            _ => {}
        }
    }
    // `required` may only name properties that exist.
    let names: Vec<String> = out
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    if let Some(Value::Array(required)) = out.get_mut("required") {
        required.retain(|r| r.as_str().is_some_and(|r| names.iter().any(|n| n == r)));
        if required.is_empty() {
            out.remove("required");
        }
    } else {
        out.remove("required");
    }
    Value::Object(out)
}

/// `#/$defs/X` or `#/definitions/X` in `root`.
fn resolve_ref<'a>(root: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    if pointer.is_empty() {
        return Some(root);
    }
    root.pointer(pointer)
}

/// Gemini's schema as plain JSON Schema: type names lower-cased.
pub(crate) fn from_gemini(schema: &Value) -> Value {
    match schema {
        Value::Object(obj) => Value::Object(
            obj.iter()
                .map(|(k, v)| {
                    let v = match (k.as_str(), v) {
                        ("type", Value::String(t)) => Value::String(t.to_ascii_lowercase()),
                        ("properties", Value::Object(props)) => Value::Object(
                            props
                                .iter()
                                .map(|(name, s)| (name.clone(), from_gemini(s)))
                                .collect(),
                        ),
                        ("items", s) => from_gemini(s),
                        ("anyOf", Value::Array(options)) => {
                            Value::Array(options.iter().map(from_gemini).collect())
                        }
                        (_, v) => v.clone(),
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rejected_keywords_are_removed() {
        let s = json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "city": {"type": "string", "format": "uri", "default": "x", "examples": ["y"]},
                "n": {"type": ["integer", "null"], "exclusiveMinimum": 0, "enum": [1, 2]},
                "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": true},
                "mode": {"const": "fast"},
                "empty": {"type": "object", "properties": {}, "propertyNames": {"pattern": "x"}}
            },
            "required": ["city", "ghost"]
        });
        assert_eq!(
            to_gemini(&s).unwrap(),
            json!({
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "n": {"type": "integer", "nullable": true},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "mode": {"enum": ["fast"]},
                    "empty": {"type": "object"}
                },
                "required": ["city"]
            })
        );
    }

    #[test]
    fn refs_any_of_and_all_of() {
        let s = json!({
            "type": "object",
            "$defs": {"Loc": {"type": "object", "properties": {"lat": {"type": "number"}}}},
            "properties": {
                "where": {"$ref": "#/$defs/Loc", "description": "place"},
                "either": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
                "maybe": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                "both": {"allOf": [{"properties": {"a": {"type": "string"}}}, {"properties": {"b": {"type": "string"}}, "required": ["b"]}], "type": "object"},
                "loop": {"$ref": "#"}
            }
        });
        let g = to_gemini(&s).unwrap();
        assert_eq!(
            g["properties"]["where"],
            json!({"type": "object", "properties": {"lat": {"type": "number"}}, "description": "place"})
        );
        assert_eq!(
            g["properties"]["either"]["anyOf"],
            json!([{"type": "string"}, {"type": "integer"}])
        );
        assert_eq!(
            g["properties"]["maybe"],
            json!({"type": "string", "nullable": true})
        );
        assert_eq!(g["properties"]["both"]["required"], json!(["b"]));
        assert!(g["properties"]["both"]["properties"]["a"].is_object());
        // A recursive reference is cut at the depth limit instead of looping.
        assert!(g["properties"]["loop"].is_object());
    }

    #[test]
    fn empty_objects_are_not_sent() {
        assert_eq!(
            to_gemini(&json!({"type": "object", "properties": {}})),
            None
        );
        assert_eq!(to_gemini(&json!({})), None);
        assert_eq!(to_gemini(&json!("junk")), None);
    }

    #[test]
    fn gemini_types_are_lower_cased() {
        assert_eq!(
            from_gemini(
                &json!({"type": "OBJECT", "properties": {"a": {"type": "ARRAY", "items": {"type": "STRING"}}}})
            ),
            json!({"type": "object", "properties": {"a": {"type": "array", "items": {"type": "string"}}}})
        );
    }
}
