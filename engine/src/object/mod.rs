//! The object layer: objects, buckets and multipart uploads on top of one core's
//! shard stores (one per drive). It knows bytes, names and versions, not HTTP.
//!
//! # Layout
//! * A key's **partition** is a keyed hash of (bucket, key) mod `partitions`; the
//!   partition picks the owning core ([`crate::runtime::core_for_partition`]) and the
//!   rotation of the erasure set over the drives (slot `s` on drive
//!   `(partition + s) % drives`), so pieces spread evenly.
//! * Data is cut into stripes of `k * chunk_bytes`; each stripe is coded into `k`
//!   data + `m` parity pieces (systematic: data pieces are the bytes themselves, so
//!   healthy reads decode nothing). `group_stripes` consecutive stripes of one slot
//!   form one shard-store record, keyed `(partition, data_id, group << 8 | slot)`.
//!   The last stripe of an extent is shorter (pieces of `ceil(rest / k)` rounded up
//!   to 64 bytes).
//! * Small objects (`inline_bytes_max`) are not coded: their bytes ride in the
//!   metadata record, which is replicated on `m + 1` drives anyway.
//! * Metadata records ([`meta`]) are replicated on `m + 1` drives under a keyed hash
//!   of their identity; the highest version wins on start-up.
//!
//! # Write order (commit ordering, embedded)
//! Data pieces durable on at least `k` drives → metadata record durable on `m + 1`
//! drives → applied to the in-memory index (in version order) → acknowledged. A
//! crash before the metadata record leaves only unreferenced pieces, which start-up
//! removes; a crash after it leaves a complete object. Replaced data is deleted
//! once no reference and no running read needs it (reference counts per data id).
//!
//! # What a read does
//! Range reads touch only the stripes they overlap and, when healthy, only the data
//! pieces that hold the bytes. A piece that is missing, corrupt (the store checks
//! every block crc) or on an offline drive turns that stripe into a degraded read:
//! every available piece of the stripe is read and the data rebuilt. Fewer than `k`
//! usable pieces is [`ObjectError::Unavailable`]; a partial object is never served.
pub mod deployment;
pub mod meta;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::hash::Hasher;
use std::ops::Bound;
use std::rc::Rc;

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use siphasher::sip128::{Hasher128, SipHasher13};

use crate::erasure::{new_codec, BoxedCodec, CodecKind};
use crate::format::ShardKey;
use crate::io::Io;
use crate::store::{PieceBuf, ShardStore, StoreError};
pub use deployment::{Deployment, DriveStatus};
mod cache;
pub use cache::CacheStats;
use cache::{CacheKey, ReadCache};
pub use meta::{BucketInfo, DataLayout, Extent, Geometry, ObjectInfo, PartInfo, PartSummary, UploadInfo};
use meta::{MetaEntry, MetaRecord, META_PIECE};

/// Objects written at once on one core; more get [`ObjectError::SlowDown`]. Each
/// holds up to one group of data and its pieces in memory.
pub const WRITERS_PER_CORE_MAX: usize = 64;
/// Pieces deletions queued for the background deleter; beyond it, garbage waits for
/// the start-up sweep.
const DELETE_QUEUE_MAX: usize = 4096;
/// Shard length rounding of short stripes (SIMD-friendly for both codecs).
const SHORT_SHARD_ALIGN: usize = 64;
/// Groups per extent must fit the piece number's upper 24 bits.
const GROUPS_PER_EXTENT_MAX: u64 = (1 << 24) - 1;
/// Parts of a multipart upload.
pub const PARTS_MAX: u32 = 10_000;

#[derive(Debug, Clone)]
pub struct ObjectConfig {
    /// Objects up to this size are stored inline in their replicated metadata.
    pub inline_bytes_max: usize,
    /// Bytes of this core's read cache (see [`cache`]); 0 turns it off.
    pub cache_bytes: u64,
}

impl Default for ObjectConfig {
    fn default() -> Self {
        ObjectConfig { inline_bytes_max: 128 << 10, cache_bytes: 0 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("no such bucket")]
    NoSuchBucket,
    #[error("no such key")]
    NoSuchKey,
    #[error("no such upload")]
    NoSuchUpload,
    #[error("precondition failed")]
    PreconditionFailed,
    #[error("a conflicting conditional write is in progress")]
    Conflict,
    #[error("too many drives unavailable: {0}")]
    Unavailable(String),
    #[error("too many writes in progress on this core")]
    SlowDown,
    /// The version looked up was replaced while it was being read; look again.
    #[error("version replaced during the read: {0}")]
    Stale(String),
    #[error("object too large: {0}")]
    TooLarge(String),
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("internal: {0}")]
    Internal(String),
}

pub type ObjectResult<T> = Result<T, ObjectError>;

/// A check of the current version of a key right before a commit replaces it.
pub type Precondition<'a> = &'a dyn Fn(Option<&ObjectInfo>) -> bool;

fn keyed_hasher(key: u128) -> SipHasher13 {
    SipHasher13::new_with_keys(key as u64, (key >> 64) as u64)
}

fn write_field(h: &mut SipHasher13, s: &[u8]) {
    h.write_u64(s.len() as u64);
    h.write(s);
}

/// How keys map to partitions and metadata records to store keys: the keyed
/// hash of a deployment (embedded) or a cluster. Crafted keys cannot pile onto one
/// partition without the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keyspace {
    pub hash_key: u128,
    pub partitions: u32,
}

impl Keyspace {
    /// The partition of an object key. Uploads and parts of a key share it.
    pub fn partition_of(&self, bucket: &str, key: &str) -> u32 {
        let mut h = keyed_hasher(self.hash_key);
        write_field(&mut h, bucket.as_bytes());
        write_field(&mut h, key.as_bytes());
        (h.finish() % self.partitions as u64) as u32
    }

    fn identity(&self, tag: u8, fields: &[&[u8]]) -> u128 {
        let mut h = keyed_hasher(self.hash_key.rotate_left(64) ^ 0x7465_7373_6572_6121);
        h.write_u8(tag);
        for f in fields {
            write_field(&mut h, f);
        }
        h.finish128().as_u128()
    }

    /// The store key of the metadata record for `entry`'s identity.
    pub fn meta_key(&self, entry: &MetaEntry) -> ShardKey {
        let (partition, object) = match entry {
            MetaEntry::Bucket { name, .. } => (Deployment::BUCKET_PARTITION, self.identity(1, &[name.as_bytes()])),
            MetaEntry::Object { bucket, key, .. } => {
                (self.partition_of(bucket, key), self.identity(2, &[bucket.as_bytes(), key.as_bytes()]))
            }
            MetaEntry::Upload { bucket, key, upload_id, .. } => (
                self.partition_of(bucket, key),
                self.identity(3, &[bucket.as_bytes(), key.as_bytes(), upload_id.as_bytes()]),
            ),
            MetaEntry::Part { bucket, key, upload_id, part_number, .. } => (
                self.partition_of(bucket, key),
                self.identity(
                    4,
                    &[bucket.as_bytes(), key.as_bytes(), upload_id.as_bytes(), &part_number.to_le_bytes()],
                ),
            ),
        };
        ShardKey { partition, object, piece: META_PIECE }
    }
}

impl Deployment {
    pub fn keyspace(&self) -> Keyspace {
        Keyspace { hash_key: self.hash_key, partitions: self.partitions }
    }

    /// The partition of an object key. Uploads and parts of a key share it.
    pub fn partition_of(&self, bucket: &str, key: &str) -> u32 {
        self.keyspace().partition_of(bucket, key)
    }

    pub fn core_of(&self, bucket: &str, key: &str) -> usize {
        crate::runtime::core_for_partition(self.partition_of(bucket, key), self.cores)
    }

    /// Where bucket records live (core 0 is the catalogue's owner).
    pub const BUCKET_PARTITION: u32 = 0;

    fn meta_key(&self, entry: &MetaEntry) -> ShardKey {
        self.keyspace().meta_key(entry)
    }
}

fn codec_code(kind: CodecKind) -> u8 {
    match kind {
        CodecKind::ReedSolomonSimd => 0,
        CodecKind::IsaL => 1,
    }
}

fn codec_of(code: u8) -> Option<CodecKind> {
    match code {
        0 => Some(CodecKind::ReedSolomonSimd),
        1 => Some(CodecKind::IsaL),
        _ => None,
    }
}

impl Geometry {
    fn k(&self) -> usize {
        self.k as usize
    }
    fn n(&self) -> usize {
        self.k as usize + self.m as usize
    }
    fn stripe_bytes(&self) -> u64 {
        self.k as u64 * self.chunk_bytes as u64
    }
    fn group_bytes(&self) -> u64 {
        self.stripe_bytes() * self.group_stripes as u64
    }
    fn drive_of(&self, slot: usize) -> usize {
        (self.first_drive as usize + slot) % self.drives as usize
    }
    /// Shard length of a stripe holding `data_len` bytes.
    fn shard_len(&self, data_len: u64) -> usize {
        if data_len >= self.stripe_bytes() {
            self.chunk_bytes as usize
        } else {
            let per = data_len.div_ceil(self.k as u64) as usize;
            per.div_ceil(SHORT_SHARD_ALIGN).max(1) * SHORT_SHARD_ALIGN
        }
    }
}

fn piece_key(partition: u32, data_id: u128, group: u64, slot: usize) -> ShardKey {
    debug_assert!(group < GROUPS_PER_EXTENT_MAX && slot < 256);
    ShardKey { partition, object: data_id, piece: ((group as u32) << 8) | slot as u32 }
}

/// An object as the index holds it (inline bytes dropped).
#[derive(Debug, Clone)]
pub struct ObjectMeta {
    pub version: u64,
    pub info: Rc<ObjectInfo>,
    /// Drives holding the metadata record (and so the inline bytes).
    replicas: Vec<u8>,
}

