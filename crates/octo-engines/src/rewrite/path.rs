//! sjson-style paths into a JSON document: `a.b`, `a.0`, `a.-1` (append), `\.` for a literal dot.

use std::fmt;

use serde_json::{Map, Value};

use octo_core::BuildError;

/// The largest array index a path may name (setting pads the array with `null`s up to it).
const MAX_INDEX: usize = 100_000;

/// A parsed path.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Path {
    source: String,
    segments: Vec<String>,
}

impl fmt::Debug for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.source)
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl Path {
    /// Parses `source`: segments separated by `.`; `\` escapes the next character.
    pub(crate) fn parse(source: &str) -> Result<Path, BuildError> {
        let bad = |why: &str| BuildError::invalid(format!("path `{source}`: {why}"));
        let mut segments = Vec::new();
        let mut cur = String::new();
        let mut chars = source.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => cur.push(chars.next().ok_or_else(|| bad("ends with a lone `\\`"))?),
                '.' => segments.push(std::mem::take(&mut cur)),
                c => cur.push(c),
            }
        }
        segments.push(cur);
        if segments.iter().any(String::is_empty) {
            return Err(bad(
                "has an empty segment (write `\\.` for a dot inside a key)",
            ));
        }
        if segments
            .iter()
            .filter_map(|s| index(s))
            .any(|i| i > MAX_INDEX)
        {
            return Err(bad(&format!(
                "array indexes above {MAX_INDEX} are not allowed"
            )));
        }
        Ok(Path {
            source: source.to_owned(),
            segments,
        })
    }

    /// The key when the path names a top-level key.
    pub(crate) fn top_level(&self) -> Option<&str> {
        match self.segments.as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }

    /// Sets the value at the path, creating what is missing: an array when the next segment is a
    /// number or `-1`, an object otherwise. A scalar in the way is replaced. An array index past
    /// the end pads with `null`; `-1` appends.
    ///
    /// # Errors
    /// When the path names a non-numeric key inside an existing array (the document is unchanged
    /// at that point).
    pub(crate) fn set(&self, root: &mut Value, value: Value) -> Result<(), String> {
        set_in(root, &self.segments, value)
    }

    /// Removes the value at the path; `-1` names an array's last element. A missing path is a no-op.
    /// Returns whether something was removed.
    pub(crate) fn remove(&self, root: &mut Value) -> bool {
        remove_in(root, &self.segments)
    }

    /// Whether the path names an existing value.
    pub(crate) fn exists(&self, root: &Value) -> bool {
        let mut v = root;
        for seg in &self.segments {
            v = match v {
                Value::Object(map) => match map.get(seg) {
                    Some(child) => child,
                    None => return false,
                },
                Value::Array(items) => match array_slot(seg, items.len()) {
                    Some(i) if i < items.len() => &items[i],
                    _ => return false,
                },
                _ => return false,
            };
        }
        true
    }
}

/// A non-negative array index written in decimal.
fn index(seg: &str) -> Option<usize> {
    (!seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()))
        .then(|| seg.parse().ok())
        .flatten()
}

/// The element an existing array's segment names when reading or removing (`-1` = last).
fn array_slot(seg: &str, len: usize) -> Option<usize> {
    if seg == "-1" {
        return len.checked_sub(1);
    }
    index(seg)
}

fn set_in(cur: &mut Value, segs: &[String], value: Value) -> Result<(), String> {
    let Some((seg, rest)) = segs.split_first() else {
        *cur = value;
        return Ok(());
    };
    match cur {
        Value::Object(map) => {
            if rest.is_empty() {
                map.insert(seg.clone(), value);
                return Ok(());
            }
            set_in(map.entry(seg.clone()).or_insert(Value::Null), rest, value)
        }
        Value::Array(items) => {
            let i = if seg == "-1" {
                items.len()
            } else {
                index(seg).ok_or_else(|| format!("`{seg}` is not an index into an array"))?
            };
            if items.len() <= i {
                items.resize(i + 1, Value::Null);
            }
            set_in(&mut items[i], rest, value)
        }
        _ => {
            *cur = if seg == "-1" || index(seg).is_some() {
                Value::Array(Vec::new())
            } else {
                Value::Object(Map::new())
            };
            set_in(cur, segs, value)
        }
    }
}

