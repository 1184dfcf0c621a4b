//! Reading a config: the file, `${ENV}` interpolation, typed deserialization, validation.
//!
//! Every problem found is reported at once, each with its key path: deserialization errors are
//! collected one by one (the offending key is set aside and the rest read again), then the
//! cross-field checks of [`validate`](super::validate) run on what could be read.

use std::fmt;
use std::path::Path;

use serde_path_to_error::Segment;
use serde_yaml_ng::Value;

use super::interpolate::interpolate;
use super::schema::Config;
use super::validate::validate;

/// What went wrong loading a config: every problem found, each with its key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (or a label for an in-memory config).
    pub source: String,
    /// `(key path, message with the fix)` pairs.
    pub problems: Vec<(String, String)>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid config {}:", self.source)?;
        for (path, msg) in &self.problems {
            if path.is_empty() {
                write!(f, "\n  - {msg}")?;
            } else {
                write!(f, "\n  - at `{path}`: {msg}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    /// One problem at `path` in `source`.
    pub fn one(source: &str, path: impl Into<String>, msg: impl Into<String>) -> Self {
        ConfigError {
            source: source.to_owned(),
            problems: vec![(path.into(), msg.into())],
        }
    }
}

/// Reads and validates the config at `path`, interpolating from the process environment.
///
/// # Errors
/// A [`ConfigError`] naming the file, the key path and the fix.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let source = path.display().to_string();
    from_document(load_document(path)?, &source)
}

/// Reads the file at `path` as a YAML document with `${ENV}` interpolated from the process
/// environment, not yet typed (the control plane merges admin API objects into it, then types
/// and validates the whole with [`from_document`]).
///
/// # Errors
/// A [`ConfigError`] when the file cannot be read, is not YAML, or names an unset variable.
pub fn load_document(path: &Path) -> Result<Value, ConfigError> {
    let source = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::one(
            &source,
            "",
            format!("cannot read the file: {e}; check the path given to --config"),
        )
    })?;
    document(&text, &source, &|name| std::env::var(name).ok())
}

/// Parses and validates config `text` (labelled `source` in errors) with `env` for `${VAR}`.
///
/// # Errors
/// A [`ConfigError`] naming the source, the key path and the fix.
pub fn parse(
    text: &str,
    source: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    from_document(document(text, source, env)?, source)
}

/// Parses YAML `text` into a document (a mapping; an empty file is an empty one) and
/// interpolates `${VAR}` in its string values with `env`.
///
/// # Errors
/// A [`ConfigError`] for invalid YAML or an unset variable, with its key path.
pub fn document(
    text: &str,
    source: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Value, ConfigError> {
    let mut doc: Value = serde_yaml_ng::from_str(text)
        .map_err(|e| ConfigError::one(source, "", format!("not valid YAML: {e}")))?;
    if doc.is_null() {
        doc = Value::Mapping(Default::default());
    }
    let mut problems = Vec::new();
    interpolate_tree(&mut doc, &mut String::new(), env, &mut problems);
    if problems.is_empty() {
        Ok(doc)
    } else {
        Err(ConfigError {
            source: source.to_owned(),
            problems,
        })
    }
}

/// Types and validates a document (already interpolated): every problem with its key path, the
/// same checks whether the document came from a file or merges admin API objects.
///
/// # Errors
/// A [`ConfigError`] naming `source`, each key path and the fix.
pub fn from_document(doc: Value, source: &str) -> Result<Config, ConfigError> {
    let fail = |problems| ConfigError {
        source: source.to_owned(),
        problems,
    };
    let mut problems = Vec::new();
    let config = deserialize(doc, &mut problems);
    let Some(config) = config else {
        return Err(fail(problems));
    };
    // A key that failed to deserialize was set aside: what validation says about it again (an
    // absent protocol list, say) adds nothing.
    let reported: Vec<String> = problems.iter().map(|(p, _)| p.clone()).collect();
    problems.extend(
        validate(&config)
            .into_iter()
            .filter(|(p, _)| !reported.contains(p)),
    );
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(fail(problems))
    }
}

/// Most deserialization problems reported for one file.
const MAX_PROBLEMS: usize = 32;

/// Deserializes `doc`, collecting problems: after each error the offending key is removed and the
/// rest read again, so one bad value does not hide the next. `None` when what is left still cannot
/// be read (a required key is missing, a value is of the wrong shape).
fn deserialize(mut doc: Value, problems: &mut Vec<(String, String)>) -> Option<Config> {
    // The parent path (rendered) and key of the entry removed last.
    let mut removed: Option<(String, String)> = None;
    while problems.len() < MAX_PROBLEMS {
        let e = match serde_path_to_error::deserialize::<_, Config>(doc.clone()) {
            Ok(config) => return Some(config),
            Err(e) => e,
        };
        let segments: Vec<Segment> = e.path().iter().cloned().collect();
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let message = e.into_inner().to_string();
        // Removing a required key makes serde report it missing: the real problem is known.
        if let Some((parent, key)) = &removed {
            if *parent == format!("{segments:?}") && message == format!("missing field `{key}`") {
                return None;
            }
        }
        problems.push((path, message));
        match remove(&mut doc, &segments) {
            Some(key) => {
                let parent = &segments[..segments.len() - 1];
                removed = Some((format!("{parent:?}"), key));
            }
            None => return None,
        }
    }
    None
}

/// Removes the mapping entry at `path` (the last segment a map key); returns its key.
fn remove(doc: &mut Value, path: &[Segment]) -> Option<String> {
    let (last, parents) = path.split_last()?;
    let mut node = doc;
    for seg in parents {
        node = match (seg, node) {
            (Segment::Map { key }, Value::Mapping(m)) => m.get_mut(key.as_str())?,
            (Segment::Seq { index }, Value::Sequence(s)) => s.get_mut(*index)?,
            (Segment::Enum { .. }, Value::Tagged(t)) => &mut t.value,
            _ => return None,
        };
    }
    match (last, node) {
        (Segment::Map { key }, Value::Mapping(m)) => {
            m.remove(key.as_str())?;
            Some(key.clone())
        }
        _ => None,
    }
}

fn interpolate_tree(
    v: &mut Value,
    path: &mut String,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<(String, String)>,
) {
    match v {
        Value::String(s) => match interpolate(s, env) {
            Ok(new) => *s = new,
            Err(msg) => problems.push((path.clone(), msg)),
        },
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                interpolate_tree(item, path, env, problems);
                path.truncate(len);
            }
        }
        Value::Mapping(map) => {
            for (k, item) in map.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                match k {
                    Value::String(s) => path.push_str(s),
                    other => path.push_str(&format!("{other:?}")),
                }
                interpolate_tree(item, path, env, problems);
                path.truncate(len);
            }
        }
        Value::Tagged(tagged) => interpolate_tree(&mut tagged.value, path, env, problems),
        _ => {}
    }
}