#[derive(Debug, Clone)]
struct UploadEntry {
    info: UploadInfo,
    replicas: Vec<u8>,
    parts: BTreeMap<u32, PartEntry>,
}

#[derive(Debug, Clone)]
struct PartEntry {
    info: PartInfo,
    replicas: Vec<u8>,
}

#[derive(Debug, Clone)]
struct BucketEntry {
    created_ms: i64,
    replicas: Vec<u8>,
    /// Set while a DeleteBucket checks emptiness: writes are refused meanwhile.
    deleting: bool,
}

/// One item of a listing, in key order.
#[derive(Debug, Clone)]
pub enum ListItem {
    Object { key: String, info: Rc<ObjectInfo> },
    Prefix(String),
}

impl ListItem {
    pub fn name(&self) -> &str {
        match self {
            ListItem::Object { key, .. } => key,
            ListItem::Prefix(p) => p,
        }
    }
}

/// A multipart upload as listed.
#[derive(Debug, Clone)]
pub struct UploadSummary {
    pub key: String,
    pub upload_id: String,
    pub initiated_ms: i64,
}

#[derive(Default)]
struct MetaState {
    buckets: BTreeMap<String, BucketEntry>,
    objects: BTreeMap<String, BTreeMap<String, ObjectMeta>>,
    uploads: BTreeMap<(String, String, String), UploadEntry>,
    /// References to each data id from objects and parts.
    data_refs: HashMap<u128, u32>,
    /// Reads in progress per data id: deletion waits for them.
    readers: HashMap<u128, u32>,
    /// Unreferenced extents whose deletion waits for readers.
    doomed: HashMap<u128, (u32, Extent)>,
    /// Keys with a conditional write between check and apply.
    committing: std::collections::HashSet<(String, String)>,
}

/// Per-drive state for the operator and metrics.
#[derive(Debug, Clone)]
pub struct DriveState {
    pub drive: usize,
    pub online: bool,
    pub reason: Option<String>,
}

/// Counters of this core's object layer.
#[derive(Debug, Clone, Default)]
pub struct ObjectStats {
    pub objects: usize,
    pub uploads: usize,
    pub degraded_reads: u64,
    pub pieces_failed: u64,
    pub orphans_removed: u64,
    pub cache: CacheStats,
}

/// One core's object layer. Not `Send`: it lives on the core that owns its
/// partitions.
pub struct ObjectLayer<I: Io> {
    core: usize,
    dep: Deployment,
    cfg: ObjectConfig,
    stores: Rc<Vec<Option<ShardStore<I>>>>,
    /// Why a drive stopped being used at run time (write or read IO errors).
    drive_errors: RefCell<Vec<Option<String>>>,
    codecs: RefCell<HashMap<(u8, u8, u8), BoxedCodec>>,
    state: RefCell<MetaState>,
    rng: RefCell<rand::rngs::SmallRng>,
    next_version: Cell<u64>,
    writers: Cell<usize>,
    stats: RefCell<ObjectStats>,
    deleter: RefCell<Option<flume::Sender<(u32, Extent)>>>,
    /// Recently completed uploads (bucket, key, upload id, ETag): a repeated
    /// CompleteMultipartUpload of the same upload succeeds, as in S3.
    completed: RefCell<std::collections::VecDeque<(String, String, String, String)>>,
    cache: RefCell<ReadCache>,
    /// Stripe reads in progress for the cache, with the reads waiting on them: a
    /// burst of requests for the same new stripe reads the drives once.
    loading: RefCell<HashMap<CacheKey, Vec<futures::channel::oneshot::Sender<Bytes>>>>,
}

/// Completed uploads remembered for repeated completions.
const COMPLETED_UPLOADS_REMEMBERED_MAX: usize = 1024;

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Whether a store error means "this piece is unusable here" (try the others) as
/// opposed to a bug.
fn piece_unusable(e: &StoreError) -> bool {
    !matches!(e, StoreError::Config(_) | StoreError::TooLarge { .. })
}

impl<I: Io> ObjectLayer<I> {
    /// Rebuilds this core's metadata index from the replicas on every online drive
    /// and removes pieces no metadata references (left by a crash mid-write).
    /// Returns the layer and its background deleter, which the caller spawns.
    pub async fn open(
        core: usize,
        dep: Deployment,
        cfg: ObjectConfig,
        stores: Rc<Vec<Option<ShardStore<I>>>>,
    ) -> ObjectResult<(Rc<Self>, impl std::future::Future<Output = ()>)> {
        if stores.len() != dep.drives {
            return Err(ObjectError::Internal(format!("{} stores for {} drives", stores.len(), dep.drives)));
        }
        let codec = dep.codec;
        if !codec.is_available() {
            return Err(ObjectError::Internal(format!("the deployment's codec {codec} is not in this build")));
        }
        let (tx, rx) = flume::bounded::<(u32, Extent)>(DELETE_QUEUE_MAX);
        let cache = RefCell::new(ReadCache::new(cfg.cache_bytes));
        let layer = Rc::new(ObjectLayer {
            core,
            cfg,
            stores,
            drive_errors: RefCell::new(vec![None; dep.drives]),
            codecs: RefCell::new(HashMap::new()),
            state: RefCell::new(MetaState::default()),
            rng: RefCell::new(rand::rngs::SmallRng::from_entropy()),
            next_version: Cell::new(1),
            writers: Cell::new(0),
            stats: RefCell::new(ObjectStats::default()),
            deleter: RefCell::new(Some(tx)),
            completed: RefCell::new(std::collections::VecDeque::new()),
            cache,
            loading: RefCell::new(HashMap::new()),
            dep,
        });
        layer.recover().await?;
        let weak = Rc::downgrade(&layer);
        let deleter = async move {
            while let Ok((partition, extent)) = rx.recv_async().await {
                let Some(layer) = weak.upgrade() else { break };
                layer.delete_pieces(partition, &extent).await;
            }
        };
        Ok((layer, deleter))
    }

    pub fn deployment(&self) -> &Deployment {
        &self.dep
    }

    pub fn core(&self) -> usize {
        self.core
    }

    pub fn stores(&self) -> &Rc<Vec<Option<ShardStore<I>>>> {
        &self.stores
    }

    /// Stops the background deleter (pending deletions are left for the start-up sweep).
    pub fn shutdown(&self) {
        self.deleter.borrow_mut().take();
    }

    pub fn stats(&self) -> ObjectStats {
        let mut s = self.stats.borrow().clone();
        let st = self.state.borrow();
        s.objects = st.objects.values().map(|m| m.len()).sum();
        s.uploads = st.uploads.len();
        s.cache = self.cache.borrow().stats();
        s
    }

    pub fn drive_states(&self) -> Vec<DriveState> {
        let errs = self.drive_errors.borrow();
        (0..self.dep.drives)
            .map(|d| {
                let reason =
                    if self.stores[d].is_none() { Some("offline at start".to_string()) } else { errs[d].clone() };
                DriveState { drive: d, online: reason.is_none(), reason }
            })
            .collect()
    }

    fn store(&self, drive: usize) -> Option<&ShardStore<I>> {
        if self.drive_errors.borrow()[drive].is_some() {
            return None;
        }
        self.stores[drive].as_ref()
    }

    /// Takes a drive out of service after an IO failure (fail-stop: the store
    /// refuses further writes anyway, and reads from a failing disk are suspect).
    fn note_failure(&self, drive: usize, e: &StoreError) {
        self.stats.borrow_mut().pieces_failed += 1;
        if matches!(e, StoreError::Io(_) | StoreError::Failed(_) | StoreError::Closed) {
            let mut errs = self.drive_errors.borrow_mut();
            if errs[drive].is_none() {
                tracing::error!(core = self.core, drive, error = %e, "drive taken out of service");
                errs[drive] = Some(e.to_string());
            }
        }
    }

