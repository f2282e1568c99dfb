//! The shard store: per (core, drive), an append-only log of shard pieces in
//! preallocated segment files, with an in-memory index.
//!
//! Trade-offs taken:
//! * **Log-structured, one writer.** Every mutation is a record appended by a single
//!   committer task. It gathers whatever requests queued while the previous batch
//!   was on disk (group commit), gives them sequence numbers, writes them
//!   concurrently, fdatasyncs each touched segment once, then applies them to the
//!   index in sequence order and acknowledges. A request is acknowledged only once
//!   its record is durable, and readers only ever see durable records.
//! * **Each open starts a new segment.** Nothing is ever appended after a torn tail,
//!   so stale bytes past a crash point can never be mistaken for new records; seq
//!   numbers must also strictly increase through the log, which a stale record
//!   cannot satisfy.
//! * **Conditional relocation.** Compaction copies live records to the head through
//!   the same committer, as `Relocate` requests that apply only if the index still
//!   holds the very record copied (checked in sequence order), so a copy can never
//!   resurrect a key deleted or overwritten meanwhile.
//! * **Fail-stop on write errors.** After a failed write or fsync the page and
//!   device state is unknown, so the store refuses further writes (reads go on)
//!   until it is reopened and recovers from what is durable.
mod checkpoint;
mod index;
mod recovery;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use futures::channel::oneshot;

use crate::format::{
    self, build_record, seal_record, FormatError, RecordKind, SegmentHeader, ShardKey, BLOCK_LOG2_DEFAULT,
    BLOCK_LOG2_MAX, BLOCK_LOG2_MIN, RECORD_PAYLOAD_BYTES_MAX, SEGMENT_HEADER_BYTES,
};
use crate::io::{align_down, align_up, Io, IoError, IoFile, OpenMode, ReadBuf};

pub use checkpoint::{CheckpointData, CheckpointError};
pub use index::{Index, Loc};
pub use recovery::{verify_store, SegmentCheck, VerifyReport};

/// A piece's record in an IO buffer, its payload filled in place by the caller
/// (see [`ShardStore::piece_buf`]).
pub struct PieceBuf<I: Io> {
    record: I::Buf,
    key: ShardKey,
    payload_len: u64,
    block_log2: u8,
}

impl<I: Io> PieceBuf<I> {
    pub fn payload(&self) -> &[u8] {
        let poff = format::payload_offset(self.payload_len, self.block_log2) as usize;
        &self.record[poff..poff + self.payload_len as usize]
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        format::record_payload_mut(&mut self.record, self.payload_len, self.block_log2)
    }
}

/// Tunables of one store. Every queue and batch is bounded.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Largest size of a segment file (a multiple of 4 KiB).
    pub segment_bytes: u64,
    /// Disk is reserved (fallocate) this far ahead of the write head, so an idle
    /// store does not hold `segment_bytes` per segment and writes rarely wait on it.
    pub preallocate_step_bytes: u64,
    /// Payload checksum block size, as a power of two.
    pub block_log2: u8,
    /// Requests waiting for the committer; submitters wait when it is full.
    pub submit_queue_max: usize,
    /// Records per group commit.
    pub batch_records_max: usize,
    /// Bytes per group commit.
    pub batch_bytes_max: u64,
    /// A non-head segment whose live bytes are below this percentage of its used
    /// bytes is a compaction candidate.
    pub compaction_live_percent_max: u8,
    /// Live bytes one `compact` call may copy (bounds its IO).
    pub compaction_bytes_max: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            segment_bytes: 256 << 20,
            preallocate_step_bytes: 64 << 20,
            block_log2: BLOCK_LOG2_DEFAULT,
            submit_queue_max: 256,
            batch_records_max: 64,
            // Small enough that with large pieces one group is being built (copy +
            // crc on the core) while the previous one is on disk.
            batch_bytes_max: 16 << 20,
            compaction_live_percent_max: 50,
            compaction_bytes_max: 256 << 20,
        }
    }
}

