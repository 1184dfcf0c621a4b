//! Label values bounded by the configuration: every configured name gets an index, anything else
//! is `other`, and a missing value (a request that failed before naming a model or reaching a
//! backend) is `none`. A client asking for a random model therefore never creates a series, and
//! resolving a label on the hot path is one lookup in a map that never changes after start.

use std::collections::HashMap;

/// The label value of names that are not in the configuration.
pub const OTHER: &str = "other";
/// The label value when the record has no value (no model, no backend).
pub const NONE: &str = "none";

/// The allowed values of one label: the configured names, then `other`, then `none`.
#[derive(Debug)]
pub(crate) struct Bounded {
    names: Vec<Box<str>>,
    index: HashMap<Box<str>, usize>,
}

impl Bounded {
    /// The configured `names` (duplicates ignored; `other` and `none` map to themselves).
    pub(crate) fn new<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut b = Bounded {
            names: Vec::new(),
            index: HashMap::new(),
        };
        for n in names {
            let n = n.as_ref();
            if n != OTHER && n != NONE && !b.index.contains_key(n) {
                b.index.insert(n.into(), b.names.len());
                b.names.push(n.into());
            }
        }
        b.names.push(OTHER.into());
        b.names.push(NONE.into());
        b
    }

    /// The number of values, `other` and `none` included.
    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }

    /// The index of `value`'s label.
    pub(crate) fn index(&self, value: Option<&str>) -> usize {
        match value {
            None => self.names.len() - 1,
            Some(v) => self.index.get(v).copied().unwrap_or(self.names.len() - 2),
        }
    }

    /// The label value at `i`.
    pub(crate) fn name(&self, i: usize) -> &str {
        &self.names[i]
    }

    /// Whether `i` is a configured name (not `other` or `none`).
    pub(crate) fn is_configured(&self, i: usize) -> bool {
        i + 2 < self.names.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_is_other_and_missing_is_none() {
        let b = Bounded::new(["gpt-4o", "claude", "gpt-4o", "other"]);
        assert_eq!(b.len(), 4);
        assert_eq!(b.name(b.index(Some("claude"))), "claude");
        assert_eq!(b.name(b.index(Some("random-model-123"))), OTHER);
        assert_eq!(b.name(b.index(Some("other"))), OTHER);
        assert_eq!(b.name(b.index(None)), NONE);
        assert!(b.is_configured(0));
        assert!(!b.is_configured(b.index(None)));
    }
}
