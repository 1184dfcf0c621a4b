//! Counts of records that had usage but no known price, by model, for the metrics to read. The map
//! is bounded: model names come partly from clients, and past [`MAX_MODELS`] distinct names the
//! rest are counted together under [`OTHER`].

use std::collections::HashMap;
use std::sync::Mutex;

/// Distinct model names counted separately.
pub const MAX_MODELS: usize = 256;

/// The name that counts every model past [`MAX_MODELS`].
pub const OTHER: &str = "(other)";

/// The name a record without any model name is counted under.
pub const UNKNOWN: &str = "(unknown)";

/// Unpriced-record counters; see the [module docs](self).
#[derive(Debug, Default)]
pub struct Unpriced(Mutex<HashMap<String, u64>>);

impl Unpriced {
    /// Counts one unpriced record for `model`.
    pub fn count(&self, model: Option<&str>) {
        let model = model.filter(|m| !m.is_empty()).unwrap_or(UNKNOWN);
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(model) {
            *n += 1;
        } else if map.len() < MAX_MODELS {
            map.insert(model.to_owned(), 1);
        } else {
            *map.entry(OTHER.to_owned()).or_default() += 1;
        }
    }

    /// Every count, sorted by model name.
    pub fn snapshot(&self) -> Vec<(String, u64)> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<(String, u64)> = map.iter().map(|(k, n)| (k.clone(), *n)).collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_per_model_and_bounded() {
        let u = Unpriced::default();
        u.count(Some("a"));
        u.count(Some("a"));
        u.count(None);
        assert_eq!(
            u.snapshot(),
            [("(unknown)".to_owned(), 1), ("a".to_owned(), 2)]
        );
        for i in 0..MAX_MODELS + 10 {
            u.count(Some(&format!("m{i}")));
        }
        let s = u.snapshot();
        // MAX_MODELS names, plus the overflow bucket.
        assert_eq!(s.len(), MAX_MODELS + 1);
        let total: u64 = s.iter().map(|(_, n)| n).sum();
        assert_eq!(total, 3 + MAX_MODELS as u64 + 10);
        // A name already counted keeps its own counter.
        u.count(Some("a"));
        assert!(u.snapshot().contains(&("a".to_owned(), 3)));
    }
}
