//! `POST /v1/moderations`: an OpenAI-compatible moderation endpoint that flags text carrying a
//! marker.
//!
//! Each `input` entry (a string, a list of strings, or a list of `{"type": "text", "text"}` parts;
//! image parts are ignored) is one result. An entry is flagged when its text contains
//! `[[flag:CATEGORY]]` (CATEGORY made of `a-z`, `/`, `-` and `_`, e.g. `[[flag:violence]]`,
//! `[[flag:self-harm/intent]]`); every marker's category is set to `true` in `categories` and
//! scored 0.99 in `category_scores`, the other categories are `false` and score 0.0001. The
//! answer has OpenAI's shape: `{"id": "modr-mock-N", "model", "results": [{"flagged",
//! "categories", "category_scores", "category_applied_input_types"}]}`.
//!
//! Only `x-mock-*` headers apply here (`status`, `latency_ms`, `timeout`, `reset`, …), not body
//! tokens: the text being moderated usually carries directives meant for the generation call.

use serde_json::{Map, Value, json};

/// OpenAI's moderation categories (omni-moderation).
pub(crate) const CATEGORIES: [&str; 13] = [
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
];

const MARKER: &str = "[[flag:";

/// The categories marked in `text`, in order of appearance, deduplicated.
pub(crate) fn marked(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(MARKER) {
        rest = &rest[at + MARKER.len()..];
        let Some(end) = rest.find("]]") else { break };
        let cat = &rest[..end];
        if !cat.is_empty()
            && cat.len() <= 64
            && cat
                .bytes()
                .all(|b| b.is_ascii_lowercase() || matches!(b, b'/' | b'-' | b'_'))
            && !out.iter().any(|c| c == cat)
        {
            out.push(cat.to_owned());
        }
    }
    out
}

/// The texts of a moderation request's `input`; `None` when it has none.
fn inputs(body: &Value) -> Option<Vec<String>> {
    match body.get("input")? {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(items) => Some(
            items
                .iter()
                .filter_map(|i| match i {
                    Value::String(s) => Some(s.clone()),
                    Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("text") => {
                        o.get("text").and_then(Value::as_str).map(str::to_owned)
                    }
                    _ => None,
                })
                .collect(),
        ),
        _ => None,
    }
}

/// The answer to a moderation request body; `Err` with a message when it has no usable `input`.
pub(crate) fn answer(body: &Value, id: u64) -> Result<Value, String> {
    let texts = inputs(body).ok_or("`input` must be a string or a list")?;
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("omni-moderation-latest");
    let results: Vec<Value> = texts
        .iter()
        .map(|text| {
            let marked = marked(text);
            let mut categories = Map::new();
            let mut scores = Map::new();
            let mut applied = Map::new();
            for cat in CATEGORIES.iter().copied().map(str::to_owned).chain(
                marked
                    .iter()
                    .filter(|c| !CATEGORIES.contains(&c.as_str()))
                    .cloned(),
            ) {
                let on = marked.contains(&cat);
                categories.insert(cat.clone(), json!(on));
                scores.insert(cat.clone(), json!(if on { 0.99 } else { 0.0001 }));
                applied.insert(cat, json!(["text"]));
            }
            json!({
                "flagged": !marked.is_empty(),
                "categories": categories,
                "category_scores": scores,
                "category_applied_input_types": applied,
            })
        })
        .collect();
    Ok(json!({"id": format!("modr-mock-{id}"), "model": model, "results": results}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_flag_their_categories() {
        assert_eq!(
            marked("a [[flag:violence]] b [[flag:hate]] [[flag:violence]]"),
            ["violence", "hate"]
        );
        assert!(marked("[[flag:]] [[flag:BAD]] [[flag:violence").is_empty());
        let v = answer(&json!({"input": ["fine", "[[flag:self-harm/intent]]"]}), 3).unwrap();
        assert_eq!(v["id"], "modr-mock-3");
        assert_eq!(v["results"][0]["flagged"], false);
        assert_eq!(v["results"][1]["flagged"], true);
        assert_eq!(v["results"][1]["categories"]["self-harm/intent"], true);
        assert_eq!(v["results"][1]["categories"]["violence"], false);
        let parts = answer(
            &json!({"input": [{"type": "text", "text": "[[flag:x-custom]]"}]}),
            1,
        )
        .unwrap();
        assert_eq!(parts["results"][0]["categories"]["x-custom"], true);
        assert!(answer(&json!({"input": 5}), 1).is_err());
    }
}