    fn codec_for(&self, g: &Geometry) -> ObjectResult<std::cell::RefMut<'_, BoxedCodec>> {
        let id = (g.codec, g.k, g.m);
        let mut codecs = self.codecs.borrow_mut();
        if let std::collections::hash_map::Entry::Vacant(slot) = codecs.entry(id) {
            let kind = codec_of(g.codec).ok_or_else(|| ObjectError::Internal(format!("unknown codec {}", g.codec)))?;
            slot.insert(new_codec(kind, g.k as usize, g.m as usize).map_err(|e| ObjectError::Internal(e.to_string()))?);
        }
        Ok(std::cell::RefMut::map(codecs, |c| c.get_mut(&id).expect("inserted above")))
    }

    fn take_version(&self) -> u64 {
        let v = self.next_version.get();
        self.next_version.set(v + 1);
        v
    }

    fn new_data_id(&self) -> u128 {
        self.rng.borrow_mut().gen::<u128>()
    }

    // ----- metadata replication -------------------------------------------------

    /// Writes a metadata record to `m + 1` drives, preferring `prefer` (the drives
    /// holding the previous record, so it is replaced rather than left behind), then
    /// the partition's rotation. Returns the drives that hold it.
    async fn write_meta(&self, rec: &MetaRecord, prefer: &[u8]) -> ObjectResult<Vec<u8>> {
        let key = self.dep.meta_key(&rec.entry);
        let bytes = meta::encode(rec);
        if bytes.len() > meta::META_RECORD_BYTES_MAX {
            return Err(ObjectError::TooLarge(format!("metadata of {} bytes", bytes.len())));
        }
        let need = self.dep.m + 1;
        let n = self.dep.drives;
        let mut order: Vec<usize> = prefer.iter().map(|&d| d as usize).filter(|&d| d < n).collect();
        for i in 0..n {
            let d = (key.partition as usize + i) % n;
            if !order.contains(&d) {
                order.push(d);
            }
        }
        let mut done: Vec<u8> = Vec::with_capacity(need);
        let mut next = 0;
        while done.len() < need {
            let mut batch = Vec::new();
            while batch.len() + done.len() < need && next < order.len() {
                let d = order[next];
                next += 1;
                if self.store(d).is_some() {
                    batch.push(d);
                }
            }
            if batch.is_empty() {
                return Err(ObjectError::Unavailable(format!(
                    "metadata needs {need} drives, {} accepted the write",
                    done.len()
                )));
            }
            let writes = batch.iter().map(|&d| {
                let bytes = &bytes;
                async move {
                    let Some(s) = self.store(d) else { return (d, Err(StoreError::Closed)) };
                    (d, s.put(key, bytes).await)
                }
            });
            for (d, r) in futures::future::join_all(writes).await {
                match r {
                    Ok(_) => done.push(d as u8),
                    Err(e) => self.note_failure(d, &e),
                }
            }
        }
        Ok(done)
    }

    /// Reads the metadata record of `entry`'s identity from one of `replicas`,
    /// requiring `version` (a replica holding another version is skipped).
    async fn read_meta(&self, entry: &MetaEntry, version: u64, replicas: &[u8]) -> ObjectResult<MetaRecord> {
        let key = self.dep.meta_key(entry);
        let mut last = String::from("no replica online");
        let mut newer = false;
        for &d in replicas {
            let d = d as usize;
            let Some(s) = self.store(d) else { continue };
            match s.get(key).await {
                Ok(buf) => match meta::decode(&buf) {
                    Ok(rec) if rec.version == version => return Ok(rec),
                    Ok(rec) => {
                        newer |= rec.version > version;
                        last = format!("drive {d} holds version {} not {version}", rec.version)
                    }
                    Err(e) => last = format!("drive {d}: {e}"),
                },
                Err(e) => {
                    if piece_unusable(&e) {
                        self.note_failure(d, &e);
                    }
                    last = format!("drive {d}: {e}");
                }
            }
        }
        if newer {
            // A write of the key replaced this version on its replicas and is about to
            // be applied: the caller looks the key up again.
            return Err(ObjectError::Stale(last));
        }
        Err(ObjectError::Unavailable(format!("metadata unreadable: {last}")))
    }

    // ----- recovery --------------------------------------------------------------

    async fn recover(&self) -> ObjectResult<()> {
        struct Seen {
            rec: MetaRecord,
            drives: Vec<u8>,
        }
        let mut best: HashMap<u128, Seen> = HashMap::new();
        let mut data: HashMap<u128, u32> = HashMap::new();
        let mut max_version = 0u64;
        // Bucket records live in partition 0, which core 0 owns like any other.
        let partitions: Vec<u32> = (0..self.dep.partitions)
            .filter(|&p| crate::runtime::core_for_partition(p, self.dep.cores) == self.core)
            .collect();
        for d in 0..self.dep.drives {
            let Some(store) = self.store(d) else { continue };
            for &p in &partitions {
                for (key, _len) in store.list_partition(p) {
                    if key.piece != META_PIECE {
                        data.insert(key.object, p);
                        continue;
                    }
                    let rec = match store.get(key).await {
                        Ok(buf) => match meta::decode(&buf) {
                            Ok(r) => r,
                            Err(e) => {
                                tracing::warn!(core = self.core, drive = d, ?key, error = %e, "bad metadata record skipped");
                                continue;
                            }
                        },
                        Err(e) => {
                            tracing::warn!(core = self.core, drive = d, ?key, error = %e, "unreadable metadata record skipped");
                            continue;
                        }
                    };
                    if self.dep.meta_key(&rec.entry) != key {
                        tracing::warn!(
                            core = self.core,
                            drive = d,
                            ?key,
                            "metadata record under a foreign key skipped"
                        );
                        continue;
                    }
                    max_version = max_version.max(rec.version);
                    match best.get_mut(&key.object) {
                        Some(s) if s.rec.version == rec.version => s.drives.push(d as u8),
                        Some(s) if s.rec.version > rec.version => {}
                        _ => {
                            best.insert(key.object, Seen { rec, drives: vec![d as u8] });
                        }
                    }
                }
            }
        }
        self.next_version.set(max_version + 1);
        // The index is built without awaiting: no borrow is held across IO.
        let orphans: Vec<(u128, u32)> = {
            let mut st = self.state.borrow_mut();
            let mut parts: Vec<(String, String, String, u32, PartEntry)> = Vec::new();
            for (_, seen) in best {
                let version = seen.rec.version;
                match seen.rec.entry {
                    MetaEntry::Bucket { name, bucket: Some(b) } => {
                        st.buckets.insert(
                            name,
                            BucketEntry { created_ms: b.created_ms, replicas: seen.drives, deleting: false },
                        );
                    }
                    MetaEntry::Object { bucket, key, object: Some(mut info) } => {
                        if let DataLayout::Inline(bytes) = &mut info.data {
                            *bytes = Vec::new();
                        }
                        add_refs(&mut st.data_refs, &info.data);
                        st.objects
                            .entry(bucket)
                            .or_default()
                            .insert(key, ObjectMeta { version, info: Rc::new(info), replicas: seen.drives });
                    }
                    MetaEntry::Upload { bucket, key, upload_id, upload: Some(info) } => {
                        st.uploads.insert(
                            (bucket, key, upload_id),
                            UploadEntry { info, replicas: seen.drives, parts: BTreeMap::new() },
                        );
                    }
                    MetaEntry::Part { bucket, key, upload_id, part_number, part: Some(info) } => {
                        parts.push((bucket, key, upload_id, part_number, PartEntry { info, replicas: seen.drives }));
                    }
                    _ => {} // deletion markers: nothing to index
                }
            }
            // A completed upload whose cleanup the crash interrupted: its parts are the
            // object's extents now. Drop the upload from the index (its records are
            // tombstoned lazily by a later abort/complete of the same id: never).
            let object_refs = st.data_refs.clone();
            for (bucket, key, upload_id, n, part) in parts {
                let id = (bucket, key, upload_id);
                if let Some(u) = st.uploads.get_mut(&id) {
                    u.parts.insert(n, part);
                }
            }
            let finished: Vec<_> = st
                .uploads
                .iter()
                .filter(|(_, u)| u.parts.values().any(|p| object_refs.contains_key(&p.info.extent.data_id)))
                .map(|(k, _)| k.clone())
                .collect();
            for k in finished {
                st.uploads.remove(&k);
            }
            let part_extents: Vec<Extent> =
                st.uploads.values().flat_map(|u| u.parts.values().map(|p| p.info.extent)).collect();
            for e in part_extents {
                *st.data_refs.entry(e.data_id).or_default() += 1;
            }
            // Pieces nobody references: a crash between data and metadata.
            data.into_iter().filter(|(id, _)| !st.data_refs.contains_key(id)).collect()
        };
        for (id, p) in orphans {
            let mut removed = 0;
            for d in 0..self.dep.drives {
                let Some(store) = self.store(d) else { continue };
                for (key, _) in store.list_partition(p).into_iter().filter(|(k, _)| k.object == id) {
                    if store.delete(key).await.is_ok() {
                        removed += 1;
                    }
                }
            }
            self.stats.borrow_mut().orphans_removed += removed;
        }
        Ok(())
    }

    // ----- buckets (the catalogue's owner is core 0; others hold copies) --------

    pub fn bucket_exists(&self, name: &str) -> bool {
        self.state.borrow().buckets.get(name).is_some_and(|b| !b.deleting)
    }

    pub fn buckets(&self) -> Vec<(String, i64)> {
        self.state.borrow().buckets.iter().map(|(n, b)| (n.clone(), b.created_ms)).collect()
    }

    /// Core 0: persists a new bucket. `Ok(None)` when it already exists.
    pub async fn create_bucket(&self, name: &str) -> ObjectResult<Option<i64>> {
        if self.state.borrow().buckets.contains_key(name) {
            return Ok(None);
        }
        let created_ms = now_ms();
        let version = self.take_version();
        let rec = MetaRecord {
            version,
            entry: MetaEntry::Bucket { name: name.to_string(), bucket: Some(BucketInfo { created_ms }) },
        };
        let replicas = self.write_meta(&rec, &[]).await?;
        let mut st = self.state.borrow_mut();
        if st.buckets.contains_key(name) {
            return Ok(None); // a concurrent create won
        }
        st.buckets.insert(name.to_string(), BucketEntry { created_ms, replicas, deleting: false });
        Ok(Some(created_ms))
    }

    /// Other cores: mirror the catalogue owner's change.
    pub fn apply_bucket(&self, name: &str, created_ms: Option<i64>) {
        let mut st = self.state.borrow_mut();
        match created_ms {
            Some(c) => {
                st.buckets.insert(name.to_string(), BucketEntry { created_ms: c, replicas: vec![], deleting: false });
            }
            None => {
                st.buckets.remove(name);
            }
        }
    }

    /// Marks (or unmarks) a bucket as being deleted: object writes are refused
    /// while the emptiness check runs. Returns whether the bucket exists.
    pub fn set_bucket_deleting(&self, name: &str, deleting: bool) -> bool {
        match self.state.borrow_mut().buckets.get_mut(name) {
            Some(b) => {
                b.deleting = deleting;
                true
            }
            None => false,
        }
    }

    /// Whether this core holds any object of `bucket`.
    pub fn bucket_has_objects(&self, bucket: &str) -> bool {
        self.state.borrow().objects.get(bucket).is_some_and(|m| !m.is_empty())
    }

    /// Core 0: persists a bucket's deletion.
    pub async fn delete_bucket(&self, name: &str) -> ObjectResult<()> {
        let replicas = match self.state.borrow().buckets.get(name) {
            Some(b) => b.replicas.clone(),
            None => return Err(ObjectError::NoSuchBucket),
        };
        let rec = MetaRecord {
            version: self.take_version(),
            entry: MetaEntry::Bucket { name: name.to_string(), bucket: None },
        };
        self.write_meta(&rec, &replicas).await?;
        self.state.borrow_mut().buckets.remove(name);
        Ok(())
    }

    /// Aborts every upload of a bucket being deleted (S3 drops them with it).
    pub async fn drop_bucket_uploads(&self, bucket: &str) -> ObjectResult<()> {
        let ids: Vec<(String, String, String)> =
            self.state.borrow().uploads.keys().filter(|(b, _, _)| b == bucket).cloned().collect();
        for (b, k, u) in ids {
            self.abort_upload(&b, &k, &u).await?;
        }
        self.state.borrow_mut().objects.remove(bucket);
        Ok(())
    }

    // ----- objects ---------------------------------------------------------------

    pub fn head(&self, bucket: &str, key: &str) -> ObjectResult<ObjectMeta> {
        let st = self.state.borrow();
        if !st.buckets.contains_key(bucket) {
            return Err(ObjectError::NoSuchBucket);
        }
        st.objects.get(bucket).and_then(|m| m.get(key)).cloned().ok_or(ObjectError::NoSuchKey)
    }

    fn check_bucket_writable(&self, bucket: &str) -> ObjectResult<()> {
        if self.bucket_exists(bucket) {
            Ok(())
        } else {
            Err(ObjectError::NoSuchBucket)
        }
    }

    /// Starts writing the data of an object (or a part) of `bucket`/`key`.
    pub fn writer(self: &Rc<Self>, bucket: &str, key: &str, allow_inline: bool) -> ObjectResult<DataWriter<I>> {
        self.check_bucket_writable(bucket)?;
        if self.writers.get() >= WRITERS_PER_CORE_MAX {
            return Err(ObjectError::SlowDown);
        }
        let partition = self.dep.partition_of(bucket, key);
        let geometry = Geometry {
            k: self.dep.k as u8,
            m: self.dep.m as u8,
            codec: codec_code(self.dep.codec),
            chunk_bytes: self.dep.chunk_bytes,
            group_stripes: self.dep.group_stripes,
            first_drive: (partition as usize % self.dep.drives) as u16,
            drives: self.dep.drives as u16,
        };
        self.writers.set(self.writers.get() + 1);
        Ok(DataWriter {
            layer: self.clone(),
            partition,
            data_id: self.new_data_id(),
            geometry,
            buf: Vec::new(),
            staged: None,
            group_len: 0,
            size: 0,
            groups: 0,
            missing_slots: 0,
            inline_max: if allow_inline { self.cfg.inline_bytes_max } else { 0 },
            finished: false,
        })
    }

    /// Commits an object whose data is written. `precondition` sees the current
    /// version (if any) right before the commit and may refuse it. Returns the
    /// committed metadata.
    pub async fn commit_object(
        &self,
        bucket: &str,
        key: &str,
        info: ObjectInfo,
        precondition: Option<Precondition<'_>>,
    ) -> ObjectResult<ObjectMeta> {
        self.check_bucket_writable(bucket)?;
        let id = (bucket.to_string(), key.to_string());
        let (prefer, guard) = {
            let mut st = self.state.borrow_mut();
            let cur = st.objects.get(bucket).and_then(|m| m.get(key));
            let prefer = cur.map(|c| c.replicas.clone()).unwrap_or_default();
            if let Some(pre) = precondition {
                // A conditional write holds the key from check to apply, so two
                // conditional writers cannot both see "absent" (S3 answers 409).
                if st.committing.contains(&id) {
                    return Err(ObjectError::Conflict);
                }
                if !pre(cur.map(|c| &*c.info)) {
                    return Err(ObjectError::PreconditionFailed);
                }
                st.committing.insert(id.clone());
                (prefer, Some(CommitGuard { layer: self, id: id.clone() }))
            } else {
                (prefer, None)
            }
        };
        let version = self.take_version();
        let mut rec = MetaRecord {
            version,
            entry: MetaEntry::Object { bucket: bucket.to_string(), key: key.to_string(), object: Some(info) },
        };
        let replicas = self.write_meta(&rec, &prefer).await?;
        let MetaEntry::Object { object: Some(mut info), .. } = std::mem::replace(
            &mut rec.entry,
            MetaEntry::Object { bucket: String::new(), key: String::new(), object: None },
        ) else {
            unreachable!("built above")
        };
        if let DataLayout::Inline(bytes) = &mut info.data {
            // Just written, likely read soon (a CDN's first fetch): cached, keyed by
            // the version, so a reader of an older version never sees these bytes.
            let partition = self.dep.partition_of(bucket, key);
            self.cache.borrow_mut().insert(CacheKey::Inline { partition, version }, Bytes::from(std::mem::take(bytes)));
        }
        let meta = ObjectMeta { version, info: Rc::new(info), replicas };
        self.apply_object(bucket, key, Some(meta.clone()));
        drop(guard);
        Ok(meta)
    }

    /// Index update in version order; releases the data of what it replaces.
    fn apply_object(&self, bucket: &str, key: &str, new: Option<ObjectMeta>) {
        let mut released = Vec::new();
        {
            let mut st = self.state.borrow_mut();
            let st = &mut *st;
            let objs = st.objects.entry(bucket.to_string()).or_default();
            let cur_version = objs.get(key).map_or(0, |c| c.version);
            match new {
                Some(m) if m.version > cur_version => {
                    add_refs(&mut st.data_refs, &m.info.data);
                    if let Some(old) = objs.insert(key.to_string(), m) {
                        released.push(old.info);
                    }
                }
                Some(m) => released.push(m.info), // overtaken by a later version
                None => {
                    if let Some(old) = objs.remove(key) {
                        released.push(old.info);
                    }
                }
            }
            let partition = self.dep.partition_of(bucket, key);
            for info in &released {
                if let DataLayout::Extents(exts) = &info.data {
                    for e in exts {
                        drop_ref(st, partition, *e);
                    }
                }
            }
        }
        self.flush_doomed();
    }

    /// Deletes an object. Deleting an absent key succeeds (S3 semantics).
    pub async fn delete_object(&self, bucket: &str, key: &str) -> ObjectResult<bool> {
        let cur = {
            let st = self.state.borrow();
            if !st.buckets.contains_key(bucket) {
                return Err(ObjectError::NoSuchBucket);
            }
            st.objects.get(bucket).and_then(|m| m.get(key)).map(|c| c.replicas.clone())
        };
        let Some(prefer) = cur else { return Ok(false) };
        let version = self.take_version();
        let rec = MetaRecord {
            version,
            entry: MetaEntry::Object { bucket: bucket.to_string(), key: key.to_string(), object: None },
        };
        self.write_meta(&rec, &prefer).await?;
        let st = self.state.borrow();
        let newer = st.objects.get(bucket).and_then(|m| m.get(key)).is_some_and(|c| c.version > version);
        drop(st);
        if !newer {
            self.apply_object(bucket, key, None);
        }
        Ok(true)
    }

    /// Whether enough drives are in service to read every stripe of `meta` (with
    /// reconstruction if needed). Checked before a response starts, so a client gets
    /// a clean error instead of a connection cut mid-body. Corruption found while
    /// reading can still end a response early.
    pub fn check_readable(&self, meta: &ObjectMeta) -> ObjectResult<()> {
        let DataLayout::Extents(exts) = &meta.info.data else {
            return if meta.replicas.iter().any(|&d| self.store(d as usize).is_some()) {
                Ok(())
            } else {
                Err(ObjectError::Unavailable("no drive holding the object's metadata is in service".into()))
            };
        };
        for e in exts {
            let g = e.geometry;
            let usable =
                (0..g.n()).filter(|&s| e.missing_slots & (1 << s) == 0 && self.store(g.drive_of(s)).is_some()).count();
            if usable < g.k() {
                return Err(ObjectError::Unavailable(format!(
                    "{usable} of {} drives holding the object's pieces are in service, {} needed",
                    g.n(),
                    g.k()
                )));
            }
        }
        Ok(())
    }

    /// Drops data that was written but whose commit failed (precondition, metadata
    /// write): it is deleted unless something references it after all.
    pub fn discard(&self, bucket: &str, key: &str, data: &DataLayout) {
        let DataLayout::Extents(exts) = data else { return };
        let partition = self.dep.partition_of(bucket, key);
        {
            let mut st = self.state.borrow_mut();
            for e in exts {
                drop_ref_unreferenced(&mut st, partition, *e);
            }
        }
        self.flush_doomed();
    }

    /// Opens a read of `meta`'s data: the data stays until the reader is dropped.
    pub fn reader(self: &Rc<Self>, bucket: &str, key: &str, meta: &ObjectMeta) -> ObjectReader<I> {
        let partition = self.dep.partition_of(bucket, key);
        let extents: Vec<Extent> = match &meta.info.data {
            DataLayout::Extents(e) => e.clone(),
            DataLayout::Inline(_) => vec![],
        };
        {
            let mut st = self.state.borrow_mut();
            for e in &extents {
                *st.readers.entry(e.data_id).or_default() += 1;
            }
        }
        ObjectReader {
            layer: self.clone(),
            partition,
            meta: meta.clone(),
            identity: MetaEntry::Object { bucket: bucket.to_string(), key: key.to_string(), object: None },
            extents,
        }
    }

    fn release_readers(&self, extents: &[Extent]) {
        {
            let mut st = self.state.borrow_mut();
            for e in extents {
                if let Some(n) = st.readers.get_mut(&e.data_id) {
                    *n -= 1;
                    if *n == 0 {
                        st.readers.remove(&e.data_id);
                    }
                }
            }
        }
        self.flush_doomed();
    }

    /// Queues deletion of doomed extents nobody reads any more.
    fn flush_doomed(&self) {
        let ready: Vec<(u32, Extent)> = {
            let mut st = self.state.borrow_mut();
            let ids: Vec<u128> = st.doomed.keys().filter(|id| !st.readers.contains_key(id)).copied().collect();
            ids.into_iter().filter_map(|id| st.doomed.remove(&id)).collect()
        };
        if ready.is_empty() {
            return;
        }
        let tx = self.deleter.borrow();
        for item in ready {
            if let Some(tx) = tx.as_ref() {
                if tx.try_send(item).is_err() {
                    tracing::warn!(core = self.core, "delete queue full: garbage left for the start-up sweep");
                }
            }
        }
    }

    async fn delete_pieces(&self, partition: u32, e: &Extent) {
        let g = e.geometry;
        let groups = e.size.div_ceil(g.group_bytes());
        for group in 0..groups {
            let deletes = (0..g.n()).filter_map(|slot| {
                let d = g.drive_of(slot);
                let s = self.store(d)?;
                Some(async move { (d, s.delete(piece_key(partition, e.data_id, group, slot)).await) })
            });
            for (d, r) in futures::future::join_all(deletes).await {
                if let Err(err) = r {
                    if !matches!(err, StoreError::NotFound(_)) {
                        self.note_failure(d, &err);
                    }
                }
            }
        }
    }

    /// Objects of `bucket` in key order: keys starting with `prefix`, strictly
    /// after `after`; with a delimiter, keys sharing the part up to the first
    /// delimiter after the prefix collapse into one [`ListItem::Prefix`]. At most
    /// `max` items.
    pub fn list(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        after: Option<&str>,
        max: usize,
    ) -> ObjectResult<Vec<ListItem>> {
        let st = self.state.borrow();
        if !st.buckets.contains_key(bucket) {
            return Err(ObjectError::NoSuchBucket);
        }
        let mut out = Vec::new();
        let Some(objs) = st.objects.get(bucket) else { return Ok(out) };
        let mut from: Bound<String> = match after {
            Some(a) if a >= prefix => Bound::Excluded(a.to_string()),
            _ => Bound::Included(prefix.to_string()),
        };
        'outer: while out.len() < max {
            let mut range = objs.range::<String, _>((from.clone(), Bound::Unbounded));
            loop {
                let Some((key, m)) = range.next() else { break 'outer };
                if !key.starts_with(prefix) {
                    break 'outer;
                }
                if let Some(d) = delimiter.filter(|d| !d.is_empty()) {
                    if let Some(pos) = key[prefix.len()..].find(d) {
                        let cp = &key[..prefix.len() + pos + d.len()];
                        if after.is_none_or(|a| cp > a) {
                            out.push(ListItem::Prefix(cp.to_string()));
                        }
                        // Skip every key under this prefix.
                        match successor(cp) {
                            Some(next) => {
                                from = Bound::Included(next);
                                continue 'outer;
                            }
                            None => {
                                from = Bound::Excluded(key.clone());
                                continue 'outer;
                            }
                        }
                    }
                }
                out.push(ListItem::Object { key: key.clone(), info: m.info.clone() });
                if out.len() >= max {
                    break 'outer;
                }
            }
        }
        Ok(out)
    }

    // ----- multipart uploads -------------------------------------------------------

    pub async fn create_upload(&self, bucket: &str, key: &str, headers: Vec<(String, String)>) -> ObjectResult<String> {
        self.check_bucket_writable(bucket)?;
        let upload_id = {
            let mut rng = self.rng.borrow_mut();
            format!("{:032x}", rng.gen::<u128>())
        };
        let info = UploadInfo { initiated_ms: now_ms(), headers };
        let version = self.take_version();
        let rec = MetaRecord {
            version,
            entry: MetaEntry::Upload {
                bucket: bucket.into(),
                key: key.into(),
                upload_id: upload_id.clone(),
                upload: Some(info.clone()),
            },
        };
        let replicas = self.write_meta(&rec, &[]).await?;
        self.state.borrow_mut().uploads.insert(
            (bucket.into(), key.into(), upload_id.clone()),
            UploadEntry { info, replicas, parts: BTreeMap::new() },
        );
        Ok(upload_id)
    }

    pub fn upload(&self, bucket: &str, key: &str, upload_id: &str) -> ObjectResult<UploadInfo> {
        let st = self.state.borrow();
        if !st.buckets.contains_key(bucket) {
            return Err(ObjectError::NoSuchBucket);
        }
        st.uploads
            .get(&(bucket.into(), key.into(), upload_id.into()))
            .map(|u| u.info.clone())
            .ok_or(ObjectError::NoSuchUpload)
    }

    /// Records a part whose data is written (replacing a part of the same number).
    pub async fn commit_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        info: PartInfo,
    ) -> ObjectResult<()> {
        if !(1..=PARTS_MAX).contains(&part_number) {
            return Err(ObjectError::Invalid(format!("part number {part_number} outside 1..={PARTS_MAX}")));
        }
        let id = (bucket.to_string(), key.to_string(), upload_id.to_string());
        let prefer = {
            let st = self.state.borrow();
            let u = st.uploads.get(&id).ok_or(ObjectError::NoSuchUpload)?;
            u.parts.get(&part_number).map(|p| p.replicas.clone()).unwrap_or_default()
        };
        let version = self.take_version();
        let rec = MetaRecord {
            version,
            entry: MetaEntry::Part {
                bucket: bucket.into(),
                key: key.into(),
                upload_id: upload_id.into(),
                part_number,
                part: Some(info.clone()),
            },
        };
        let replicas = self.write_meta(&rec, &prefer).await?;
        let partition = self.dep.partition_of(bucket, key);
        let found = {
            let mut st = self.state.borrow_mut();
            let st = &mut *st;
            match st.uploads.get_mut(&id) {
                Some(u) => {
                    let old = u.parts.insert(part_number, PartEntry { info: info.clone(), replicas });
                    *st.data_refs.entry(info.extent.data_id).or_default() += 1;
                    if let Some(old) = old {
                        drop_ref(st, partition, old.info.extent);
                    }
                    true
                }
                None => {
                    // Aborted or completed meanwhile: the part is garbage.
                    drop_ref_unreferenced(st, partition, info.extent);
                    false
                }
            }
        };
        self.flush_doomed();
        if found {
            Ok(())
        } else {
            Err(ObjectError::NoSuchUpload)
        }
    }

    pub fn parts(&self, bucket: &str, key: &str, upload_id: &str) -> ObjectResult<Vec<(u32, PartInfo)>> {
        let st = self.state.borrow();
        if !st.buckets.contains_key(bucket) {
            return Err(ObjectError::NoSuchBucket);
        }
        let u = st.uploads.get(&(bucket.into(), key.into(), upload_id.into())).ok_or(ObjectError::NoSuchUpload)?;
        Ok(u.parts.iter().map(|(n, p)| (*n, p.info.clone())).collect())
    }

    /// Uploads of `bucket` in (key, upload id) order, after the markers.
    pub fn list_uploads(
        &self,
        bucket: &str,
        prefix: &str,
        key_marker: Option<&str>,
        upload_id_marker: Option<&str>,
        max: usize,
    ) -> ObjectResult<Vec<UploadSummary>> {
        let st = self.state.borrow();
        if !st.buckets.contains_key(bucket) {
            return Err(ObjectError::NoSuchBucket);
        }
        let start = (bucket.to_string(), String::new(), String::new());
        let mut out = Vec::new();
        for ((b, k, u), e) in st.uploads.range(start..) {
            if b != bucket {
                break;
            }
            if !k.starts_with(prefix) {
                continue;
            }
            if let Some(km) = key_marker {
                let after = match upload_id_marker {
                    Some(um) if !um.is_empty() => (k.as_str(), u.as_str()) > (km, um),
                    _ => k.as_str() > km,
                };
                if !after {
                    continue;
                }
            }
            out.push(UploadSummary { key: k.clone(), upload_id: u.clone(), initiated_ms: e.info.initiated_ms });
            if out.len() >= max {
                break;
            }
        }
        Ok(out)
    }

    /// Completes an upload with `chosen` parts (in order). `build` checks them and
    /// returns the object's metadata (ETag, size, headers); the extents are set here.
    pub async fn complete_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        chosen: &[u32],
        build: impl FnOnce(&UploadInfo, &[(u32, &PartInfo)]) -> ObjectResult<ObjectInfo>,
        precondition: Option<Precondition<'_>>,
    ) -> ObjectResult<ObjectMeta> {
        let id = (bucket.to_string(), key.to_string(), upload_id.to_string());
        let (info, upload_replicas, part_list) = {
            let st = self.state.borrow();
            if !st.buckets.contains_key(bucket) {
                return Err(ObjectError::NoSuchBucket);
            }
            let u = st.uploads.get(&id).ok_or(ObjectError::NoSuchUpload)?;
            let mut picked = Vec::with_capacity(chosen.len());
            for n in chosen {
                match u.parts.get(n) {
                    Some(p) => picked.push((*n, &p.info)),
                    None => return Err(ObjectError::Invalid(format!("part {n} was not uploaded"))),
                }
            }
            let mut info = build(&u.info, &picked)?;
            info.data = DataLayout::Extents(picked.iter().map(|(_, p)| p.extent).collect());
            info.parts = picked.iter().map(|(_, p)| PartSummary { size: p.size, etag: p.etag.clone() }).collect();
            info.size = picked.iter().map(|(_, p)| p.size).sum();
            let parts: Vec<(u32, Vec<u8>)> = u.parts.iter().map(|(n, p)| (*n, p.replicas.clone())).collect();
            (info, u.replicas.clone(), parts)
        };
        let meta = self.commit_object(bucket, key, info, precondition).await?;
        {
            let mut c = self.completed.borrow_mut();
            if c.len() >= COMPLETED_UPLOADS_REMEMBERED_MAX {
                c.pop_front();
            }
            c.push_back((bucket.into(), key.into(), upload_id.into(), meta.info.etag.clone()));
        }
        // The object now references the chosen parts' data; drop the upload.
        self.remove_upload(bucket, key, upload_id, &upload_replicas, &part_list).await;
        Ok(meta)
    }

    /// The object an upload completed into, if that happened recently and the
    /// object is still that version.
    pub fn completed_upload(&self, bucket: &str, key: &str, upload_id: &str) -> Option<ObjectMeta> {
        let etag = self
            .completed
            .borrow()
            .iter()
            .find(|(b, k, u, _)| b == bucket && k == key && u == upload_id)
            .map(|(_, _, _, e)| e.clone())?;
        self.head(bucket, key).ok().filter(|m| m.info.etag == etag)
    }

    pub async fn abort_upload(&self, bucket: &str, key: &str, upload_id: &str) -> ObjectResult<()> {
        let id = (bucket.to_string(), key.to_string(), upload_id.to_string());
        let (replicas, parts) = {
            let st = self.state.borrow();
            if !st.buckets.contains_key(bucket) {
                return Err(ObjectError::NoSuchBucket);
            }
            let u = st.uploads.get(&id).ok_or(ObjectError::NoSuchUpload)?;
            (u.replicas.clone(), u.parts.iter().map(|(n, p)| (*n, p.replicas.clone())).collect::<Vec<_>>())
        };
        self.remove_upload(bucket, key, upload_id, &replicas, &parts).await;
        Ok(())
    }

    /// Writes the deletion markers of an upload and its parts, then drops them
    /// from the index. Best effort on the markers: an upload whose markers did not
    /// all land is recognised on start-up (its parts belong to an object, or it is
    /// listed again and can be aborted again).
    async fn remove_upload(&self, bucket: &str, key: &str, upload_id: &str, replicas: &[u8], parts: &[(u32, Vec<u8>)]) {
        let id = (bucket.to_string(), key.to_string(), upload_id.to_string());
        let partition = self.dep.partition_of(bucket, key);
        let removed = self.state.borrow_mut().uploads.remove(&id);
        if let Some(u) = removed {
            let mut st = self.state.borrow_mut();
            for p in u.parts.values() {
                drop_ref(&mut st, partition, p.info.extent);
            }
        }
        self.flush_doomed();
        for (n, prefer) in parts {
            let rec = MetaRecord {
                version: self.take_version(),
                entry: MetaEntry::Part {
                    bucket: bucket.into(),
                    key: key.into(),
                    upload_id: upload_id.into(),
                    part_number: *n,
                    part: None,
                },
            };
            if let Err(e) = self.write_meta(&rec, prefer).await {
                tracing::warn!(error = %e, "part deletion marker not written");
            }
        }
        let rec = MetaRecord {
            version: self.take_version(),
            entry: MetaEntry::Upload {
                bucket: bucket.into(),
                key: key.into(),
                upload_id: upload_id.into(),
                upload: None,
            },
        };
        if let Err(e) = self.write_meta(&rec, replicas).await {
            tracing::warn!(error = %e, "upload deletion marker not written");
        }
    }
}