fn remove_in(cur: &mut Value, segs: &[String]) -> bool {
    let Some((seg, rest)) = segs.split_first() else {
        return false;
    };
    match cur {
        Value::Object(map) if rest.is_empty() => map.remove(seg).is_some(),
        Value::Object(map) => map.get_mut(seg).is_some_and(|c| remove_in(c, rest)),
        Value::Array(items) => match array_slot(seg, items.len()) {
            Some(i) if i < items.len() && rest.is_empty() => {
                items.remove(i);
                true
            }
            Some(i) if i < items.len() => remove_in(&mut items[i], rest),
            _ => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(doc: Value, path: &str, v: Value) -> Value {
        let mut doc = doc;
        Path::parse(path).unwrap().set(&mut doc, v).unwrap();
        doc
    }

    fn remove(doc: Value, path: &str) -> Value {
        let mut doc = doc;
        Path::parse(path).unwrap().remove(&mut doc);
        doc
    }

    #[test]
    fn set_creates_nested_objects_and_arrays() {
        assert_eq!(
            set(
                json!({"stream": true}),
                "stream_options.include_usage",
                json!(true)
            ),
            json!({"stream": true, "stream_options": {"include_usage": true}})
        );
        assert_eq!(set(json!({}), "a.0.b", json!(1)), json!({"a": [{"b": 1}]}));
        assert_eq!(set(json!({}), "a.-1", json!(1)), json!({"a": [1]}));
        assert_eq!(
            set(json!({"a": [1]}), "a.-1", json!(2)),
            json!({"a": [1, 2]})
        );
        assert_eq!(
            set(json!({"a": [1]}), "a.3", json!(4)),
            json!({"a": [1, null, null, 4]})
        );
        assert_eq!(
            set(json!({"a": [1, 2]}), "a.0", json!(9)),
            json!({"a": [9, 2]})
        );
        // Existing objects take numeric keys as keys.
        assert_eq!(
            set(json!({"a": {}}), "a.0", json!(1)),
            json!({"a": {"0": 1}})
        );
        // A scalar in the way is replaced.
        assert_eq!(
            set(json!({"a": 5}), "a.b", json!(1)),
            json!({"a": {"b": 1}})
        );
        // Escaped dots.
        assert_eq!(
            set(json!({}), r"metadata.app\.name", json!("x")),
            json!({"metadata": {"app.name": "x"}})
        );
    }

    #[test]
    fn set_refuses_keys_into_arrays() {
        let mut doc = json!({"messages": []});
        assert!(
            Path::parse("messages.role")
                .unwrap()
                .set(&mut doc, json!(1))
                .is_err()
        );
        assert_eq!(doc, json!({"messages": []}));
    }

    #[test]
    fn remove_semantics() {
        let doc = json!({"a": {"b": 1, "c": 2}, "l": [1, 2, 3]});
        assert_eq!(
            remove(doc.clone(), "a.b"),
            json!({"a": {"c": 2}, "l": [1, 2, 3]})
        );
        assert_eq!(
            remove(doc.clone(), "l.0"),
            json!({"a": {"b": 1, "c": 2}, "l": [2, 3]})
        );
        assert_eq!(
            remove(doc.clone(), "l.-1"),
            json!({"a": {"b": 1, "c": 2}, "l": [1, 2]})
        );
        assert_eq!(remove(doc.clone(), "missing.x"), doc);
        assert_eq!(remove(doc.clone(), "l.9"), doc);
        assert_eq!(
            remove(json!({"a.b": 1, "a": {"b": 2}}), r"a\.b"),
            json!({"a": {"b": 2}})
        );
    }

    #[test]
    fn exists_follows_the_same_rules() {
        let doc = json!({"a": [{"b": null}]});
        assert!(Path::parse("a.0.b").unwrap().exists(&doc));
        assert!(Path::parse("a.-1").unwrap().exists(&doc));
        assert!(!Path::parse("a.1").unwrap().exists(&doc));
        assert!(!Path::parse("a.0.c").unwrap().exists(&doc));
    }

    #[test]
    fn bad_paths() {
        assert!(Path::parse("").is_err());
        assert!(Path::parse("a..b").is_err());
        assert!(Path::parse("a.").is_err());
        assert!(Path::parse("a\\").is_err());
        assert!(Path::parse("a.99999999").is_err());
        assert_eq!(Path::parse("model").unwrap().top_level(), Some("model"));
        assert_eq!(Path::parse(r"a\.b").unwrap().top_level(), Some("a.b"));
        assert_eq!(Path::parse("a.b").unwrap().top_level(), None);
    }
}
