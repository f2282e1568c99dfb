//! A storage node's applied commit log: per partition, the metadata records the
//! log delivered, applied in log order, and the highest position applied.
//!
//! A commit record is a [`MetaRecord`] whose `version` is set, on apply, to its
//! position in the partition's log: later positions win, in the log's order, on
//! every node of the set alike. The record is stored (made durable) under its
//! identity's store key before the index moves, so the applied position is never
//! ahead of what is on disk; and since each stored record carries its position,
//! a restarted node finds its applied position as the highest version on disk and
//! replays the log from the next one.
//!
//! The index keeps only what listings and lookups need (no inline bytes); a lookup
//! of the full record reads it from the store.
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use crate::format::ShardKey;
use crate::object::meta::{self, DataLayout, MetaEntry, MetaRecord};
use crate::object::Keyspace;

/// What a record is about; orders objects of a bucket by key, as listings want.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MetaId {
    Object { bucket: String, key: String },
    Upload { bucket: String, key: String, upload_id: String },
    Part { bucket: String, key: String, upload_id: String, part_number: u32 },
}

impl MetaId {
    pub fn of(entry: &MetaEntry) -> Option<MetaId> {
        Some(match entry {
            MetaEntry::Bucket { .. } => return None,
            MetaEntry::Object { bucket, key, .. } => MetaId::Object { bucket: bucket.clone(), key: key.clone() },
            MetaEntry::Upload { bucket, key, upload_id, .. } => {
                MetaId::Upload { bucket: bucket.clone(), key: key.clone(), upload_id: upload_id.clone() }
            }
            MetaEntry::Part { bucket, key, upload_id, part_number, .. } => MetaId::Part {
                bucket: bucket.clone(),
                key: key.clone(),
                upload_id: upload_id.clone(),
                part_number: *part_number,
            },
        })
    }

    fn bucket_key(&self) -> (&str, &str) {
        match self {
            MetaId::Object { bucket, key } | MetaId::Upload { bucket, key, .. } | MetaId::Part { bucket, key, .. } => {
                (bucket, key)
            }
        }
    }
}

/// What the index holds of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The record's log position.
    pub version: u64,
    /// False for a deletion record.
    pub live: bool,
    pub size: u64,
    pub etag: String,
    pub modified_ms: i64,
    /// Where the full record is stored.
    pub store_key: ShardKey,
    /// The data ids of the pieces the record names (its extents).
    pub data: Vec<u128>,
}

fn data_ids(layout: &crate::object::meta::DataLayout) -> Vec<u128> {
    match layout {
        crate::object::meta::DataLayout::Extents(e) => e.iter().map(|e| e.data_id).collect(),
        crate::object::meta::DataLayout::Inline(_) => vec![],
    }
}

fn summarise(rec: &MetaRecord, store_key: ShardKey) -> Summary {
    let data = match &rec.entry {
        MetaEntry::Object { object: Some(o), .. } => data_ids(&o.data),
        MetaEntry::Part { part: Some(p), .. } => vec![p.extent.data_id],
        _ => vec![],
    };
    let (size, etag, modified_ms) = match &rec.entry {
        MetaEntry::Object { object: Some(o), .. } => (o.size, o.etag.clone(), o.modified_ms),
        MetaEntry::Part { part: Some(p), .. } => (p.size, p.etag.clone(), p.modified_ms),
        MetaEntry::Upload { upload: Some(u), .. } => (0, String::new(), u.initiated_ms),
        _ => (0, String::new(), 0),
    };
    Summary { version: rec.version, live: rec.entry.is_live(), size, etag, modified_ms, store_key, data }
}

/// A commit record ready to be stored: the caller makes `bytes` durable under
/// `store_key`, then calls [`AppliedIndex::commit`].
#[derive(Debug)]
pub struct Prepared {
    pub partition: u32,
    pub position: u64,
    pub store_key: ShardKey,
    /// The record with its version set to its log position.
    pub bytes: Vec<u8>,
    id: MetaId,
    summary: Summary,
}