/// The smallest string greater than every string starting with `s`, if any.
fn successor(s: &str) -> Option<String> {
    let mut chars: Vec<char> = s.chars().collect();
    while let Some(c) = chars.pop() {
        let mut n = c as u32 + 1;
        while n <= char::MAX as u32 {
            if let Some(c2) = char::from_u32(n) {
                chars.push(c2);
                return Some(chars.into_iter().collect());
            }
            n += 1;
        }
    }
    None
}

fn add_refs(refs: &mut HashMap<u128, u32>, data: &DataLayout) {
    if let DataLayout::Extents(exts) = data {
        for e in exts {
            *refs.entry(e.data_id).or_default() += 1;
        }
    }
}

fn drop_ref(st: &mut MetaState, partition: u32, e: Extent) {
    if let Some(n) = st.data_refs.get_mut(&e.data_id) {
        *n -= 1;
        if *n > 0 {
            return;
        }
        st.data_refs.remove(&e.data_id);
    }
    st.doomed.insert(e.data_id, (partition, e));
}

fn drop_ref_unreferenced(st: &mut MetaState, partition: u32, e: Extent) {
    if !st.data_refs.contains_key(&e.data_id) {
        st.doomed.insert(e.data_id, (partition, e));
    }
}

struct CommitGuard<'a, I: Io> {
    layer: &'a ObjectLayer<I>,
    id: (String, String),
}