impl StoreConfig {
    fn validate(&self) -> Result<(), StoreError> {
        let bad = |what: &'static str| Err(StoreError::Config(what));
        if !self.segment_bytes.is_multiple_of(crate::io::IO_ALIGN_BYTES as u64) {
            return bad("segment_bytes must be a multiple of 4096");
        }
        if self.segment_bytes
            < SEGMENT_HEADER_BYTES as u64 + format::record_len(RECORD_PAYLOAD_BYTES_MAX.min(1 << 20), self.block_log2)
        {
            return bad("segment_bytes too small to hold a 1 MiB record");
        }
        if !(BLOCK_LOG2_MIN..=BLOCK_LOG2_MAX).contains(&self.block_log2) {
            return bad("block_log2 out of range");
        }
        if self.preallocate_step_bytes == 0
            || !self.preallocate_step_bytes.is_multiple_of(crate::io::IO_ALIGN_BYTES as u64)
        {
            return bad("preallocate_step_bytes must be a positive multiple of 4096");
        }
        if self.submit_queue_max == 0 || self.batch_records_max == 0 || self.batch_bytes_max == 0 {
            return bad("queue and batch limits must be positive");
        }
        Ok(())
    }

    /// Largest payload a single record may carry with this configuration.
    pub fn payload_bytes_max(&self) -> u64 {
        let room = self.segment_bytes - SEGMENT_HEADER_BYTES as u64;
        let block = 1u64 << self.block_log2;
        // Each block costs 4 bytes of crc table; start from the estimate and step
        // down the few bytes of padding and rounding it misses.
        let mut max = ((room - format::RECORD_HEADER_BYTES as u64) * block / (block + 4)).min(RECORD_PAYLOAD_BYTES_MAX);
        while format::record_len(max, self.block_log2) > room {
            max -= 1;
        }
        max
    }
}

/// Store errors. IO failures keep their operation, file and offset.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Io(#[from] IoError),
    #[error("shard {0:?} not found")]
    NotFound(ShardKey),
    #[error("range {offset}+{len} is outside shard {key:?} of {size} bytes")]
    RangeOutOfBounds { key: ShardKey, offset: u64, len: u64, size: u64 },
    #[error("corrupt data in {path} at offset {offset}: {reason}")]
    Corrupt { path: String, offset: u64, reason: FormatError },
    #[error("payload of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: u64, max: u64 },
    #[error("invalid store configuration: {0}")]
    Config(&'static str),
    #[error("store is closed")]
    Closed,
    #[error("store refuses writes after an earlier write failure: {0}")]
    Failed(String),
    #[error("store directory {path}: {reason}")]
    Layout { path: String, reason: String },
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The record is durable and indexed.
    Written { seq: u64 },
    /// Nothing to do: a delete of an absent key, or a relocation overtaken by a newer write.
    Skipped,
}

/// Counters and sizes, for metrics and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub keys: usize,
    pub segments: usize,
    pub live_bytes: u64,
    pub used_bytes: u64,
    pub batches: u64,
    pub records_written: u64,
    pub syncs: u64,
}

/// What the last open found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The index came from a checkpoint (else from a scan of every segment).
    pub from_checkpoint: bool,
    /// Records read from the log after the checkpoint (or all of them).
    pub records_replayed: u64,
    /// Segments whose scan ended at an invalid record (a torn tail, dropped).
    pub torn_tails: u64,
    /// Invalid records followed by records of a later group commit: damage (bitrot,
    /// a bad sector), not a torn write. Skipped; a damaged put whose header is intact
    /// stays indexed so reads of it fail with `Corrupt` rather than serve older data.
    pub damaged_records: u64,
    pub segments: usize,
    pub keys: usize,
}

/// What a compaction run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactionStats {
    pub segments_removed: usize,
    pub records_moved: usize,
    pub bytes_moved: u64,
    pub tombstones_kept: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpKind {
    Put,
    Delete,
    /// Copy of a live record; applies only if the index still holds `seq` for the key.
    Relocate {
        seq: u64,
    },
    /// Copy of a tombstone; applies only if the key is still absent.
    RelocateTombstone,
}

struct Op<I: Io> {
    kind: OpKind,
    key: ShardKey,
    payload_len: u64,
    record_len: u64,
    /// Taken by the committer when it hands the buffer to the write.
    record: Option<I::Buf>,
    reply: oneshot::Sender<Result<Applied, StoreError>>,
}

type Reply = oneshot::Receiver<Result<Applied, StoreError>>;

pub(crate) struct Segment<F> {
    pub(crate) id: u64,
    pub(crate) file: Rc<F>,
    pub(crate) capacity: u64,
    pub(crate) salt: u64,
    /// Bytes reserved on disk so far (<= capacity).
    pub(crate) allocated: u64,
    /// Next free offset (end of the last valid record).
    pub(crate) end: u64,
    pub(crate) live_bytes: u64,
}

