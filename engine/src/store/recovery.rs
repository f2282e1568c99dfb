//! Opening a store: find the segments, load the checkpoint if it is sound, replay
//! the records after it (or every record, without one), and start a new head
//! segment. A torn tail record (bad header crc, bad block crc, seq not increasing,
//! or cut off by the end of the file) ends the valid part of its segment: it was
//! never acknowledged, so it is dropped, never served.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::checkpoint::{self, CheckpointData, CHECKPOINT_FILE, CHECKPOINT_TMP_FILE};
use super::{
    corrupt, create_segment, parse_segment_file_name, Index, Loc, RecoveryReport, Segment, State, StoreConfig,
    StoreError, StoreStats,
};
use crate::format::{
    self, FormatError, RecordHeader, RecordKind, SegmentHeader, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES,
};
use crate::io::{align_down, align_up, Io, IoFile, OpenMode, ReadBuf, IO_ALIGN_BYTES};

/// Bytes a scan reads at once (more when one record is larger).
const SCAN_WINDOW_BYTES: u64 = 1 << 20;

/// A valid record found by a scan, with its bytes.
pub(crate) struct ScannedRecord<R> {
    pub offset: u64,
    pub header: RecordHeader,
    bytes: R,
}

impl<R: ReadBuf> ScannedRecord<R> {
    pub fn payload(&self) -> &[u8] {
        let poff = self.header.payload_offset() as usize;
        &self.bytes[poff..poff + self.header.payload_len as usize]
    }
}

/// Walks the records of a segment from `pos` to `end`, checking each completely.
pub(crate) struct Scanner<'a, F: IoFile> {
    file: &'a F,
    pos: u64,
    end: u64,
    last_seq: u64,
    /// The segment's salt, seeding its records' header crcs.
    salt: u64,
    window: Option<(u64, F::ReadBuf)>,
    stopped: Option<StoreError>,
    /// Where the scan stopped, and the record's header when the header itself was
    /// intact (only its payload failed).
    stopped_at: u64,
    stopped_header: Option<RecordHeader>,
}

impl<'a, F: IoFile> Scanner<'a, F> {
    pub fn new(file: &'a F, pos: u64, end: u64, last_seq: u64, salt: u64) -> Self {
        Scanner { file, pos, end, last_seq, salt, window: None, stopped: None, stopped_at: pos, stopped_header: None }
    }

    /// Offset after the last valid record returned.
    pub fn pos(&self) -> u64 {
        self.pos
    }

    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Why the scan ended before `end`, unless it met clean (zeroed) space.
    pub fn stopped_on(&mut self) -> Option<StoreError> {
        self.stopped.take()
    }

    /// After a stop: the first valid record further on in this segment (seq above
    /// the last valid one), found by probing each 4 KiB page. Failure path only.
    pub async fn find_valid_after_stop(&mut self) -> Result<Option<(u64, RecordHeader)>, StoreError> {
        // Never look inside a failed record whose header is intact: its payload is
        // client data and is not searched for records.
        let skip = self.stopped_header.map_or(IO_ALIGN_BYTES as u64, |h| h.record_len());
        let from = self.stopped_at + skip;
        let mut probe = Scanner::new(self.file, from, self.end, self.last_seq, self.salt);
        let mut at = from;
        while at + IO_ALIGN_BYTES as u64 <= self.end {
            probe.pos = at;
            probe.stopped = None;
            if let Some(rec) = probe.next().await? {
                return Ok(Some((rec.offset, rec.header)));
            }
            at += IO_ALIGN_BYTES as u64;
        }
        Ok(None)
    }

    /// Continues the scan at `offset` (a record found by `find_valid_after_stop`),
    /// after `skipped_seq` (the damaged record's seq, when known).
    pub fn resume(&mut self, offset: u64, skipped_seq: Option<u64>) {
        self.pos = offset;
        self.stopped = None;
        self.stopped_header = None;
        if let Some(s) = skipped_seq {
            self.last_seq = self.last_seq.max(s);
        }
    }

    pub fn stopped_at(&self) -> u64 {
        self.stopped_at
    }

