//! The in-process store: least recently used entries go first once `max_bytes` is reached, and
//! every entry expires after its TTL.
//!
//! One mutex guards a hash map (key → entry) and an ordered map (last use → key); a lookup or an
//! insert is a few map operations under the lock, never IO. Expired entries are dropped when they
//! are looked up or reached by eviction, so memory stays within `max_bytes` either way.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use octo_core::Error;

use super::key::CacheKey;
use super::store::CacheStore;

/// Bytes counted per entry beyond its value (key, maps, bookkeeping).
const ENTRY_OVERHEAD: usize = 128;

struct Slot {
    value: Bytes,
    expires: Instant,
    used: u64,
}

#[derive(Default)]
struct Lru {
    map: HashMap<CacheKey, Slot>,
    order: BTreeMap<u64, CacheKey>,
    tick: u64,
    bytes: usize,
}

impl Lru {
    fn remove(&mut self, key: &CacheKey) {
        if let Some(slot) = self.map.remove(key) {
            self.order.remove(&slot.used);
            self.bytes -= slot.value.len() + ENTRY_OVERHEAD;
        }
    }
}

/// An LRU store bounded by bytes, with a TTL per entry; see the module docs.
pub struct MemoryStore {
    max_bytes: usize,
    lru: Mutex<Lru>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("max_bytes", &self.max_bytes)
            .field("bytes", &self.bytes())
            .field("entries", &self.len())
            .finish()
    }
}

impl MemoryStore {
    /// A store holding at most `max_bytes` (values plus a fixed overhead per entry).
    pub fn new(max_bytes: usize) -> Self {
        MemoryStore {
            max_bytes,
            lru: Mutex::new(Lru::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru> {
        self.lru.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The bytes held now.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// The entries held now (expired ones not yet dropped included).
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Whether the store holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The live value under `key` at `now`, marking it used.
    pub fn get_at(&self, key: &CacheKey, now: Instant) -> Option<Bytes> {
        let mut lru = self.lock();
        let lru = &mut *lru;
        let slot = lru.map.get_mut(key)?;
        if slot.expires <= now {
            lru.remove(key);
            return None;
        }
        lru.tick += 1;
        lru.order.remove(&slot.used);
        slot.used = lru.tick;
        lru.order.insert(lru.tick, *key);
        Some(slot.value.clone())
    }

    /// Stores `value` under `key` until `now + ttl`, evicting the least recently used entries
    /// (expired ones first met) until it fits. Returns whether it was stored: a value larger than
    /// the whole store is not.
    pub fn put_at(&self, key: CacheKey, value: Bytes, ttl: Duration, now: Instant) -> bool {
        let size = value.len() + ENTRY_OVERHEAD;
        if size > self.max_bytes {
            return false;
        }
        let mut lru = self.lock();
        lru.remove(&key);
        while lru.bytes + size > self.max_bytes {
            let Some((_, oldest)) = lru.order.pop_first() else {
                break;
            };
            if let Some(slot) = lru.map.remove(&oldest) {
                lru.bytes -= slot.value.len() + ENTRY_OVERHEAD;
            }
        }
        lru.tick += 1;
        let used = lru.tick;
        lru.order.insert(used, key);
        lru.bytes += size;
        lru.map.insert(
            key,
            Slot {
                value,
                expires: now + ttl,
                used,
            },
        );
        true
    }
}

#[async_trait]
impl CacheStore for MemoryStore {
    async fn get(&self, key: &CacheKey) -> Result<Option<Bytes>, Error> {
        Ok(self.get_at(key, Instant::now()))
    }

    async fn put(&self, key: &CacheKey, value: Bytes, ttl: Duration) -> Result<(), Error> {
        self.put_at(*key, value, ttl, Instant::now());
        Ok(())
    }

    fn max_entry_bytes(&self) -> usize {
        self.max_bytes.saturating_sub(ENTRY_OVERHEAD)
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(n: u8) -> CacheKey {
        CacheKey([n; 32])
    }

    fn v(len: usize) -> Bytes {
        Bytes::from(vec![7u8; len])
    }

    const TTL: Duration = Duration::from_secs(60);

    #[test]
    fn entries_expire_after_their_ttl() {
        let s = MemoryStore::new(10_000);
        let t0 = Instant::now();
        assert!(s.put_at(k(1), v(10), TTL, t0));
        assert_eq!(
            s.get_at(&k(1), t0 + TTL - Duration::from_millis(1)),
            Some(v(10))
        );
        assert_eq!(s.get_at(&k(1), t0 + TTL), None);
        assert_eq!((s.len(), s.bytes()), (0, 0), "an expired entry is dropped");
    }

    #[test]
    fn least_recently_used_goes_first_and_bytes_stay_bounded() {
        let each = 100 + ENTRY_OVERHEAD;
        let s = MemoryStore::new(3 * each);
        let t0 = Instant::now();
        for n in 1..=3 {
            assert!(s.put_at(k(n), v(100), TTL, t0));
        }
        // Use 1, so 2 is now the least recently used.
        assert!(s.get_at(&k(1), t0).is_some());
        assert!(s.put_at(k(4), v(100), TTL, t0));
        assert!(s.get_at(&k(2), t0).is_none());
        for n in [1, 3, 4] {
            assert!(s.get_at(&k(n), t0).is_some(), "{n}");
        }
        assert_eq!(s.bytes(), 3 * each);
        // A big entry evicts as many as it needs.
        assert!(s.put_at(k(5), v(250), TTL, t0));
        assert!(s.bytes() <= 3 * each);
        assert!(s.get_at(&k(5), t0).is_some());
    }

    #[test]
    fn replacing_a_key_does_not_leak_bytes() {
        let s = MemoryStore::new(10_000);
        let t0 = Instant::now();
        s.put_at(k(1), v(10), TTL, t0);
        s.put_at(k(1), v(20), TTL, t0);
        assert_eq!(s.len(), 1);
        assert_eq!(s.bytes(), 20 + ENTRY_OVERHEAD);
    }

    #[test]
    fn a_value_larger_than_the_store_is_refused() {
        let s = MemoryStore::new(1000);
        assert!(!s.put_at(k(1), v(1000), TTL, Instant::now()));
        assert!(s.is_empty());
        assert_eq!(s.max_entry_bytes(), 1000 - ENTRY_OVERHEAD);
    }
}