pub(crate) struct State<I: Io> {
    pub(crate) index: Index,
    pub(crate) segments: BTreeMap<u64, Segment<I::File>>,
    pub(crate) head: u64,
    /// This open's session number (see `SegmentHeader::session`).
    pub(crate) session: u64,
    pub(crate) next_seq: u64,
    /// End of the last applied record: where a checkpoint's replay starts.
    pub(crate) applied_segment: u64,
    pub(crate) applied_offset: u64,
    pub(crate) applied_seq: u64,
    pub(crate) failed: Option<String>,
    pub(crate) stats: StoreStats,
    pub(crate) recovery: RecoveryReport,
}

struct Shared<I: Io> {
    io: I,
    dir: PathBuf,
    cfg: StoreConfig,
    state: RefCell<State<I>>,
    compacting: Cell<bool>,
}

/// A shard store. Not `Send`: it lives on, and is used by, one core. Dropping it
/// (or [`ShardStore::close`]) closes the submit queue, so the committer finishes
/// what is queued and ends.
pub struct ShardStore<I: Io> {
    shared: Rc<Shared<I>>,
    submit: RefCell<Option<flume::Sender<Op<I>>>>,
    committer_done: RefCell<Option<oneshot::Receiver<()>>>,
}

/// Disk reserved when a segment is created; the rest follows the writes.
const SEGMENT_INITIAL_RESERVE_BYTES: u64 = 4 << 20;

/// Relocations one compaction keeps queued at once.
const COMPACTION_IN_FLIGHT_MAX: usize = 32;

pub(crate) fn segment_file_name(id: u64) -> String {
    format!("seg-{id:016x}.tsg")
}