    pub fn take_stopped_header(&mut self) -> Option<RecordHeader> {
        self.stopped_header.take()
    }

    /// `len` bytes at `at`, from the window or a fresh read.
    async fn bytes(&mut self, at: u64, len: u64) -> Result<F::ReadBuf, StoreError> {
        if let Some((base, buf)) = &self.window {
            if at >= *base && at + len <= *base + buf.len() as u64 {
                return Ok(buf.slice((at - base) as usize, len as usize));
            }
        }
        let base = align_down(at);
        let want = align_up(at + len).max(base + SCAN_WINDOW_BYTES).min(align_up(self.end));
        let buf = self.file.read_at(base, (want - base) as usize).await?;
        if (buf.len() as u64) < at + len - base {
            let reason = FormatError::Truncated { need: (at + len - base) as usize, have: buf.len() };
            return Err(corrupt(self.file.path(), at, reason));
        }
        let out = buf.slice((at - base) as usize, len as usize);
        self.window = Some((base, buf));
        Ok(out)
    }

    pub async fn next(&mut self) -> Result<Option<ScannedRecord<F::ReadBuf>>, StoreError> {
        if self.stopped.is_some() || self.pos + IO_ALIGN_BYTES as u64 > self.end {
            return Ok(None);
        }
        let at = self.pos;
        let first = self.bytes(at, IO_ALIGN_BYTES as u64).await?;
        let header = match format::decode_header(&first) {
            Ok(h) => h,
            Err(FormatError::BadMagic) if first[..RECORD_HEADER_BYTES].iter().all(|&b| b == 0) => {
                return Ok(None); // clean end of the written part
            }
            Err(e) => return self.stop(at, e),
        };
        let len = header.record_len();
        if at + len > self.end {
            return self.stop(at, FormatError::Truncated { need: len as usize, have: (self.end - at) as usize });
        }
        let bytes = self.bytes(at, len).await?;
        if let Err(e) = format::check_header_crc(&header, &bytes, self.salt) {
            return self.stop(at, e);
        }
        if header.seq <= self.last_seq {
            return self.stop(at, FormatError::InvalidField { field: "seq", value: header.seq });
        }
        let poff = header.payload_offset() as usize;
        if let Err(e) = format::verify_blocks(&header, &bytes, 0, &bytes[poff..poff + header.payload_len as usize]) {
            self.stopped_header = Some(header);
            return self.stop(at, e);
        }
        self.pos = at + len;
        self.last_seq = header.seq;
        Ok(Some(ScannedRecord { offset: at, header, bytes }))
    }

    fn stop<T>(&mut self, at: u64, reason: FormatError) -> Result<Option<T>, StoreError> {
        self.stopped = Some(corrupt(self.file.path(), at, reason));
        self.stopped_at = at;
        Ok(None)
    }
}

struct Found<F> {
    header: SegmentHeader,
    file: Rc<F>,
    /// Bytes the file holds (disk is reserved in steps, so often < capacity).
    size: u64,
}

impl<F: IoFile> Found<F> {
    async fn new(header: SegmentHeader, file: F) -> Result<Self, StoreError> {
        let size = align_down(file.size().await?.min(header.capacity));
        Ok(Found { header, file: Rc::new(file), size })
    }
}