/// What to do with a delivered log record.
#[derive(Debug)]
pub enum Apply {
    /// Store it, then commit.
    Store(Box<Prepared>),
    /// At or below the applied position (a redelivery after a restart): nothing to do.
    Duplicate,
    /// Not a record this index can apply (undecodable, a bucket record, or another
    /// partition's key): the position is skipped, so one bad record cannot stall
    /// the partition. The reason is for the log.
    Skip(String),
}

#[derive(Debug, Default)]
struct Partition {
    applied: Option<u64>,
    entries: BTreeMap<MetaId, Summary>,
}

/// The applied state of the partitions one core owns.
#[derive(Debug)]
pub struct AppliedIndex {
    keyspace: Keyspace,
    parts: HashMap<u32, Partition>,
}

impl AppliedIndex {
    pub fn new(keyspace: Keyspace) -> AppliedIndex {
        AppliedIndex { keyspace, parts: HashMap::new() }
    }

    /// The highest log position applied for `partition` (`None`: nothing yet).
    pub fn applied(&self, partition: u32) -> Option<u64> {
        self.parts.get(&partition).and_then(|p| p.applied)
    }

    /// The next log position to read for `partition`.
    pub fn next_position(&self, partition: u32) -> u64 {
        self.applied(partition).map_or(0, |a| a + 1)
    }

    /// Decides what to do with the record at `position` of `partition`'s log.
    pub fn prepare(&self, partition: u32, position: u64, payload: &[u8]) -> Apply {
        if self.applied(partition).is_some_and(|a| position <= a) {
            return Apply::Duplicate;
        }
        let mut rec = match meta::decode(payload) {
            Ok(r) => r,
            Err(e) => return Apply::Skip(format!("undecodable record: {e}")),
        };
        let Some(id) = MetaId::of(&rec.entry) else {
            return Apply::Skip("bucket records are not in the commit log".into());
        };
        let store_key = self.keyspace.meta_key(&rec.entry);
        if store_key.partition != partition {
            let (b, k) = id.bucket_key();
            return Apply::Skip(format!("{b}/{k} belongs to partition {}, not {partition}", store_key.partition));
        }
        rec.version = position;
        if let MetaEntry::Object { object: Some(o), .. } = &rec.entry {
            if let DataLayout::Inline(d) = &o.data {
                if d.len() as u64 != o.size {
                    return Apply::Skip(format!("inline data of {} bytes for size {}", d.len(), o.size));
                }
            }
        }
        let summary = summarise(&rec, store_key);
        Apply::Store(Box::new(Prepared { partition, position, store_key, bytes: meta::encode(&rec), id, summary }))
    }

    /// Makes a stored record visible and moves the applied position. Positions must
    /// come in order; a skipped one is committed with [`AppliedIndex::skip`].
    pub fn commit(&mut self, p: Box<Prepared>) {
        let p = *p;
        let part = self.parts.entry(p.partition).or_default();
        debug_assert!(part.applied.is_none_or(|a| p.position > a), "positions applied in order");
        part.applied = Some(p.position);
        match part.entries.get(&p.id) {
            // A newer record of the same identity already recovered from disk.
            Some(cur) if cur.version > p.position => {}
            _ => {
                part.entries.insert(p.id, p.summary);
            }
        }
    }

    /// Moves the applied position past a record that was skipped.
    pub fn skip(&mut self, partition: u32, position: u64) {
        let part = self.parts.entry(partition).or_default();
        if part.applied.is_none_or(|a| position > a) {
            part.applied = Some(position);
        }
    }

    /// Start-up: a record found in the store. The highest version per identity wins,
    /// and the applied position becomes the highest version seen.
    pub fn recover(&mut self, payload: &[u8]) -> Result<(), String> {
        let rec = meta::decode(payload).map_err(|e| e.to_string())?;
        let Some(id) = MetaId::of(&rec.entry) else { return Ok(()) };
        let store_key = self.keyspace.meta_key(&rec.entry);
        let part = self.parts.entry(store_key.partition).or_default();
        if part.applied.is_none_or(|a| rec.version > a) {
            part.applied = Some(rec.version);
        }
        match part.entries.get(&id) {
            Some(cur) if cur.version >= rec.version => {}
            _ => {
                part.entries.insert(id, summarise(&rec, store_key));
            }
        }
        Ok(())
    }