impl<I: Io> Drop for CommitGuard<'_, I> {
    fn drop(&mut self) {
        self.layer.state.borrow_mut().committing.remove(&self.id);
    }
}

/// Streams the data of one object or part into pieces. Dropped unfinished, it
/// deletes what it wrote (Garage's drop guard).
pub struct DataWriter<I: Io> {
    layer: Rc<ObjectLayer<I>>,
    partition: u32,
    data_id: u128,
    geometry: Geometry,
    /// The bytes of an object that may still be stored inline (nothing staged).
    buf: Vec<u8>,
    /// The current group's data, placed in its data slots' pieces as it arrives.
    staged: Option<FullGroup<I>>,
    /// Bytes of the current group so far (in `buf` or `staged`).
    group_len: usize,
    size: u64,
    groups: u64,
    missing_slots: u64,
    inline_max: usize,
    finished: bool,
}

/// A group's data, placed as it arrived straight into the records its `k` data
/// slots' drives write, so the body is copied once on its way to the drives.
/// Byte `o` of a group sits in slot `(o % stripe) / chunk`, at `(o / stripe) *
/// chunk + o % chunk`: the layout of whole stripes, which every group but an
/// extent's last has. A short last group is gathered back into one buffer and
/// coded as such (see [`DataWriter::finish`]).
pub struct FullGroup<I: Io> {
    slots: Vec<PieceOut<I>>,
}