pub(crate) async fn recover<I: Io>(io: &I, dir: &Path, cfg: &StoreConfig) -> Result<State<I>, StoreError> {
    io.create_dir_all(dir).await?;
    let names = io.list_dir(dir).await?;
    if names.iter().any(|n| n == CHECKPOINT_TMP_FILE) {
        io.remove(&dir.join(CHECKPOINT_TMP_FILE)).await?;
    }
    let ids = segment_ids(&names);
    let mut found: BTreeMap<u64, Found<I::File>> = BTreeMap::new();
    let last_id = ids.last().copied();
    for id in ids {
        let (path, file, header) = open_segment(io, dir, id, OpenMode::ReadWrite).await?;
        match header {
            Ok(h) => {
                found.insert(id, Found::new(h, file).await?);
            }
            Err(SegmentHeaderError::Identity(reason)) => {
                return Err(StoreError::Layout { path: path.display().to_string(), reason })
            }
            // The newest segment's creation (header write + fsync) was cut short:
            // then no record was ever placed in it, and the first record's page is
            // still zero. Anything else is a damaged header over real records:
            // refuse rather than guess.
            Err(SegmentHeaderError::Format(e)) if Some(id) == last_id => {
                let first = file.read_at(SEGMENT_HEADER_BYTES as u64, IO_ALIGN_BYTES).await?;
                if first.iter().any(|&b| b != 0) {
                    return Err(StoreError::Layout {
                        path: path.display().to_string(),
                        reason: format!(
                            "segment header is damaged ({e}) but records follow it; check with tessera-fsck"
                        ),
                    });
                }
                file.close().await?;
                tracing::warn!(path = %path.display(), "removing segment whose creation did not finish");
                io.remove(&path).await?;
                io.sync_dir(dir).await?;
            }
            Err(SegmentHeaderError::Format(e)) => return Err(corrupt(&path, 0, e)),
        }
    }

    let cp = match read_checkpoint(io, dir).await {
        Ok(cp) => cp,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "ignoring unusable checkpoint; rebuilding from all records");
            None
        }
    };
    let (rebuilt, mut report) = rebuild(&found, cp.as_ref()).await?;
    if cp.is_some() && !report.from_checkpoint {
        tracing::warn!(dir = %dir.display(), "checkpoint does not match the segments; rebuilt from all records");
    }
    let (index, ends, last_seq) = rebuilt;

    let max_first_seq = found.values().map(|f| f.header.first_seq).max().unwrap_or(0);
    let found_sessions_max = found.values().map(|f| f.header.session).max().unwrap_or(0);
    let next_seq = last_seq.max(max_first_seq) + 1;
    let mut segments: BTreeMap<u64, Segment<I::File>> = BTreeMap::new();
    for (id, f) in found {
        let end = ends.get(&id).copied().unwrap_or(SEGMENT_HEADER_BYTES as u64);
        segments.insert(
            id,
            Segment {
                id,
                file: f.file,
                capacity: f.header.capacity,
                salt: f.header.salt,
                allocated: f.size,
                end,
                live_bytes: 0,
            },
        );
    }
    for (_, loc) in index.iter() {
        segments.get_mut(&loc.segment).expect("replay checked every location").live_bytes += loc.record_len();
    }
    // Each open writes into a fresh segment, never after a possibly torn tail.
    let head = segments.keys().next_back().map_or(1, |id| id + 1);
    let session = found_sessions_max + 1;
    let seg = create_segment(io, dir, head, cfg, next_seq, session).await?;
    segments.insert(head, seg);
    report.segments = segments.len();
    report.keys = index.len();
    Ok(State {
        recovery: report,
        index,
        segments,
        head,
        session,
        next_seq,
        applied_segment: head,
        applied_offset: SEGMENT_HEADER_BYTES as u64,
        applied_seq: last_seq,
        failed: None,
        stats: StoreStats::default(),
    })
}

/// Segment ids named in a directory listing, in order.
fn segment_ids(names: &[String]) -> Vec<u64> {
    let mut ids: Vec<u64> = names.iter().filter_map(|n| parse_segment_file_name(n)).collect();
    ids.sort_unstable();
    ids
}

/// Why a segment header cannot be used.
enum SegmentHeaderError {
    /// Not a valid header at all (damaged, or a creation cut short).
    Format(FormatError),
    /// A valid header that does not belong to this file name.
    Identity(String),
}