pub(crate) fn parse_segment_file_name(name: &str) -> Option<u64> {
    let hex = name.strip_prefix("seg-")?.strip_suffix(".tsg")?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

fn corrupt(path: &Path, offset: u64, reason: FormatError) -> StoreError {
    StoreError::Corrupt { path: path.display().to_string(), offset, reason }
}

impl<I: Io> ShardStore<I> {
    /// Opens (or creates) the store in `dir`, recovering from the last checkpoint and
    /// the records after it. Returns the store and its committer task, which the
    /// caller must spawn on the same thread (e.g. `glommio::spawn_local`).
    pub async fn open(
        io: I,
        dir: &Path,
        cfg: StoreConfig,
    ) -> Result<(ShardStore<I>, impl Future<Output = ()> + use<I>), StoreError> {
        cfg.validate()?;
        let state = recovery::recover(&io, dir, &cfg).await?;
        let (tx, rx) = flume::bounded(cfg.submit_queue_max);
        let shared = Rc::new(Shared {
            io,
            dir: dir.to_path_buf(),
            cfg,
            state: RefCell::new(state),
            compacting: Cell::new(false),
        });
        let (done_tx, done_rx) = oneshot::channel();
        let committer = {
            let shared = shared.clone();
            async move {
                shared.run_committer(rx).await;
                let _ = done_tx.send(());
            }
        };
        let store = ShardStore { shared, submit: RefCell::new(Some(tx)), committer_done: RefCell::new(Some(done_rx)) };
        Ok((store, committer))
    }

    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    pub fn config(&self) -> &StoreConfig {
        &self.shared.cfg
    }

    /// Stores `data` under `key`, replacing any previous piece. Returns once durable.
    pub async fn put(&self, key: ShardKey, data: &[u8]) -> Result<Applied, StoreError> {
        let max = self.shared.cfg.payload_bytes_max();
        if data.len() as u64 > max {
            return Err(StoreError::TooLarge { len: data.len() as u64, max });
        }
        self.submit(OpKind::Put, key, data).await
    }

    /// An IO buffer for a piece of `payload_len` bytes under `key`, its payload
    /// to be filled in place ([`PieceBuf::payload_mut`]) and then stored with
    /// [`ShardStore::put_piece`]: an encoder writes its output straight into the
    /// record the drive receives, with no copy in between.
    pub fn piece_buf(&self, key: ShardKey, payload_len: usize) -> Result<PieceBuf<I>, StoreError> {
        let max = self.shared.cfg.payload_bytes_max();
        if payload_len as u64 > max {
            return Err(StoreError::TooLarge { len: payload_len as u64, max });
        }
        let block_log2 = self.shared.cfg.block_log2;
        let record = self.shared.io.alloc(format::record_len(payload_len as u64, block_log2) as usize);
        Ok(PieceBuf { record, key, payload_len: payload_len as u64, block_log2 })
    }

    /// Stores a piece filled in place, as [`ShardStore::put`] does. Returns once durable.
    pub async fn put_piece(&self, piece: PieceBuf<I>) -> Result<Applied, StoreError> {
        let PieceBuf { mut record, key, payload_len, block_log2 } = piece;
        assert_eq!(block_log2, self.shared.cfg.block_log2, "a piece buffer of a store configured otherwise");
        format::finish_record(&mut record, RecordKind::Put, key, payload_len, block_log2);
        let (reply, rx) = oneshot::channel();
        let record_len = record.len() as u64;
        let op = Op { kind: OpKind::Put, key, payload_len, record_len, record: Some(record), reply };
        self.send(op, rx).await
    }

    /// Deletes `key` (a tombstone record). `Skipped` if it did not exist.
    pub async fn delete(&self, key: ShardKey) -> Result<Applied, StoreError> {
        self.submit(OpKind::Delete, key, &[]).await
    }

    async fn submit(&self, kind: OpKind, key: ShardKey, payload: &[u8]) -> Result<Applied, StoreError> {
        let (op, rx) = self.prepare(kind, key, payload);
        self.send(op, rx).await
    }

    /// Builds the record for an op (synchronously, so callers can keep several in flight).
    fn prepare(&self, kind: OpKind, key: ShardKey, payload: &[u8]) -> (Op<I>, Reply) {
        let rkind = match kind {
            OpKind::Put | OpKind::Relocate { .. } => RecordKind::Put,
            OpKind::Delete | OpKind::RelocateTombstone => RecordKind::Tombstone,
        };
        let block_log2 = self.shared.cfg.block_log2;
        let len = format::record_len(payload.len() as u64, block_log2) as usize;
        // The copy and the block checksums are done here, by the request, so the
        // committer's critical path is only sequencing and IO.
        let mut record = self.shared.io.alloc(len);
        build_record(&mut record, rkind, key, payload, block_log2);
        let (reply, rx) = oneshot::channel();
        let op =
            Op { kind, key, payload_len: payload.len() as u64, record_len: len as u64, record: Some(record), reply };
        (op, rx)
    }

    async fn send(&self, op: Op<I>, rx: Reply) -> Result<Applied, StoreError> {
        let tx = self.submit.borrow().clone().ok_or(StoreError::Closed)?;
        tx.send_async(op).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Reads the whole piece.
    pub async fn get(&self, key: ShardKey) -> Result<I::ReadBuf, StoreError> {
        let len = self.len_of(key).ok_or(StoreError::NotFound(key))?;
        self.get_range(key, 0, len).await
    }

    /// Payload length of a stored piece.
    pub fn len_of(&self, key: ShardKey) -> Option<u64> {
        self.shared.state.borrow().index.get(&key).map(|l| l.payload_len)
    }

    /// Reads `len` bytes at `offset` of the piece, verifying the crc of every block
    /// the range touches and that the record on disk is the one the index names.
    /// Only the blocks the range overlaps are read.
    pub async fn get_range(&self, key: ShardKey, offset: u64, len: u64) -> Result<I::ReadBuf, StoreError> {
        let (loc, file, salt) = {
            let st = self.shared.state.borrow();
            let loc = *st.index.get(&key).ok_or(StoreError::NotFound(key))?;
            let seg = st.segments.get(&loc.segment).expect("index points at a live segment");
            (loc, seg.file.clone(), seg.salt)
        };
        let size = loc.payload_len;
        if offset.checked_add(len).is_none_or(|end| end > size) {
            return Err(StoreError::RangeOutOfBounds { key, offset, len, size });
        }
        if len == 0 {
            // Nothing to read or verify; an empty view of a header page.
            let page = file.read_at(loc.offset, crate::io::IO_ALIGN_BYTES).await?;
            return Ok(page.slice(0, 0));
        }
        let block = 1u64 << loc.block_log2;
        let poff = format::payload_offset(size, loc.block_log2);
        let (first_block, end_block) =
            if len == 0 { (offset / block, offset / block) } else { (offset / block, (offset + len).div_ceil(block)) };
        let data_start = first_block * block;
        let data_end = (end_block * block).min(size);
        // Header + crc table of the record, and the covering blocks. One read when the
        // blocks start inside the header's pages, else two in parallel.
        let table_len = align_up(poff);
        let span_start = align_down(loc.offset + poff + data_start);
        let span_end = align_up(loc.offset + poff + data_end);
        let path = file.path().to_path_buf();
        let (table, data, data_base) = if span_start < loc.offset + table_len {
            let all = file.read_at(loc.offset, (span_end - loc.offset) as usize).await?;
            (all.clone(), all, loc.offset)
        } else {
            let (t, d) = futures::join!(
                file.read_at(loc.offset, table_len as usize),
                file.read_at(span_start, (span_end - span_start) as usize)
            );
            (t?, d?, span_start)
        };
        let h = format::decode_header(&table).map_err(|e| corrupt(&path, loc.offset, e))?;
        format::check_header_crc(&h, &table, salt).map_err(|e| corrupt(&path, loc.offset, e))?;
        if h.key != key || h.seq != loc.seq || h.payload_len != size || h.kind != RecordKind::Put {
            return Err(corrupt(&path, loc.offset, FormatError::InvalidField { field: "identity", value: h.seq }));
        }
        let rel = (loc.offset + poff + data_start - data_base) as usize;
        let covered = (data_end - data_start) as usize;
        if data.len() < rel + covered {
            let reason = FormatError::Truncated { need: rel + covered, have: data.len() };
            return Err(corrupt(&path, loc.offset, reason));
        }
        format::verify_blocks(&h, &table, first_block, &data[rel..rel + covered])
            .map_err(|e| corrupt(&path, loc.offset, e))?;
        Ok(data.slice(rel + (offset - data_start) as usize, len as usize))
    }

    /// What the open that produced this store recovered.
    pub fn recovery(&self) -> RecoveryReport {
        self.shared.state.borrow().recovery.clone()
    }

    /// Where a piece's record is: (segment file, record offset, payload offset within
    /// the record). For diagnostics, tools and fault-injection tests.
    pub fn locate(&self, key: ShardKey) -> Option<(PathBuf, u64, u64)> {
        let st = self.shared.state.borrow();
        let loc = st.index.get(&key)?;
        let path = self.shared.dir.join(segment_file_name(loc.segment));
        Some((path, loc.offset, format::payload_offset(loc.payload_len, loc.block_log2)))
    }

    pub fn stats(&self) -> StoreStats {
        let st = self.shared.state.borrow();
        let mut s = st.stats.clone();
        s.keys = st.index.len();
        s.segments = st.segments.len();
        s.live_bytes = st.segments.values().map(|g| g.live_bytes).sum();
        s.used_bytes = st.segments.values().map(|g| g.end - SEGMENT_HEADER_BYTES as u64).sum();
        s
    }

    /// The pieces of one partition, in (object, piece) order, with their lengths.
    pub fn list_partition(&self, partition: u32) -> Vec<(ShardKey, u64)> {
        self.shared.state.borrow().index.partition(partition).map(|(k, l)| (k, l.payload_len)).collect()
    }

    /// Writes a checkpoint of the index now. The snapshot is taken synchronously, so
    /// it is consistent with the log position it records.
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        let data = {
            let st = self.shared.state.borrow();
            checkpoint::snapshot(&st)
        };
        checkpoint::write(&self.shared.io, &self.shared.dir, &data).await
    }

    /// Rewrites the live records of sparse segments at the head and removes those
    /// segments. Copies at most `compaction_bytes_max` live bytes.
    pub async fn compact(&self) -> Result<CompactionStats, StoreError> {
        if self.shared.compacting.replace(true) {
            return Ok(CompactionStats::default());
        }
        // Cleared even if this future is dropped mid-way.
        struct Done<'a>(&'a Cell<bool>);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.set(false);
            }
        }
        let _done = Done(&self.shared.compacting);
        self.compact_inner().await
    }

    async fn compact_inner(&self) -> Result<CompactionStats, StoreError> {
        let cfg = &self.shared.cfg;
        let victims: Vec<u64> = {
            let st = self.shared.state.borrow();
            let mut cands: Vec<(u64, u64, u64)> = st
                .segments
                .values()
                // Only segments below the last applied record's: a batch in flight may
                // still be placing records into any segment from there to the head.
                .filter(|s| s.id < st.applied_segment && s.id != st.head)
                .map(|s| (s.live_bytes, s.end - SEGMENT_HEADER_BYTES as u64, s.id))
                .filter(|&(live, used, _)| live * 100 < used * cfg.compaction_live_percent_max as u64 || used == 0)
                .collect();
            cands.sort_by_key(|&(live, used, _)| (live * 1000 / used.max(1), live));
            let mut budget = cfg.compaction_bytes_max;
            let mut v = Vec::new();
            for (live, _, id) in cands {
                if live > budget && !v.is_empty() {
                    break;
                }
                budget = budget.saturating_sub(live);
                v.push(id);
            }
            v
        };
        let mut stats = CompactionStats::default();
        for id in victims {
            match self.compact_segment(id, &mut stats).await {
                Ok(()) => {}
                // A damaged record is never dropped by compaction: keep the segment
                // (its pieces await repair from the layer above) and go on.
                Err(e @ StoreError::Corrupt { .. }) => {
                    tracing::error!(segment = id, error = %e, "not compacting a segment with a damaged record");
                }
                Err(e) => return Err(e),
            }
        }
        if stats.segments_removed > 0 {
            // Replay after a restart then starts past the removed segments.
            self.checkpoint().await?;
        }
        Ok(stats)
    }

    async fn compact_segment(&self, id: u64, stats: &mut CompactionStats) -> Result<(), StoreError> {
        let (file, end, oldest, salt) = {
            let st = self.shared.state.borrow();
            let Some(seg) = st.segments.get(&id) else { return Ok(()) };
            let oldest = st.segments.keys().next() == Some(&id);
            (seg.file.clone(), seg.end, oldest, seg.salt)
        };
        let mut scanner = recovery::Scanner::new(&*file, SEGMENT_HEADER_BYTES as u64, end, 0, salt);
        // Relocations in flight at once: enough to fill a group commit, bounded.
        let in_flight_max = self.shared.cfg.batch_records_max.min(COMPACTION_IN_FLIGHT_MAX);
        let mut in_flight = Vec::with_capacity(in_flight_max);
        loop {
            let rec = scanner.next().await?;
            if rec.is_none() || in_flight.len() >= in_flight_max {
                // Polled together, so they queue into one group commit.
                let group = std::mem::take(&mut in_flight);
                let metas: Vec<(RecordKind, u64)> = group.iter().map(|(_, k, l)| (*k, *l)).collect();
                let results = futures::future::join_all(group.into_iter().map(|(f, _, _)| f)).await;
                for (r, (kind, len)) in results.into_iter().zip(metas) {
                    if r? != Applied::Skipped {
                        match kind {
                            RecordKind::Put => {
                                stats.records_moved += 1;
                                stats.bytes_moved += len;
                            }
                            RecordKind::Tombstone => stats.tombstones_kept += 1,
                        }
                    }
                }
            }
            let Some(rec) = rec else { break };
            let h = rec.header;
            let op = match h.kind {
                RecordKind::Put => {
                    let st = self.shared.state.borrow();
                    let live = st.index.get(&h.key).is_some_and(|l| l.segment == id && l.offset == rec.offset);
                    live.then_some(OpKind::Relocate { seq: h.seq })
                }
                // A tombstone matters only while an older segment may still hold a put
                // of its key that a full rebuild would otherwise resurrect.
                RecordKind::Tombstone => {
                    let absent = self.shared.state.borrow().index.get(&h.key).is_none();
                    (!oldest && absent).then_some(OpKind::RelocateTombstone)
                }
            };
            if let Some(kind) = op {
                let (op, rx) = self.prepare(kind, h.key, rec.payload());
                in_flight.push((self.send(op, rx), h.kind, h.payload_len));
            }
        }
        if let Some(e) = scanner.stopped_on() {
            // A bad record inside a sealed segment (not a torn tail: the scanned range
            // is what was valid at open or written since). Never drop it silently.
            return Err(e);
        }
        if self.shared.state.borrow().index.iter().any(|(_, l)| l.segment == id) {
            return Ok(());
        }
        // The file goes first: if that fails the segment stays known (and in the
        // next checkpoint), never an orphan a checkpoint forgot.
        let path = self.shared.dir.join(segment_file_name(id));
        match self.shared.io.remove(&path).await {
            // Gone already: an earlier pass removed it and then failed to sync the
            // directory.
            Err(e) if !e.is_not_found() => return Err(e.into()),
            _ => {}
        }
        self.shared.io.sync_dir(&self.shared.dir).await?;
        self.shared.state.borrow_mut().segments.remove(&id);
        stats.segments_removed += 1;
        Ok(())
    }

    /// Stops accepting requests, lets the committer finish what is queued, and closes.
    pub async fn close(self) -> Result<(), StoreError> {
        self.submit.borrow_mut().take();
        let done = self.committer_done.borrow_mut().take();
        if let Some(done) = done {
            let _ = done.await;
        }
        Ok(())
    }
}

