//! [`BuildError`]: the one error every engine constructor returns when its configuration is
//! unusable.
//!
//! Engines validate everything they can when they are built (expressions, paths, keys, statuses,
//! target lists, URLs) so that a bad configuration fails at startup or reload, never on a request.
//! A build error is never retryable: the same settings fail the same way until someone edits them.
//!
//! The message names the offending item and, where possible, the fix. The key path
//! ([`BuildError::path`]) is where in the configuration the item was written, when the builder knows
//! it (`backends.oa.timeouts`); the config loader adds the file.

use std::fmt;

/// What kind of configuration problem a [`BuildError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BuildErrorKind {
    /// A value is malformed or out of range (an expression that does not compile, a bad URL, a
    /// status outside 400-599, an unknown name).
    Invalid,
    /// Something required is absent (no targets, an empty name).
    Missing,
    /// Two settings contradict each other or a name is defined twice.
    Conflict,
    /// A resource the engine needs could not be created (the HTTP client's TLS setup).
    Resource,
}

impl BuildErrorKind {
    /// A short lowercase name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            BuildErrorKind::Invalid => "invalid",
            BuildErrorKind::Missing => "missing",
            BuildErrorKind::Conflict => "conflict",
            BuildErrorKind::Resource => "resource",
        }
    }
}

/// A configuration an engine cannot be built from: a kind, a message and, when known, the key path.
///
/// ```
/// use octo_core::{BuildError, BuildErrorKind};
///
/// let e = BuildError::invalid("`5 sec` has an unknown unit").at("backends.oa.timeouts.connect");
/// assert_eq!(e.kind(), BuildErrorKind::Invalid);
/// assert_eq!(e.path(), Some("backends.oa.timeouts.connect"));
/// assert_eq!(e.to_string(), "at `backends.oa.timeouts.connect`: `5 sec` has an unknown unit");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildError {
    kind: BuildErrorKind,
    message: String,
    path: Option<String>,
}

impl BuildError {
    /// An error of `kind` with `message` (what is wrong and, where possible, how to fix it).
    pub fn new(kind: BuildErrorKind, message: impl Into<String>) -> Self {
        BuildError {
            kind,
            message: message.into(),
            path: None,
        }
    }

    /// A [`BuildErrorKind::Invalid`] error.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(BuildErrorKind::Invalid, message)
    }

    /// The kind.
    pub fn kind(&self) -> BuildErrorKind {
        self.kind
    }

    /// The message, without the path.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The configuration key path the error belongs to, when known.
    pub fn path(&self) -> Option<&str> {
        self.path.as_deref()
    }

    /// Always `false`: a configuration fails the same way until it is changed. (Present so build
    /// errors answer the same question as request errors.)
    pub fn is_retryable(&self) -> bool {
        false
    }

    /// The same error at key path `path`, unless a more precise path was already set.
    pub fn at(mut self, path: impl Into<String>) -> Self {
        if self.path.is_none() {
            self.path = Some(path.into());
        }
        self
    }

    /// The same error with `context` in front of the message (`rule `x`: …`).
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(path) => write!(f, "at `{path}`: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for BuildError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_path_given_wins_and_context_prefixes_the_message() {
        let e = BuildError::new(BuildErrorKind::Conflict, "defined twice")
            .context("rule `a`")
            .at("models.m.rules[1]")
            .at("models.m");
        assert_eq!(e.path(), Some("models.m.rules[1]"));
        assert_eq!(e.message(), "rule `a`: defined twice");
        assert_eq!(e.kind().as_str(), "conflict");
        assert!(!e.is_retryable());
    }
}