/// Opens segment `id` and decodes its header.
async fn open_segment<I: Io>(
    io: &I,
    dir: &Path,
    id: u64,
    mode: OpenMode,
) -> Result<(PathBuf, I::File, Result<SegmentHeader, SegmentHeaderError>), StoreError> {
    let path = dir.join(super::segment_file_name(id));
    let file = io.open(&path, mode).await?;
    let page = file.read_at(0, SEGMENT_HEADER_BYTES).await?;
    let header = match SegmentHeader::decode(&page) {
        Ok(h) if h.segment_id == id && h.capacity >= SEGMENT_HEADER_BYTES as u64 => Ok(h),
        Ok(h) => {
            Err(SegmentHeaderError::Identity(format!("header says segment {} of {} bytes", h.segment_id, h.capacity)))
        }
        Err(e) => Err(SegmentHeaderError::Format(e)),
    };
    Ok((path, file, header))
}

/// The checkpoint file: `Ok(None)` when there is none, `Err` when it is unusable.
async fn read_checkpoint<I: Io>(io: &I, dir: &Path) -> Result<Option<CheckpointData>, String> {
    match io.read_file(&dir.join(CHECKPOINT_FILE)).await {
        Ok(bytes) => checkpoint::decode(&bytes).map(Some).map_err(|e| e.to_string()),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// The index a restart builds: from the checkpoint and the records after it when
/// the checkpoint fits the segments, else from every record.
async fn rebuild<F: IoFile>(
    found: &BTreeMap<u64, Found<F>>,
    cp: Option<&CheckpointData>,
) -> Result<(Rebuilt, RecoveryReport), StoreError> {
    if let Some(cp) = cp {
        let mut report = RecoveryReport { from_checkpoint: true, ..Default::default() };
        if let Some(r) = replay(found, Some(cp), &mut report).await? {
            return Ok((r, report));
        }
    }
    let mut report = RecoveryReport::default();
    let r = replay(found, None, &mut report).await?.expect("a full scan needs no checkpoint");
    Ok((r, report))
}

type Rebuilt = (Index, BTreeMap<u64, u64>, u64);

/// Replays one record into the index: a put points its key at it, a tombstone
/// removes the key.
fn apply_record(index: &mut Index, segment: u64, offset: u64, h: &RecordHeader) {
    match h.kind {
        RecordKind::Put => {
            let loc = Loc { segment, offset, payload_len: h.payload_len, seq: h.seq, block_log2: h.block_log2 };
            index.insert(h.key, loc);
        }
        RecordKind::Tombstone => {
            index.remove(&h.key);
        }
    }
}

/// Whether a record of a batch that began after `failed_seq` lies further on: in
/// segment `id` from `from`, or in the following segments of the same session.
/// Such a record proves the failed record's batch was durable (batches are written
/// one after another), so the failure is damage, not a torn tail.
async fn later_batch_follows<F: IoFile>(
    found: &BTreeMap<u64, Found<F>>,
    id: u64,
    from: Option<u64>,
    failed_seq: u64,
) -> Result<bool, StoreError> {
    let session = found[&id].header.session;
    for (sid, f) in found.range(id..) {
        if f.header.session != session {
            break;
        }
        let start = match (sid == &id, from) {
            (true, Some(at)) => at,
            (true, None) => continue,
            (false, _) => SEGMENT_HEADER_BYTES as u64,
        };
        let mut s = Scanner::new(&*f.file, start, f.size, failed_seq, f.header.salt);
        loop {
            while let Some(rec) = s.next().await? {
                if rec.header.batch_seq > failed_seq {
                    return Ok(true);
                }
            }
            // Another failure disproves nothing (with the salt, any valid record
            // further on is genuine): look past it too.
            if s.stopped_on().is_none() {
                break;
            }
            match s.find_valid_after_stop().await? {
                Some((offset, _)) => s.resume(offset, None),
                None => break,
            }
        }
    }
    Ok(false)
}

/// Rebuilds the index: from the checkpoint and the records after it, or from every
/// record. Returns None when the checkpoint does not fit the segments found.
async fn replay<F: IoFile>(
    found: &BTreeMap<u64, Found<F>>,
    cp: Option<&CheckpointData>,
    report: &mut RecoveryReport,
) -> Result<Option<Rebuilt>, StoreError> {
    let mut index = Index::default();
    let mut ends = BTreeMap::new();
    let mut last_seq = 0;
    let (replay_segment, replay_offset) = match cp {
        Some(cp) => {
            // A checkpoint passes its crcs, but is still checked field by field
            // before it is trusted: anything odd means rebuild from all records.
            let aligned = |v: u64| v.is_multiple_of(IO_ALIGN_BYTES as u64);
            let in_segment = |v: u64| aligned(v) && v >= SEGMENT_HEADER_BYTES as u64;
            let sane = in_segment(cp.replay_offset)
                && cp.segment_ends.iter().all(|(_, end)| in_segment(*end))
                && cp.entries.iter().all(|e| {
                    aligned(e.offset)
                        && (format::BLOCK_LOG2_MIN..=format::BLOCK_LOG2_MAX).contains(&e.block_log2)
                        && e.payload_len <= format::RECORD_PAYLOAD_BYTES_MAX
                        && e.seq <= cp.last_seq
                });
            if !sane {
                return Ok(None);
            }
            for e in &cp.entries {
                let key = format::ShardKey { partition: e.partition, object: e.object, piece: e.piece };
                let loc = Loc {
                    segment: e.segment,
                    offset: e.offset,
                    payload_len: e.payload_len,
                    seq: e.seq,
                    block_log2: e.block_log2,
                };
                index.insert(key, loc);
            }
            let cp_ends: BTreeMap<u64, u64> = cp.segment_ends.iter().copied().collect();
            for id in found.keys().filter(|id| **id < cp.replay_segment) {
                match cp_ends.get(id) {
                    Some(end) if *end <= found[id].size => {
                        ends.insert(*id, *end);
                    }
                    _ => return Ok(None),
                }
            }
            last_seq = cp.last_seq;
            (cp.replay_segment, cp.replay_offset)
        }
        None => (0, SEGMENT_HEADER_BYTES as u64),
    };
    for (id, f) in found.range(replay_segment..) {
        let start = if *id == replay_segment { replay_offset } else { SEGMENT_HEADER_BYTES as u64 };
        let mut scanner = Scanner::new(&*f.file, start, f.size, last_seq, f.header.salt);
        let mut end = start;
        loop {
            while let Some(rec) = scanner.next().await? {
                report.records_replayed += 1;
                apply_record(&mut index, *id, rec.offset, &rec.header);
            }
            end = end.max(scanner.pos());
            let Some(err) = scanner.stopped_on() else { break };
            // Torn tail or damage? Within a segment seqs are dense in file order, so
            // the failed record's seq is known even if its header is garbage: the
            // previous record's + 1, or the segment's first_seq at its start.
            // Batches are written one after another, each only once the previous is
            // durable: a valid record whose batch began after that seq proves the
            // failed record's batch was durable, so the failure is damage and the
            // log goes on after it. Otherwise it is the torn tail of the last batch.
            let last = scanner.last_seq();
            let at = scanner.stopped_at();
            let failed_seq = if at == SEGMENT_HEADER_BYTES as u64 { f.header.first_seq } else { last + 1 };
            // Probe first: it needs the failed record's header to skip its extent.
            let next = scanner.find_valid_after_stop().await?;
            let damaged = scanner.take_stopped_header().filter(|h| h.seq == failed_seq);
            let later_batch = later_batch_follows(found, *id, next.map(|(o, _)| o), failed_seq).await?;
            if !later_batch {
                report.torn_tails += 1;
                tracing::info!(segment = id, error = %err, "end of valid records (torn tail dropped)");
                break;
            }
            report.damaged_records += 1;
            tracing::error!(segment = id, offset = at, error = %err, "damaged record inside the log; skipping it");
            if let Some(h) = damaged {
                // Header intact, payload not: keep it findable so reads fail loudly
                // (and a layer above can repair) instead of serving an older version.
                apply_record(&mut index, *id, at, &h);
                end = end.max(at + h.record_len());
            }
            match next {
                Some((offset, _)) => scanner.resume(offset, Some(failed_seq)),
                None => {
                    last_seq = last_seq.max(failed_seq);
                    break;
                }
            }
        }
        ends.insert(*id, end);
        last_seq = last_seq.max(scanner.last_seq());
    }
    if index
        .iter()
        .any(|(_, l)| !found.contains_key(&l.segment) || ends.get(&l.segment).is_none_or(|end| l.offset >= *end))
    {
        return Ok(None);
    }
    Ok(Some((index, ends, last_seq)))
}

/// What a read-only check of a store directory found. See [`verify_store`].
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    pub segments: Vec<SegmentCheck>,
    /// Entries in the checkpoint, if one was readable.
    pub checkpoint_entries: Option<usize>,
    /// Pieces a restart would find (checkpoint + replay, or a full scan).
    pub live_keys: usize,
    pub live_payload_bytes: u64,
    /// Anything that loses or endangers acknowledged data.
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct SegmentCheck {
    pub id: u64,
    pub file_bytes: u64,
    pub records: u64,
    pub tombstones: u64,
    pub payload_bytes: u64,
    /// End of the valid records.
    pub valid_end: u64,
    /// Why the scan stopped before clean space (a torn tail after a crash, or damage).
    pub stopped: Option<String>,
}

/// Checks a store directory without changing it: every segment header, every
/// record's header and block checksums, the checkpoint, and that every piece the
/// checkpoint names is a valid record. Files are opened read-only.
pub async fn verify_store<I: Io>(io: &I, dir: &Path) -> Result<VerifyReport, StoreError> {
    let mut report = VerifyReport::default();
    let names = io.list_dir(dir).await?;
    let mut found: BTreeMap<u64, Found<I::File>> = BTreeMap::new();
    for id in segment_ids(&names) {
        let (path, file, header) = open_segment(io, dir, id, OpenMode::ReadOnly).await?;
        match header {
            Ok(h) => {
                found.insert(id, Found::new(h, file).await?);
            }
            Err(SegmentHeaderError::Identity(why)) => report.problems.push(format!("{}: {why}", path.display())),
            Err(SegmentHeaderError::Format(e)) => {
                report.problems.push(format!("{}: bad segment header: {e}", path.display()))
            }
        }
    }
    for (id, f) in &found {
        let mut check = SegmentCheck { id: *id, file_bytes: f.size, ..Default::default() };
        let mut scanner = Scanner::new(&*f.file, SEGMENT_HEADER_BYTES as u64, f.size, 0, f.header.salt);
        while let Some(rec) = scanner.next().await? {
            check.records += 1;
            check.payload_bytes += rec.header.payload_len;
            check.tombstones += (rec.header.kind == RecordKind::Tombstone) as u64;
        }
        check.valid_end = scanner.pos();
        check.stopped = scanner.stopped_on().map(|e| e.to_string());
        report.segments.push(check);
    }
    let cp = match read_checkpoint(io, dir).await {
        Ok(cp) => cp,
        Err(e) => {
            report.problems.push(format!("checkpoint unusable ({e}); a restart rebuilds from all records"));
            None
        }
    };
    report.checkpoint_entries = cp.as_ref().map(|c| c.entries.len());
    // The index a restart would build ...
    let ((index, _, _), rebuilt) = rebuild(&found, cp.as_ref()).await?;
    if cp.is_some() && !rebuilt.from_checkpoint {
        report.problems.push("checkpoint does not fit the segments; a restart rebuilds from all records".into());
    }
    // ... and every piece in it read back and checked, as a read would.
    for (key, loc) in index.iter() {
        report.live_keys += 1;
        report.live_payload_bytes += loc.payload_len;
        let f = &found[&loc.segment];
        let mut one = Scanner::new(&*f.file, loc.offset, f.size, 0, f.header.salt);
        let ok = match one.next().await? {
            Some(rec) => rec.header.key == key && rec.header.seq == loc.seq,
            None => false,
        };
        if !ok {
            let why = one.stopped_on().map_or("identity mismatch".to_string(), |e| e.to_string());
            report.problems.push(format!(
                "piece (partition {}, object {:032x}, piece {}) in segment {} at offset {} is damaged: {why}",
                key.partition, key.object, key.piece, loc.segment, loc.offset
            ));
        }
    }
    Ok(report)
}