impl<I: Io> Shared<I> {
    async fn run_committer(self: Rc<Self>, rx: flume::Receiver<Op<I>>) {
        // The ShardStore holds the only long-lived sender; once it is closed or
        // dropped and the queue drained, recv fails and the committer ends.
        while let Ok(first) = rx.recv_async().await {
            let mut bytes = first.record_len;
            let mut batch = vec![first];
            while batch.len() < self.cfg.batch_records_max && bytes < self.cfg.batch_bytes_max {
                match rx.try_recv() {
                    Ok(op) => {
                        bytes += op.record_len;
                        batch.push(op);
                    }
                    Err(_) => break,
                }
            }
            self.commit_batch(batch).await;
        }
    }

    async fn commit_batch(&self, batch: Vec<Op<I>>) {
        if let Some(why) = self.state.borrow().failed.clone() {
            for op in batch {
                let _ = op.reply.send(Err(StoreError::Failed(why.clone())));
            }
            return;
        }
        // 1. Decide each op's effect in sequence order, against the index as of the
        //    previous batch plus the effects of earlier ops in this batch.
        let mut touched: HashMap<ShardKey, bool> = HashMap::new(); // key -> present after op
        let mut writes: Vec<(Op<I>, u64)> = Vec::with_capacity(batch.len());
        // A skip may rest on an earlier op of this batch (a second delete of a key):
        // it is answered with the batch's outcome, never before the batch is durable.
        let mut skipped: Vec<oneshot::Sender<Result<Applied, StoreError>>> = Vec::new();
        for op in batch {
            let present_before = {
                let st = self.state.borrow();
                touched.get(&op.key).copied().unwrap_or_else(|| st.index.get(&op.key).is_some())
            };
            let applies = match op.kind {
                OpKind::Put => true,
                OpKind::Delete => present_before,
                OpKind::Relocate { seq } => {
                    !touched.contains_key(&op.key)
                        && self.state.borrow().index.get(&op.key).is_some_and(|l| l.seq == seq)
                }
                OpKind::RelocateTombstone => !touched.contains_key(&op.key) && !present_before,
            };
            if !applies {
                skipped.push(op.reply);
                continue;
            }
            let present_after = matches!(op.kind, OpKind::Put | OpKind::Relocate { .. });
            touched.insert(op.key, present_after);
            let seq = {
                let mut st = self.state.borrow_mut();
                let s = st.next_seq;
                st.next_seq += 1;
                s
            };
            writes.push((op, seq));
        }
        if writes.is_empty() {
            for reply in skipped {
                let _ = reply.send(Ok(Applied::Skipped));
            }
            return;
        }
        match self.write_batch(&mut writes).await {
            Ok(placed) => {
                let mut st = self.state.borrow_mut();
                st.stats.batches += 1;
                st.stats.records_written += writes.len() as u64;
                for ((op, seq), (segment, offset)) in writes.into_iter().zip(placed) {
                    let loc =
                        Loc { segment, offset, payload_len: op.payload_len, seq, block_log2: self.cfg.block_log2 };
                    st.apply(op.key, op.kind, loc);
                    let _ = op.reply.send(Ok(Applied::Written { seq }));
                }
                for reply in skipped {
                    let _ = reply.send(Ok(Applied::Skipped));
                }
            }
            Err(e) => {
                let why = e.to_string();
                tracing::error!(dir = %self.dir.display(), error = %why, "write failed; store is now read-only");
                self.state.borrow_mut().failed = Some(why.clone());
                for reply in writes.into_iter().map(|(op, _)| op.reply).chain(skipped) {
                    let _ = reply.send(Err(StoreError::Failed(why.clone())));
                }
            }
        }
    }