impl<I: Io> DataWriter<I> {
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends bytes, taking at most what completes the current group. When the
    /// group is full it is returned, to be written with [`start_flush`]
    /// (Self::start_flush). Returns how many bytes were taken.
    pub fn push(&mut self, data: &[u8]) -> (usize, Option<FullGroup<I>>) {
        let group = self.geometry.group_bytes() as usize;
        let take = (group - self.group_len).min(data.len());
        let end = self.group_len + take;
        if self.staged.is_none() {
            // An object that may end inline is not coded yet.
            if self.groups == 0 && end <= self.inline_max && end < group {
                self.buf.extend_from_slice(&data[..take]);
                self.group_len = end;
                self.size += take as u64;
                return (take, None);
            }
            let mut staged = self.stage();
            place(&self.geometry, &mut staged, 0, &self.buf);
            self.buf = Vec::new();
            self.staged = Some(staged);
        }
        let staged = self.staged.as_mut().expect("staged above");
        place(&self.geometry, staged, self.group_len, &data[..take]);
        self.group_len = end;
        self.size += take as u64;
        if end == group {
            self.group_len = 0;
            return (take, self.staged.take());
        }
        (take, None)
    }

    /// The pieces of the next group's data slots, to place its bytes in.
    fn stage(&self) -> FullGroup<I> {
        let g = &self.geometry;
        let piece_len = g.group_stripes as usize * g.chunk_bytes as usize;
        FullGroup {
            slots: piece_outs(
                &self.layer,
                self.partition,
                self.data_id,
                g,
                self.groups,
                self.missing_slots,
                0..g.k(),
                piece_len,
            ),
        }
    }

    /// Starts encoding and writing a full group. The future owns what it needs, so
    /// the caller can take in the next group's bytes while this one's IO runs (one
    /// flush in flight keeps the drives busy without more memory per upload). Hand
    /// its outcome to [`flushed`](Self::flushed).
    pub fn start_flush(&mut self, full: FullGroup<I>) -> impl std::future::Future<Output = FlushOutcome> + 'static {
        let group = self.groups;
        self.groups += 1;
        let (layer, partition, data_id, g, missing) =
            (self.layer.clone(), self.partition, self.data_id, self.geometry, self.missing_slots);
        async move {
            let piece_len = g.group_stripes as usize * g.chunk_bytes as usize;
            let mut outs = full.slots;
            outs.extend(piece_outs(&layer, partition, data_id, &g, group, missing, g.k()..g.n(), piece_len));
            let shards = vec![g.chunk_bytes as usize; g.group_stripes as usize];
            code_and_write(layer, g, group, missing, outs, &shards).await
        }
    }

    /// Takes a flush's outcome: its failed slots count as missing from now on, and
    /// the write fails once fewer than `k` slots have every piece.
    pub fn flushed(&mut self, outcome: FlushOutcome) -> ObjectResult<()> {
        let failed = outcome?;
        self.missing_slots |= failed;
        let (k, n) = (self.geometry.k(), self.geometry.n());
        let written = n - self.missing_slots.count_ones() as usize;
        if written < k {
            return Err(ObjectError::Unavailable(format!("{written} of {n} drives took the write, {k} needed")));
        }
        Ok(())
    }

    /// Writes bytes, flushing each full group before taking more (no pipelining:
    /// see [`push`](Self::push) for that).
    pub async fn write(&mut self, mut data: &[u8]) -> ObjectResult<()> {
        while !data.is_empty() {
            let (taken, full) = self.push(data);
            data = &data[taken..];
            if let Some(full) = full {
                let outcome = self.start_flush(full).await;
                self.flushed(outcome)?;
            }
        }
        Ok(())
    }

    /// Writes what is buffered and returns the layout to commit.
    pub async fn finish(mut self) -> ObjectResult<DataLayout> {
        if self.groups == 0 && self.staged.is_none() && self.size as usize <= self.inline_max {
            self.finished = true;
            return Ok(DataLayout::Inline(std::mem::take(&mut self.buf)));
        }
        // The last group is short: its last stripe's shards are shorter than the
        // staged layout assumed, so its bytes are gathered and coded anew.
        let tail = match self.staged.take() {
            Some(staged) => gather(&self.geometry, &staged, self.group_len),
            None => std::mem::take(&mut self.buf),
        };
        self.group_len = 0;
        if !tail.is_empty() {
            let group = self.groups;
            self.groups += 1;
            let outcome = write_group(
                self.layer.clone(),
                self.partition,
                self.data_id,
                self.geometry,
                group,
                self.missing_slots,
                tail,
            )
            .await;
            self.flushed(outcome)?;
        }
        self.finished = true;
        Ok(DataLayout::Extents(vec![self.extent()]))
    }

    /// The extent written so far (for parts, which are never inline).
    fn extent(&self) -> Extent {
        Extent { data_id: self.data_id, size: self.size, geometry: self.geometry, missing_slots: self.missing_slots }
    }

    /// Finishes a multipart part: always erasure coded, so parts concatenate.
    pub async fn finish_part(mut self) -> ObjectResult<Extent> {
        self.inline_max = 0;
        match self.finish().await? {
            DataLayout::Extents(e) => Ok(e[0]),
            DataLayout::Inline(_) => unreachable!("inline disabled"),
        }
    }
}

