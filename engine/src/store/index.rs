//! The in-memory index: per partition, an ordered map from (object, piece) to where
//! the shard piece lives. Ordered so a partition's pieces can be listed (healing,
//! rebalancing) without a scan of the disk.
use std::collections::{BTreeMap, HashMap};

use crate::format::ShardKey;

/// Where a live record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loc {
    pub segment: u64,
    /// Offset of the record's first byte in the segment file.
    pub offset: u64,
    pub payload_len: u64,
    pub seq: u64,
    pub block_log2: u8,
}

impl Loc {
    pub fn record_len(&self) -> u64 {
        crate::format::record_len(self.payload_len, self.block_log2)
    }
}

#[derive(Default)]
pub struct Index {
    parts: HashMap<u32, BTreeMap<(u128, u32), Loc>>,
    len: usize,
}

impl Index {
    pub fn get(&self, key: &ShardKey) -> Option<&Loc> {
        self.parts.get(&key.partition)?.get(&(key.object, key.piece))
    }

    /// Inserts or replaces; returns the replaced location.
    pub fn insert(&mut self, key: ShardKey, loc: Loc) -> Option<Loc> {
        let old = self.parts.entry(key.partition).or_default().insert((key.object, key.piece), loc);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    pub fn remove(&mut self, key: &ShardKey) -> Option<Loc> {
        let part = self.parts.get_mut(&key.partition)?;
        let old = part.remove(&(key.object, key.piece));
        if part.is_empty() {
            self.parts.remove(&key.partition);
        }
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every entry, in no particular partition order.
    pub fn iter(&self) -> impl Iterator<Item = (ShardKey, &Loc)> {
        self.parts.iter().flat_map(|(p, m)| {
            m.iter().map(move |(&(object, piece), loc)| (ShardKey { partition: *p, object, piece }, loc))
        })
    }

    /// A partition's pieces in (object, piece) order.
    pub fn partition(&self, partition: u32) -> impl Iterator<Item = (ShardKey, &Loc)> {
        self.parts.get(&partition).into_iter().flat_map(move |m| {
            m.iter().map(move |(&(object, piece), loc)| (ShardKey { partition, object, piece }, loc))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_replace_remove() {
        let mut ix = Index::default();
        let k = |p, o| ShardKey { partition: p, object: o, piece: 0 };
        let loc = |s| Loc { segment: s, offset: 0, payload_len: 1, seq: s, block_log2: 16 };
        assert!(ix.insert(k(1, 5), loc(1)).is_none());
        assert!(ix.insert(k(1, 3), loc(2)).is_none());
        assert!(ix.insert(k(2, 5), loc(3)).is_none());
        assert_eq!(ix.insert(k(1, 5), loc(4)), Some(loc(1)));
        assert_eq!(ix.len(), 3);
        let objs: Vec<u128> = ix.partition(1).map(|(k, _)| k.object).collect();
        assert_eq!(objs, vec![3, 5]);
        assert_eq!(ix.remove(&k(2, 5)), Some(loc(3)));
        assert_eq!(ix.remove(&k(2, 5)), None);
        assert_eq!(ix.len(), 2);
        assert_eq!(ix.get(&k(1, 5)), Some(&loc(4)));
    }
}