    pub fn get(&self, partition: u32, id: &MetaId) -> Option<&Summary> {
        self.parts.get(&partition)?.entries.get(id)
    }

    /// Objects of `bucket` in `partition` whose key starts with `prefix`, after
    /// `start_after`, in key order, at most `limit`; deletions too `with_deleted`
    /// (a reader merging several nodes needs them to outvote a stale node).
    pub fn list_objects(
        &self,
        partition: u32,
        bucket: &str,
        prefix: &str,
        start_after: &str,
        limit: usize,
        with_deleted: bool,
    ) -> Vec<(String, Summary)> {
        let Some(part) = self.parts.get(&partition) else { return Vec::new() };
        let from = if start_after < prefix { prefix } else { start_after };
        let lower = MetaId::Object { bucket: bucket.to_string(), key: from.to_string() };
        let lower = if from == start_after && !start_after.is_empty() {
            Bound::Excluded(lower)
        } else {
            Bound::Included(lower)
        };
        part.entries
            .range((lower, Bound::Unbounded))
            .map_while(|(id, s)| match id {
                MetaId::Object { bucket: b, key } if b == bucket && key.starts_with(prefix) => Some((key, s)),
                _ => None,
            })
            .filter(|(_, s)| s.live || with_deleted)
            .take(limit)
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect()
    }

    /// The data ids the current records of `partition` name: pieces of any other
    /// data id are garbage once no write in flight can still name them.
    /// A part counts only while its upload is open: after a completion the object
    /// names the parts it took, and the others (and an aborted upload's) are garbage.
    /// Where the live records of `partition` that name data are stored.
    pub fn live_with_data(&self, partition: u32) -> Vec<ShardKey> {
        let Some(p) = self.parts.get(&partition) else { return vec![] };
        p.entries.values().filter(|s| s.live && !s.data.is_empty()).map(|s| s.store_key).collect()
    }

    pub fn referenced(&self, partition: u32) -> std::collections::HashSet<u128> {
        let Some(p) = self.parts.get(&partition) else { return Default::default() };
        p.entries
            .iter()
            .filter(|(id, s)| {
                s.live
                    && match id {
                        MetaId::Part { bucket, key, upload_id, .. } => p
                            .entries
                            .get(&MetaId::Upload {
                                bucket: bucket.clone(),
                                key: key.clone(),
                                upload_id: upload_id.clone(),
                            })
                            .is_some_and(|u| u.live),
                        _ => true,
                    }
            })
            .flat_map(|(_, s)| s.data.iter().copied())
            .collect()
    }

    /// Upload records of `bucket` in `partition` (deletions included) whose key
    /// starts with `prefix`, after (`after_key`, `after_upload`), in (key, upload
    /// id) order, at most `limit`.
    pub fn list_uploads(
        &self,
        partition: u32,
        bucket: &str,
        prefix: &str,
        after: (&str, &str),
        limit: usize,
    ) -> Vec<(String, String, Summary)> {
        let Some(p) = self.parts.get(&partition) else { return vec![] };
        let from = if after.0 < prefix { (prefix, "") } else { after };
        let lower = MetaId::Upload { bucket: bucket.into(), key: from.0.into(), upload_id: from.1.into() };
        p.entries
            .range((Bound::Included(lower), Bound::Unbounded))
            .map_while(|(id, s)| match id {
                MetaId::Upload { bucket: b, key, upload_id } if b == bucket && key.starts_with(prefix) => {
                    Some((key, upload_id, s))
                }
                _ => None,
            })
            .filter(|(k, u, _)| (k.as_str(), u.as_str()) > after)
            .take(limit)
            .map(|(k, u, s)| (k.clone(), u.clone(), s.clone()))
            .collect()
    }