/// Where byte `at` of a group goes in the staged layout (see [`FullGroup`]): its
/// slot, its offset in that slot's piece, and how many bytes from there on stay
/// in that slot.
fn staged_place(g: &Geometry, at: usize) -> (usize, usize, usize) {
    let (stripe, chunk) = (g.stripe_bytes() as usize, g.chunk_bytes as usize);
    let (s, r) = (at / stripe, at % stripe);
    (r / chunk, s * chunk + r % chunk, chunk - r % chunk)
}

/// Copies `data` into the staged group at group offset `at`.
fn place<I: Io>(g: &Geometry, staged: &mut FullGroup<I>, mut at: usize, mut data: &[u8]) {
    while !data.is_empty() {
        let (slot, off, room) = staged_place(g, at);
        let n = room.min(data.len());
        staged.slots[slot].payload_mut()[off..off + n].copy_from_slice(&data[..n]);
        data = &data[n..];
        at += n;
    }
}

/// The first `len` bytes of a staged group, in order.
fn gather<I: Io>(g: &Geometry, staged: &FullGroup<I>, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let (slot, off, room) = staged_place(g, out.len());
        let n = room.min(len - out.len());
        out.extend_from_slice(&staged.slots[slot].payload()[off..off + n]);
    }
    out
}

/// What a group flush left: the slots whose piece failed.
pub type FlushOutcome = ObjectResult<u64>;

/// The buffers the pieces of `slots` of a group are coded into: the record its
/// drive will write, or, for a slot that is not written (missed, its drive
/// offline, or refused), a scratch buffer. Not zeroed: every byte is written.
#[allow(clippy::too_many_arguments)]
fn piece_outs<I: Io>(
    layer: &ObjectLayer<I>,
    partition: u32,
    data_id: u128,
    g: &Geometry,
    group: u64,
    missing: u64,
    slots: std::ops::Range<usize>,
    piece_len: usize,
) -> Vec<PieceOut<I>> {
    slots
        .map(|slot| {
            let d = g.drive_of(slot);
            let why = if missing & (1 << slot) != 0 {
                None
            } else {
                match layer.store(d).map(|s| s.piece_buf(piece_key(partition, data_id, group, slot), piece_len)) {
                    Some(Ok(buf)) => return PieceOut::Piece(buf),
                    Some(Err(e)) => Some(e),
                    None => Some(StoreError::Closed),
                }
            };
            PieceOut::Scratch(vec![0; piece_len], why)
        })
        .collect()
}

/// Encodes and writes a group from a contiguous buffer (an extent's short last
/// group, or an object written without staging).
async fn write_group<I: Io>(
    layer: Rc<ObjectLayer<I>>,
    partition: u32,
    data_id: u128,
    g: Geometry,
    group: u64,
    missing: u64,
    data: Vec<u8>,
) -> FlushOutcome {
    let (k, n) = (g.k(), g.n());
    let stripe = g.stripe_bytes() as usize;
    let shards: Vec<usize> = data.chunks(stripe).map(|c| g.shard_len(c.len() as u64)).collect();
    let piece_len: usize = shards.iter().sum();
    let mut outs = piece_outs(&layer, partition, data_id, &g, group, missing, 0..n, piece_len);
    let mut at = 0;
    for (chunk, &len) in data.chunks(stripe).zip(&shards) {
        for (i, out) in outs.iter_mut().enumerate().take(k) {
            let start = (i * len).min(chunk.len());
            let end = ((i + 1) * len).min(chunk.len());
            let shard = &mut out.payload_mut()[at..at + len];
            shard[..end - start].copy_from_slice(&chunk[start..end]);
            shard[end - start..].fill(0);
        }
        at += len;
    }
    drop(data);
    code_and_write(layer, g, group, missing, outs, &shards).await
}

/// Encodes the parity of a group whose data slots are filled (stripe `s`'s
/// shards `shards[s]` long, one after the other in each piece) and writes every
/// slot not already `missing`. Returns the slots that failed.
async fn code_and_write<I: Io>(
    layer: Rc<ObjectLayer<I>>,
    g: Geometry,
    group: u64,
    missing: u64,
    mut outs: Vec<PieceOut<I>>,
    shards: &[usize],
) -> FlushOutcome {
    if group >= GROUPS_PER_EXTENT_MAX {
        return Err(ObjectError::TooLarge(format!("more than {GROUPS_PER_EXTENT_MAX} groups")));
    }
    let k = g.k();
    let mut at = 0;
    for &len in shards {
        let (data_p, parity_p) = outs.split_at_mut(k);
        let data_refs: Vec<&[u8]> = data_p.iter().map(|o| &o.payload()[at..at + len]).collect();
        let mut parity_refs: Vec<&mut [u8]> = parity_p.iter_mut().map(|o| &mut o.payload_mut()[at..at + len]).collect();
        layer.codec_for(&g)?.encode(&data_refs, &mut parity_refs).map_err(|e| ObjectError::Internal(e.to_string()))?;
        at += len;
        // Between stripes (1 MiB of data), the reactor submits and reaps other IO.
        I::yield_to_reactor().await;
    }
    let layer = &layer;
    let writes = outs.into_iter().enumerate().filter(|(s, _)| missing & (1 << s) == 0).map(|(slot, out)| {
        let d = g.drive_of(slot);
        async move {
            match (out, layer.store(d)) {
                (PieceOut::Piece(buf), Some(s)) => (slot, d, s.put_piece(buf).await),
                (PieceOut::Scratch(_, Some(e)), _) => (slot, d, Err(e)),
                _ => (slot, d, Err(StoreError::Closed)),
            }
        }
    });
    let mut failed = 0u64;
    for (slot, d, r) in futures::future::join_all(writes).await {
        if let Err(e) = r {
            if layer.store(d).is_some() {
                layer.note_failure(d, &e);
            }
            failed |= 1 << slot;
        }
    }
    Ok(failed)
}

/// Where one slot's piece of a group is coded (see [`piece_outs`]).
enum PieceOut<I: Io> {
    /// The record its drive will write.
    Piece(PieceBuf<I>),
    /// Not written; with the reason when the slot was meant to be.
    Scratch(Vec<u8>, Option<StoreError>),
}

impl<I: Io> PieceOut<I> {
    fn payload(&self) -> &[u8] {
        match self {
            PieceOut::Piece(b) => b.payload(),
            PieceOut::Scratch(v, _) => v,
        }
    }

    fn payload_mut(&mut self) -> &mut [u8] {
        match self {
            PieceOut::Piece(b) => b.payload_mut(),
            PieceOut::Scratch(v, _) => v,
        }
    }
}

impl<I: Io> Drop for DataWriter<I> {
    fn drop(&mut self) {
        self.layer.writers.set(self.layer.writers.get() - 1);
        if !self.finished && self.groups > 0 {
            // Abandoned (client went away, error): its pieces are garbage now.
            let e = self.extent();
            let mut st = self.layer.state.borrow_mut();
            drop_ref_unreferenced(&mut st, self.partition, e);
            drop(st);
            self.layer.flush_doomed();
        }
    }
}

/// Reads ranges of one object version. Holds its data against deletion.
pub struct ObjectReader<I: Io> {
    layer: Rc<ObjectLayer<I>>,
    partition: u32,
    meta: ObjectMeta,
    identity: MetaEntry,
    extents: Vec<Extent>,
}

impl<I: Io> Drop for ObjectReader<I> {
    fn drop(&mut self) {
        self.layer.release_readers(&self.extents);
    }
}

/// Most bytes one [`ObjectReader::read`] call returns (one stripe at most).
pub const READ_CHUNK_BYTES_MAX: u64 = 4 << 20;

impl<I: Io> ObjectReader<I> {
    pub fn meta(&self) -> &ObjectMeta {
        &self.meta
    }

    /// The inline bytes of a small object.
    pub async fn inline_data(&self) -> ObjectResult<Bytes> {
        let ck = CacheKey::Inline { partition: self.partition, version: self.meta.version };
        if let Some(b) = self.layer.cache.borrow_mut().get(&ck) {
            return Ok(b);
        }
        let rec = self.layer.read_meta(&self.identity, self.meta.version, &self.meta.replicas).await?;
        match rec.entry {
            MetaEntry::Object { object: Some(ObjectInfo { data: DataLayout::Inline(b), .. }), .. } => {
                let b = Bytes::from(b);
                self.layer.cache.borrow_mut().insert(ck, b.clone());
                Ok(b)
            }
            _ => Err(ObjectError::Internal("metadata replica holds no inline data".into())),
        }
    }