    /// Places, seals, writes and syncs the batch. Returns each record's (segment, offset).
    async fn write_batch(&self, writes: &mut [(Op<I>, u64)]) -> Result<Vec<(u64, u64)>, StoreError> {
        let mut placed = Vec::with_capacity(writes.len());
        let mut touched_segments: HashSet<u64> = HashSet::new();
        let batch_seq = writes.first().map_or(0, |(_, seq)| *seq);
        let mut ios = Vec::with_capacity(writes.len());
        for (op, seq) in writes.iter_mut() {
            let len = op.record_len;
            let fits = {
                let st = self.state.borrow();
                let head = &st.segments[&st.head];
                head.end + len <= head.capacity
            };
            if !fits {
                self.roll_segment(*seq).await?;
            }
            // Only when the record does not fit the reserved space does the batch wait
            // for fallocate; reserving ahead happens alongside the writes below.
            self.reserve_head(len, 0).await?;
            let (seg_id, offset, file, salt) = {
                let mut st = self.state.borrow_mut();
                let head_id = st.head;
                let head = st.segments.get_mut(&head_id).expect("head segment exists");
                let offset = head.end;
                head.end += len;
                (head_id, offset, head.file.clone(), head.salt)
            };
            let mut buf = op.record.take().expect("each op is written once");
            seal_record(&mut buf, *seq, batch_seq, salt);
            touched_segments.insert(seg_id);
            placed.push((seg_id, offset));
            ios.push(async move { file.write_at(buf, offset).await });
        }
        let (results, reserved) =
            futures::join!(futures::future::join_all(ios), self.reserve_head(0, self.cfg.preallocate_step_bytes / 2));
        for r in results {
            r?;
        }
        if let Err(e) = reserved {
            // Reserving ahead is an optimisation; a record that needs the space
            // reserves it (and fails) itself.
            tracing::warn!(dir = %self.dir.display(), error = %e, "reserving disk ahead failed");
        }
        let files: Vec<_> = {
            let st = self.state.borrow();
            touched_segments.iter().map(|id| st.segments[id].file.clone()).collect()
        };
        for r in futures::future::join_all(files.iter().map(|f| f.sync())).await {
            r?;
        }
        self.state.borrow_mut().stats.syncs += files.len() as u64;
        Ok(placed)
    }