    /// The part records of an upload (deletions included), by part number.
    pub fn upload_parts(&self, partition: u32, bucket: &str, key: &str, upload_id: &str) -> Vec<(u32, Summary)> {
        let Some(p) = self.parts.get(&partition) else { return vec![] };
        let id =
            |n| MetaId::Part { bucket: bucket.into(), key: key.into(), upload_id: upload_id.into(), part_number: n };
        p.entries
            .range(id(0)..=id(u32::MAX))
            .filter_map(|(id, s)| match id {
                MetaId::Part { part_number, .. } => Some((*part_number, s.clone())),
                _ => None,
            })
            .collect()
    }

    /// Partitions with anything applied.
    pub fn partitions(&self) -> impl Iterator<Item = u32> + '_ {
        self.parts.keys().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::meta::ObjectInfo;

    fn ks() -> Keyspace {
        Keyspace { hash_key: 0x1234_5678_9abc_def0_0fed_cba9_8765_4321, partitions: 8 }
    }

    fn object(bucket: &str, key: &str, body: Option<&[u8]>) -> Vec<u8> {
        let object = body.map(|b| ObjectInfo {
            size: b.len() as u64,
            etag: format!("\"{}\"", b.len()),
            modified_ms: 1,
            headers: vec![],
            data: DataLayout::Inline(b.to_vec()),
            parts: vec![],
        });
        meta::encode(&MetaRecord {
            version: 0,
            entry: MetaEntry::Object { bucket: bucket.into(), key: key.into(), object },
        })
    }

    fn apply(ix: &mut AppliedIndex, partition: u32, pos: u64, payload: &[u8], store: &mut Vec<Vec<u8>>) {
        match ix.prepare(partition, pos, payload) {
            Apply::Store(p) => {
                store.push(p.bytes.clone());
                ix.commit(p);
            }
            Apply::Skip(_) => ix.skip(partition, pos),
            Apply::Duplicate => {}
        }
    }

    #[test]
    fn parts_are_referenced_while_their_upload_is_open() {
        use crate::object::meta::{Extent, Geometry, PartInfo, UploadInfo};
        let k = Keyspace { hash_key: 7, partitions: 1 };
        let mut ix = AppliedIndex::new(k);
        let mut disk = Vec::new();
        let upload = |open: bool| {
            meta::encode(&MetaRecord {
                version: 0,
                entry: MetaEntry::Upload {
                    bucket: "b".into(),
                    key: "k".into(),
                    upload_id: "u".into(),
                    upload: open.then(|| UploadInfo { initiated_ms: 1, headers: vec![] }),
                },
            })
        };
        let geometry =
            Geometry { k: 2, m: 1, codec: 0, chunk_bytes: 1024, group_stripes: 4, first_drive: 0, drives: 3 };
        let part = |n: u32, data_id: u128| {
            meta::encode(&MetaRecord {
                version: 0,
                entry: MetaEntry::Part {
                    bucket: "b".into(),
                    key: "k".into(),
                    upload_id: "u".into(),
                    part_number: n,
                    part: Some(PartInfo {
                        size: 10,
                        etag: "\"e\"".into(),
                        modified_ms: 1,
                        checksums: vec![],
                        extent: Extent { data_id, size: 10, geometry, missing_slots: 0 },
                    }),
                },
            })
        };
        apply(&mut ix, 0, 0, &upload(true), &mut disk);
        apply(&mut ix, 0, 1, &part(1, 11), &mut disk);
        apply(&mut ix, 0, 2, &part(2, 22), &mut disk);
        assert_eq!(ix.referenced(0), [11u128, 22].into_iter().collect::<std::collections::HashSet<_>>());
        let parts: Vec<u32> = ix.upload_parts(0, "b", "k", "u").into_iter().map(|(n, _)| n).collect();
        assert_eq!(parts, [1, 2]);
        assert!(ix.upload_parts(0, "b", "k", "other").is_empty());
        let listed = ix.list_uploads(0, "b", "", ("", ""), 10);
        assert_eq!(
            listed.iter().map(|(k, u, s)| (k.as_str(), u.as_str(), s.live)).collect::<Vec<_>>(),
            [("k", "u", true)]
        );
        assert!(ix.list_uploads(0, "b", "", ("k", "u"), 10).is_empty(), "after the marker");
        assert!(ix.list_uploads(0, "b", "x", ("", ""), 10).is_empty(), "another prefix");
        apply(&mut ix, 0, 3, &upload(false), &mut disk);
        assert!(!ix.list_uploads(0, "b", "", ("", ""), 10)[0].2.live, "a closed upload is listed as a deletion");
        assert!(ix.referenced(0).is_empty(), "a closed upload's parts are garbage unless an object names them");
    }