    /// The reads that cover `[start, end)`: `(pos, len)` pairs of at most `max`
    /// bytes that never cross a stripe, so each is one [`read`](Self::read) and a
    /// caller can keep several in flight (read-ahead) knowing where each starts.
    pub fn chunks(&self, start: u64, end: u64, max: u64) -> impl Iterator<Item = (u64, u64)> + 'static {
        let stripes: Vec<(u64, u64, u64)> = match &self.meta.info.data {
            DataLayout::Inline(_) => vec![(0, self.meta.info.size, u64::MAX)],
            DataLayout::Extents(_) => {
                let mut base = 0;
                self.extents
                    .iter()
                    .map(|e| {
                        let r = (base, base + e.size, e.geometry.stripe_bytes());
                        base += e.size;
                        r
                    })
                    .collect()
            }
        };
        let max = max.max(1);
        let mut pos = start;
        std::iter::from_fn(move || {
            if pos >= end {
                return None;
            }
            let &(base, ext_end, stripe) = stripes.iter().find(|(b, e, _)| pos >= *b && pos < *e)?;
            let stripe_end = base + ((pos - base) / stripe + 1).saturating_mul(stripe).min(ext_end - base);
            let next = end.min(ext_end).min(stripe_end).min(pos + max);
            let chunk = (pos, next - pos);
            pos = next;
            Some(chunk)
        })
    }

    /// Reads bytes starting at `pos`, at most `max` and never past one stripe, so
    /// a caller streams with bounded memory. Returns nothing at the end.
    pub async fn read(&self, pos: u64, max: u64) -> ObjectResult<Bytes> {
        let size = self.meta.info.size;
        if pos >= size || max == 0 {
            return Ok(Bytes::new());
        }
        if matches!(self.meta.info.data, DataLayout::Inline(_)) {
            let all = self.inline_data().await?;
            if all.len() as u64 != size {
                return Err(ObjectError::Internal("inline data has the wrong length".into()));
            }
            let end = (pos + max).min(size);
            return Ok(all.slice(pos as usize..end as usize));
        }
        // Find the extent holding `pos`.
        let mut base = 0u64;
        for e in &self.extents {
            if pos < base + e.size {
                let off = pos - base;
                let stripe = e.geometry.stripe_bytes();
                let s = off / stripe;
                let stripe_start = s * stripe;
                let stripe_len = (e.size - stripe_start).min(stripe);
                let a = off - stripe_start;
                let b = (a + max.min(READ_CHUNK_BYTES_MAX)).min(stripe_len);
                return self.layer.read_stripe(self.partition, e, s, stripe_len, a, b).await;
            }
            base += e.size;
        }
        Err(ObjectError::Internal("extents shorter than the object size".into()))
    }
}

impl<I: Io> ObjectLayer<I> {
    /// Bytes `[a, b)` of stripe `s` of extent `e` (the stripe holds `stripe_len`):
    /// from the cache, or read as a whole stripe into it (when it is on), or read
    /// directly.
    async fn read_stripe(
        &self,
        partition: u32,
        e: &Extent,
        s: u64,
        stripe_len: u64,
        a: u64,
        b: u64,
    ) -> ObjectResult<Bytes> {
        if !self.cache.borrow().enabled() {
            return self.read_stripe_range(partition, e, s, stripe_len, a, b).await.map(Bytes::from);
        }
        let ck = CacheKey::Stripe { data_id: e.data_id, stripe: s };
        let (a_, b_) = (a as usize, b as usize);
        if let Some(hit) = self.cache.borrow_mut().get(&ck) {
            return Ok(hit.slice(a_..b_));
        }
        // Someone is reading this stripe already: wait for it (if it fails or is
        // dropped, read directly).
        let waiting = {
            let mut loading = self.loading.borrow_mut();
            match loading.get_mut(&ck) {
                Some(waiters) => {
                    let (tx, rx) = futures::channel::oneshot::channel();
                    waiters.push(tx);
                    Some(rx)
                }
                None => {
                    loading.insert(ck, Vec::new());
                    None
                }
            }
        };
        if let Some(rx) = waiting {
            return match rx.await {
                Ok(all) => Ok(all.slice(a_..b_)),
                Err(_) => self.read_stripe_range(partition, e, s, stripe_len, a, b).await.map(Bytes::from),
            };
        }
        // The leader: its waiters are released (with the bytes, or to read for
        // themselves) however this ends, also when the read is dropped.
        struct Loading<'a, I: Io> {
            layer: &'a ObjectLayer<I>,
            key: CacheKey,
        }
        impl<I: Io> Drop for Loading<'_, I> {
            fn drop(&mut self) {
                self.layer.loading.borrow_mut().remove(&self.key);
            }
        }
        let guard = Loading { layer: self, key: ck };
        let all = Bytes::from(self.read_stripe_range(partition, e, s, stripe_len, 0, stripe_len).await?);
        self.cache.borrow_mut().insert(ck, all.clone());
        let waiters = self.loading.borrow_mut().remove(&ck).unwrap_or_default();
        drop(guard);
        for w in waiters {
            let _ = w.send(all.clone());
        }
        Ok(all.slice(a_..b_))
    }

    /// Bytes `[a, b)` of stripe `s` of extent `e` read from the drives.
    async fn read_stripe_range(
        &self,
        partition: u32,
        e: &Extent,
        s: u64,
        stripe_len: u64,
        a: u64,
        b: u64,
    ) -> ObjectResult<Vec<u8>> {
        let g = e.geometry;
        let len = g.shard_len(stripe_len) as u64;
        let group = s / g.group_stripes as u64;
        let in_record = (s % g.group_stripes as u64) * g.chunk_bytes as u64;
        // Healthy path: the data pieces overlapping [a, b), read directly.
        let first = (a / len) as usize;
        let last = ((b - 1) / len) as usize;
        let healthy = (first..=last).all(|i| e.missing_slots & (1 << i) == 0 && self.store(g.drive_of(i)).is_some());
        if healthy {
            let reads = (first..=last).map(|i| {
                let lo = a.max(i as u64 * len) - i as u64 * len;
                let hi = b.min((i as u64 + 1) * len) - i as u64 * len;
                let d = g.drive_of(i);
                let key = piece_key(partition, e.data_id, group, i);
                async move {
                    let Some(st) = self.store(d) else { return (d, Err(StoreError::Closed)) };
                    // The store's buffer as is: the one copy is into `out` below.
                    (d, st.get_range(key, in_record + lo, hi - lo).await)
                }
            });
            let mut out = Vec::with_capacity((b - a) as usize);
            let mut ok = true;
            for (d, r) in futures::future::join_all(reads).await {
                match r {
                    Ok(bytes) if ok => out.extend_from_slice(&bytes),
                    Ok(_) => {}
                    Err(err) => {
                        tracing::warn!(core = self.core, drive = d, data_id = %format!("{:032x}", e.data_id), group, error = %err, "piece unreadable: degraded read");
                        self.note_failure(d, &err);
                        ok = false;
                    }
                }
            }
            if ok {
                return Ok(out);
            }
        }
        self.stats.borrow_mut().degraded_reads += 1;
        // Degraded: read k pieces (data slots first, they need no decoding), more only
        // for those that fail, and rebuild the missing data.
        let n = g.n();
        let mut candidates = (0..n).filter(|&i| e.missing_slots & (1 << i) == 0 && self.store(g.drive_of(i)).is_some());
        let mut shards: Vec<Vec<u8>> = vec![Vec::new(); n];
        let mut present = vec![false; n];
        let mut failures = Vec::new();
        loop {
            let have = present.iter().filter(|p| **p).count();
            let batch: Vec<usize> = candidates.by_ref().take(g.k().saturating_sub(have)).collect();
            if batch.is_empty() {
                break;
            }
            let reads = batch.into_iter().map(|i| {
                let d = g.drive_of(i);
                let key = piece_key(partition, e.data_id, group, i);
                async move {
                    let Some(st) = self.store(d) else { return (i, d, Err(StoreError::Closed)) };
                    (i, d, st.get_range(key, in_record, len).await.map(|buf| buf.to_vec()))
                }
            });
            for (i, d, r) in futures::future::join_all(reads).await {
                match r {
                    Ok(bytes) => {
                        shards[i] = bytes;
                        present[i] = true;
                    }
                    Err(err) => {
                        if self.stores[d].is_some() && !matches!(err, StoreError::Closed) {
                            self.note_failure(d, &err);
                        }
                        failures.push(format!("slot {i} (drive {d}): {err}"));
                    }
                }
            }
        }
        let have = present.iter().filter(|p| **p).count();
        if have < g.k() {
            return Err(ObjectError::Unavailable(format!(
                "{have} of {n} pieces readable, {} needed: {}",
                g.k(),
                failures.join("; ")
            )));
        }
        if !present[..g.k()].iter().all(|p| *p) {
            for (i, sh) in shards.iter_mut().enumerate() {
                if !present[i] {
                    *sh = vec![0; len as usize];
                }
            }
            let mut refs: Vec<&mut [u8]> = shards.iter_mut().map(|s| s.as_mut_slice()).collect();
            self.codec_for(&g)?
                .reconstruct_data(&mut refs, &present)
                .map_err(|e| ObjectError::Internal(e.to_string()))?;
        }
        let mut out = Vec::with_capacity((b - a) as usize);
        for (i, shard) in shards.iter().enumerate().take(last + 1).skip(first) {
            let lo = (a.max(i as u64 * len) - i as u64 * len) as usize;
            let hi = (b.min((i as u64 + 1) * len) - i as u64 * len) as usize;
            out.extend_from_slice(&shard[lo..hi]);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