    /// Makes sure the head has `len + slack` bytes reserved past its end, reserving
    /// a further step when it does not.
    async fn reserve_head(&self, len: u64, slack: u64) -> Result<(), StoreError> {
        let (file, want) = {
            let st = self.state.borrow();
            let head = &st.segments[&st.head];
            if head.end + len + slack <= head.allocated || head.allocated == head.capacity {
                return Ok(());
            }
            (head.file.clone(), (head.end + len + self.cfg.preallocate_step_bytes).min(head.capacity))
        };
        file.preallocate(want).await?;
        let mut st = self.state.borrow_mut();
        let head_id = st.head;
        let seg = st.segments.get_mut(&head_id).expect("head exists");
        seg.allocated = seg.allocated.max(want);
        Ok(())
    }

    /// Starts a new head segment: create, preallocate, write its header, fsync the
    /// file and the directory, all before any record is placed in it.
    async fn roll_segment(&self, first_seq: u64) -> Result<(), StoreError> {
        let (id, session) = {
            let st = self.state.borrow();
            (st.head + 1, st.session)
        };
        let seg = create_segment(&self.io, &self.dir, id, &self.cfg, first_seq, session).await?;
        let mut st = self.state.borrow_mut();
        st.segments.insert(id, seg);
        st.head = id;
        Ok(())
    }
}

