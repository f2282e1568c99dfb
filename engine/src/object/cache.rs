//! The per-core read cache: object bytes this core served recently, so a hot
//! object (an HLS segment every viewer asks for, a small key read in a loop) is
//! sent from memory instead of being read from the drives again with O_DIRECT.
//!
//! What it holds never changes: an inline object's bytes are named by the
//! version of its metadata record and a stripe's data by its extent's data id,
//! and neither is ever rewritten with other bytes. So there is nothing to
//! invalidate: an overwritten or deleted object's entries are just never asked
//! for again and age out. Entries are `Bytes`, so a hit is handed to the socket
//! without a copy, and bytes shared by the cache and by responses in flight
//! count once.
//!
//! Eviction is quick_cache's (CLOCK-PRO-like, scan resistant): a one-off read of
//! a large file does not push out the entries that are read again and again.
use bytes::Bytes;

/// What a cached entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum CacheKey {
    /// The bytes of an inline object, by its metadata record's version (unique
    /// on the core that issued it).
    Inline { partition: u32, version: u64 },
    /// The data of one stripe of an extent (the k data pieces, concatenated).
    Stripe { data_id: u128, stripe: u64 },
}

/// Bookkeeping per entry, counted against the capacity with the bytes.
const ENTRY_OVERHEAD_BYTES: u64 = 96;

#[derive(Clone)]
struct ByteWeight;

impl quick_cache::Weighter<CacheKey, Bytes> for ByteWeight {
    fn weight(&self, _: &CacheKey, v: &Bytes) -> u64 {
        v.len() as u64 + ENTRY_OVERHEAD_BYTES
    }
}

/// Counters for metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub bytes: u64,
    pub capacity: u64,
}

pub(crate) struct ReadCache {
    cache: Option<quick_cache::unsync::Cache<CacheKey, Bytes, ByteWeight>>,
    hits: u64,
    misses: u64,
}

impl ReadCache {
    /// A cache of at most `capacity` bytes; 0 turns it off.
    pub(crate) fn new(capacity: u64) -> ReadCache {
        // The item estimate only sizes the table up front; it grows as needed.
        let cache = (capacity > 0).then(|| {
            quick_cache::unsync::Cache::with_weighter(
                (capacity / (256 << 10)).clamp(16, 1 << 16) as usize,
                capacity,
                ByteWeight,
            )
        });
        ReadCache { cache, hits: 0, misses: 0 }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.cache.is_some()
    }

    pub(crate) fn get(&mut self, key: &CacheKey) -> Option<Bytes> {
        let hit = self.cache.as_ref()?.get(key).cloned();
        if hit.is_some() {
            self.hits += 1;
        } else {
            self.misses += 1;
        }
        hit
    }

    pub(crate) fn insert(&mut self, key: CacheKey, value: Bytes) {
        if let Some(c) = self.cache.as_mut() {
            c.insert(key, value);
        }
    }

    pub(crate) fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits,
            misses: self.misses,
            bytes: self.cache.as_ref().map_or(0, |c| c.weight()),
            capacity: self.cache.as_ref().map_or(0, |c| c.capacity()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_what_fits_and_counts_hits() {
        let mut c = ReadCache::new(4 << 20);
        let k = CacheKey::Stripe { data_id: 7, stripe: 0 };
        assert!(c.get(&k).is_none());
        c.insert(k, Bytes::from(vec![1u8; 1 << 20]));
        assert_eq!(c.get(&k).unwrap().len(), 1 << 20);
        let s = c.stats();
        assert_eq!((s.hits, s.misses), (1, 1));
        assert!(s.bytes > 1 << 20 && s.bytes <= s.capacity);
    }

    #[test]
    fn stays_within_its_capacity() {
        let mut c = ReadCache::new(4 << 20);
        for i in 0..64 {
            c.insert(CacheKey::Stripe { data_id: i, stripe: 0 }, Bytes::from(vec![0u8; 1 << 20]));
            assert!(c.stats().bytes <= 4 << 20);
        }
    }

    #[test]
    fn off_when_capacity_is_zero() {
        let mut c = ReadCache::new(0);
        let k = CacheKey::Inline { partition: 1, version: 2 };
        c.insert(k, Bytes::from_static(b"x"));
        assert!(!c.enabled());
        assert!(c.get(&k).is_none());
    }
}