    #[test]
    fn later_positions_win_and_restart_recovers_the_position() {
        let k = ks();
        let p = k.partition_of("b", "a");
        let mut ix = AppliedIndex::new(k);
        let mut disk = Vec::new();
        apply(&mut ix, p, 0, &object("b", "a", Some(b"one")), &mut disk);
        apply(&mut ix, p, 1, &object("b", "a", Some(b"three")), &mut disk);
        assert_eq!(ix.applied(p), Some(1));
        assert_eq!(ix.get(p, &MetaId::Object { bucket: "b".into(), key: "a".into() }).unwrap().size, 5);
        // A redelivery changes nothing.
        assert!(matches!(ix.prepare(p, 0, &object("b", "a", Some(b"x"))), Apply::Duplicate));
        // A record of another partition's key, and garbage, are skipped, not applied.
        let other = (0..100).map(|i| format!("k{i}")).find(|key| k.partition_of("b", key) != p).unwrap();
        assert!(matches!(ix.prepare(p, 2, &object("b", &other, Some(b"x"))), Apply::Skip(_)));
        apply(&mut ix, p, 2, b"garbage", &mut disk);
        assert_eq!(ix.applied(p), Some(2));
        apply(&mut ix, p, 3, &object("b", "a", None), &mut disk);
        assert!(!ix.get(p, &MetaId::Object { bucket: "b".into(), key: "a".into() }).unwrap().live);

        // Restart: records in any order; the newest per identity and the highest
        // position win.
        let mut ix2 = AppliedIndex::new(k);
        for rec in disk.iter().rev() {
            ix2.recover(rec).unwrap();
        }
        assert_eq!(ix2.applied(p), Some(3));
        assert_eq!(ix2.next_position(p), 4);
        assert!(!ix2.get(p, &MetaId::Object { bucket: "b".into(), key: "a".into() }).unwrap().live);
    }

    #[test]
    fn listings_are_ordered_prefixed_paged_and_skip_deletions() {
        let k = Keyspace { hash_key: 7, partitions: 1 };
        let mut ix = AppliedIndex::new(k);
        let mut disk = Vec::new();
        for (i, key) in ["a/1", "a/2", "a/3", "b/1", "a/0"].iter().enumerate() {
            apply(&mut ix, 0, i as u64, &object("bk", key, Some(b"x")), &mut disk);
        }
        apply(&mut ix, 0, 5, &object("other", "a/1", Some(b"x")), &mut disk);
        apply(&mut ix, 0, 6, &object("bk", "a/2", None), &mut disk);
        let keys = |v: Vec<(String, Summary)>| v.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(keys(ix.list_objects(0, "bk", "a/", "", 10, false)), ["a/0", "a/1", "a/3"]);
        assert_eq!(keys(ix.list_objects(0, "bk", "a/", "a/1", 10, false)), ["a/3"]);
        assert_eq!(keys(ix.list_objects(0, "bk", "", "", 2, false)), ["a/0", "a/1"]);
        assert_eq!(keys(ix.list_objects(0, "bk", "", "a/3", 10, false)), ["b/1"]);
        assert_eq!(keys(ix.list_objects(0, "other", "", "", 10, false)), ["a/1"]);
        assert!(ix.list_objects(0, "none", "", "", 10, false).is_empty());
        // With deletions, for readers merging nodes: a/2's deletion is listed, not live.
        let all = ix.list_objects(0, "bk", "a/", "", 10, true);
        assert_eq!(
            all.iter().map(|(k, s)| (k.as_str(), s.live)).collect::<Vec<_>>(),
            [("a/0", true), ("a/1", true), ("a/2", false), ("a/3", true)]
        );
    }
}
