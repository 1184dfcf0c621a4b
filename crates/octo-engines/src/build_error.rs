//! The error an engine's constructor returns when its configuration is unusable.
//!
//! Engines validate everything they can when they are built (expressions, paths, keys, statuses)
//! so that a bad configuration fails at startup or reload, never on a request. The message names
//! the offending item (a rule, a path, an org's key) and, where possible, the fix; the config
//! loader prefixes it with the file and the key path.

use std::fmt;

/// A configuration an engine cannot be built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildError {
    message: String,
}

impl BuildError {
    /// An error with `message` (what is wrong and, where possible, how to fix it).
    pub fn new(message: impl Into<String>) -> Self {
        BuildError {
            message: message.into(),
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The same error with `context` in front (`rule `x`: …`).
    pub fn context(self, context: impl fmt::Display) -> Self {
        BuildError {
            message: format!("{context}: {}", self.message),
        }
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for BuildError {}