impl<I: Io> State<I> {
    fn apply(&mut self, key: ShardKey, kind: OpKind, loc: Loc) {
        let old = match kind {
            OpKind::Put | OpKind::Relocate { .. } => {
                self.segments.get_mut(&loc.segment).expect("placed in a live segment").live_bytes += loc.record_len();
                self.index.insert(key, loc)
            }
            OpKind::Delete | OpKind::RelocateTombstone => self.index.remove(&key),
        };
        if let Some(old) = old {
            if let Some(seg) = self.segments.get_mut(&old.segment) {
                seg.live_bytes -= old.record_len();
            }
        }
        self.applied_segment = loc.segment;
        self.applied_offset = loc.offset + format::record_len(loc.payload_len, loc.block_log2);
        self.applied_seq = loc.seq;
    }
}

pub(crate) async fn create_segment<I: Io>(
    io: &I,
    dir: &Path,
    id: u64,
    cfg: &StoreConfig,
    first_seq: u64,
    session: u64,
) -> Result<Segment<I::File>, StoreError> {
    let capacity = cfg.segment_bytes;
    // A new segment reserves little: an idle store (12 of them on a default
    // embedded server) should not hold a full step each. Writes reserve ahead.
    let allocated = SEGMENT_INITIAL_RESERVE_BYTES.min(cfg.preallocate_step_bytes).min(capacity);
    let path = dir.join(segment_file_name(id));
    let salt = io.random_u64();
    let file = io.open(&path, OpenMode::CreateNew).await?;
    file.preallocate(allocated).await?;
    let mut buf = io.alloc(SEGMENT_HEADER_BYTES);
    SegmentHeader { segment_id: id, capacity, first_seq, session, salt }.encode(&mut buf);
    file.write_at(buf, 0).await?;
    file.sync().await?;
    io.sync_dir(dir).await?;
    Ok(Segment { id, file: Rc::new(file), capacity, salt, allocated, end: SEGMENT_HEADER_BYTES as u64, live_bytes: 0 })
}
