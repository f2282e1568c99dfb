//! The work that runs on the core owning an object's partition: it holds the
//! object layer, so the bytes of a PUT end up in its stores and the bytes of a GET
//! leave from them. The connection's core reaches it with
//! [`RuntimeHandle::submit`](tessera_engine::runtime::RuntimeHandle::submit) and
//! talks to it through bounded channels of `Bytes` (ownership moves; nothing is
//! copied between cores). S3 decisions (conditions, ranges) are made by the
//! handler's `decide` closure, run here against the current metadata so the
//! decision and the read see the same version.
use std::rc::Rc;

use bytes::Bytes;
use tessera_engine::io::glommio_io::GlommioIo;
use tessera_engine::io::Io;
use tessera_engine::object::{
    DataLayout, DataWriter, FlushOutcome, FullGroup, ObjectError, ObjectInfo, ObjectLayer, PartInfo,
};
use tessera_engine::runtime::CoreCx;

use crate::s3::error::{S3Error, S3ErrorCode};
use crate::s3::md5_lanes::{self, LaneMd5};

/// One message of a body flowing to the owner.
pub enum BodyMsg {
    Data(Bytes),
    /// The body ended; `Ok` carries what the commit needs, `Err` aborts the write
    /// (bad digest, signature, client gone).
    End(Result<Finalize, S3Error>),
}

/// A PUT's condition on the version it replaces, checked by the owner.
pub type PutCheck = Box<dyn Fn(Option<&ObjectInfo>) -> Result<(), S3Error> + Send>;

/// What the connection's core learned from the whole body.
pub struct Finalize {
    /// The Content-MD5 the client sent, checked by the owner, which hashes the
    /// body (the ETag) as it arrives.
    pub content_md5: Option<[u8; 16]>,
    pub headers: Vec<(String, String)>,
    /// Checked against the current version right before the commit.
    pub precondition: Option<PutCheck>,
}

/// Chunk of a response body; the error ends the response abruptly so a client
/// never mistakes a failed read for a complete object.
pub type BodyChunk = Result<Bytes, crate::http::BodyError>;

fn producer_error(msg: String) -> crate::http::BodyError {
    crate::http::BodyError::Producer(Box::new(std::io::Error::other(msg)))
}

/// Largest chunk the owner reads and hands over at once.
pub const READ_CHUNK_BYTES: u64 = 1 << 20;
/// Lookups a read repeats when a concurrent write replaces the version under it
/// (1 ms apart: the write is applied right after its metadata is durable).
const STALE_RETRIES_MAX: u32 = 50;
/// Chunk reads a stream keeps in flight ahead of the one being sent.
const READ_AHEAD_CHUNKS: usize = 2;
/// Group flushes (encode, write, sync) one upload keeps in flight. Measured with
/// MD5 off (`tessera-bench -w put -s 64MiB`): 1 in flight gave 273 MB/s for one
/// upload and 566 for four, 3 gave 593 and 731; the drives wait on each group's
/// sync, so more groups on the way keep them busy.
const FLUSHES_IN_FLIGHT_MAX: usize = 3;
/// Group flushes all uploads of one core keep in flight beyond the first of each
/// upload. Each holds its group's pieces' records (6 MiB at 4+2: the data ones are
/// where the body was placed), so this bounds a core's upload memory at ~10 MiB per
/// upload (the group filling and one flush) + 16 x 6 MiB.
const CORE_EXTRA_FLUSHES_MAX: usize = 16;

/// Body bytes an upload copies and queues for hashing before it lets the reactor
/// turn (and hashes what the core's uploads queued meanwhile). Measured (`tessera-bench -w put -s 64MiB -c 4`, interleaved
/// A/B): 512 KiB gave +11% over never turning it, 128 KiB another +5%.
pub const HASHED_PER_TURN: usize = 128 << 10;

thread_local! {
    /// Extra (beyond one per upload) group flushes in flight on this core.
    static EXTRA_FLUSHES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Holds one of the core's extra flush slots until dropped.
struct ExtraFlush;

impl ExtraFlush {
    fn try_take() -> Option<ExtraFlush> {
        EXTRA_FLUSHES.with(|n| (n.get() < CORE_EXTRA_FLUSHES_MAX).then(|| n.set(n.get() + 1)).map(|_| ExtraFlush))
    }
}

impl Drop for ExtraFlush {
    fn drop(&mut self) {
        EXTRA_FLUSHES.with(|n| n.set(n.get() - 1));
    }
}

pub fn object_error(e: ObjectError) -> S3Error {
    match e {
        ObjectError::NoSuchBucket => S3Error::new(S3ErrorCode::NoSuchBucket),
        ObjectError::NoSuchKey => S3Error::new(S3ErrorCode::NoSuchKey),
        ObjectError::NoSuchUpload => S3Error::new(S3ErrorCode::NoSuchUpload),
        ObjectError::PreconditionFailed => S3Error::new(S3ErrorCode::PreconditionFailed),
        ObjectError::Conflict => S3Error::new(S3ErrorCode::ConditionalRequestConflict),
        ObjectError::Unavailable(m) => S3Error::new(S3ErrorCode::ServiceUnavailable).with_message(m),
        ObjectError::SlowDown => S3Error::new(S3ErrorCode::SlowDown),
        ObjectError::Stale(m) => S3Error::new(S3ErrorCode::SlowDown).with_message(m),
        ObjectError::TooLarge(m) => S3Error::new(S3ErrorCode::EntityTooLarge).with_message(m),
        ObjectError::Invalid(m) => S3Error::new(S3ErrorCode::InvalidArgument).with_message(m),
        ObjectError::Internal(m) => S3Error::new(S3ErrorCode::InternalError).with_message(m),
    }
}

/// [`object_error`] with the bucket and key S3 names in its error body.
pub fn named_error(e: ObjectError, bucket: &str, key: &str) -> S3Error {
    match e {
        ObjectError::NoSuchBucket => S3Error::no_such_bucket(bucket),
        ObjectError::NoSuchKey => S3Error::no_such_key(key),
        e => object_error(e),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Metadata without the data layout, to send back to the connection's core.
pub fn summary(info: &ObjectInfo) -> ObjectInfo {
    ObjectInfo {
        size: info.size,
        etag: info.etag.clone(),
        modified_ms: info.modified_ms,
        headers: info.headers.clone(),
        data: DataLayout::Inline(Vec::new()),
        parts: info.parts.clone(),
    }
}

/// What gets written: a whole object, or one part of an upload.
pub enum PutTarget {
    Object,
    Part { upload_id: String, part_number: u32 },
}

enum Filled {
    /// A full group, to flush.
    Group(FullGroup<GlommioIo>),
    /// The body ended and checked out.
    End(Finalize),
}

/// Takes body messages into the writer until a group is full or the body ends.
/// Bytes past the group's end wait in `carry` for the next call.
async fn fill(
    w: &mut DataWriter<GlommioIo>,
    rx: &flume::Receiver<BodyMsg>,
    carry: &mut Option<Bytes>,
    md5: &mut LaneMd5,
    hashed: &mut usize,
) -> Result<Filled, S3Error> {
    loop {
        let b = match carry.take() {
            Some(b) => b,
            None => match rx.recv_async().await {
                Ok(BodyMsg::Data(b)) => {
                    md5.push(b.clone());
                    b
                }
                Ok(BodyMsg::End(Ok(fin))) => return Ok(Filled::End(fin)),
                Ok(BodyMsg::End(Err(e))) => return Err(e),
                Err(_) => return Err(S3Error::new(S3ErrorCode::IncompleteBody)),
            },
        };
        // Let the reactor submit and reap IO (the drives' writes, the socket's
        // reads) between frames instead of holding the core for a whole group.
        // Meanwhile the core's other uploads queue their bytes too, and the first
        // to wake hashes them all in SIMD lanes.
        *hashed += b.len();
        if *hashed >= HASHED_PER_TURN {
            *hashed = 0;
            GlommioIo::yield_to_reactor().await;
            md5_lanes::hash_queued();
        }
        let (taken, full) = w.push(&b);
        if taken < b.len() {
            *carry = Some(b.slice(taken..));
        }
        if let Some(buf) = full {
            return Ok(Filled::Group(buf));
        }
    }
}

/// A flush task's outcome (`None`: the task was cancelled, at shutdown).
fn flush_outcome(o: Option<FlushOutcome>) -> FlushOutcome {
    o.unwrap_or_else(|| Err(ObjectError::Internal("group flush cancelled".into())))
}

/// The extents of a layout without inline bytes (what a discard needs).
fn clone_layout(d: &DataLayout) -> DataLayout {
    match d {
        DataLayout::Extents(e) => DataLayout::Extents(e.clone()),
        DataLayout::Inline(_) => DataLayout::Inline(Vec::new()),
    }
}

/// Receives a body and commits it. Runs on the owner.
pub async fn put(
    cx: Rc<CoreCx>,
    bucket: String,
    key: String,
    target: PutTarget,
    rx: flume::Receiver<BodyMsg>,
) -> Result<ObjectInfo, S3Error> {
    let objects: Rc<ObjectLayer<_>> = cx.objects().clone();
    if let PutTarget::Part { upload_id, .. } = &target {
        objects.upload(&bucket, &key, upload_id).map_err(object_error)?;
    }
    let mut w = objects
        .writer(&bucket, &key, matches!(target, PutTarget::Object))
        .map_err(|e| named_error(e, &bucket, &key))?;
    // Group flushes run as tasks of their own, up to FLUSHES_IN_FLIGHT_MAX per
    // upload (the core permitting), while the next group's bytes arrive: the drives
    // write and sync groups n and n + 1 while the body of group n + 2 streams in.
    // Outcomes are taken in order; a failure ends the upload (the writer's drop
    // deletes its pieces).
    let mut carry = None;
    let mut md5 = LaneMd5::new();
    let mut hashed = 0;
    let mut pending: std::collections::VecDeque<glommio::task::JoinHandle<FlushOutcome>> = Default::default();
    let received = async {
        let fin = loop {
            match fill(&mut w, &rx, &mut carry, &mut md5, &mut hashed).await? {
                Filled::Group(buf) => {
                    // A second or third flush in flight only while the core has room.
                    let mut extra = None;
                    while !pending.is_empty() {
                        if pending.len() < FLUSHES_IN_FLIGHT_MAX {
                            extra = ExtraFlush::try_take();
                            if extra.is_some() {
                                break;
                            }
                        }
                        let outcome = pending.pop_front().expect("non-empty").await;
                        w.flushed(flush_outcome(outcome)).map_err(object_error)?;
                    }
                    let flush = w.start_flush(buf);
                    pending.push_back(
                        glommio::spawn_local(async move {
                            let outcome = flush.await;
                            drop(extra);
                            outcome
                        })
                        .detach(),
                    );
                }
                Filled::End(fin) => break fin,
            }
        };
        while let Some(flush) = pending.pop_front() {
            w.flushed(flush_outcome(flush.await)).map_err(object_error)?;
        }
        let digest = std::mem::take(&mut md5).finish();
        if fin.content_md5.is_some_and(|want| want != digest.0) {
            return Err(S3Error::new(S3ErrorCode::BadDigest));
        }
        Ok::<_, S3Error>((fin, digest.etag()))
    }
    .await;
    // On failure, the flushes still running finish before the writer is dropped,
    // so the deletion of its pieces comes after their writes.
    for flush in pending.drain(..) {
        let _ = flush.await;
    }
    let (fin, etag) = received?;
    let size = w.size();
    match target {
        PutTarget::Object => {
            let data = w.finish().await.map_err(object_error)?;
            let written = clone_layout(&data);
            let info = ObjectInfo { size, etag, modified_ms: now_ms(), headers: fin.headers, data, parts: vec![] };
            let failed = std::cell::RefCell::new(None);
            let check = |cur: Option<&ObjectInfo>| match fin.precondition.as_ref().map(|p| p(cur)) {
                Some(Err(e)) => {
                    *failed.borrow_mut() = Some(e);
                    false
                }
                _ => true,
            };
            let pre: Option<tessera_engine::object::Precondition<'_>> =
                if fin.precondition.is_some() { Some(&check) } else { None };
            let r = objects.commit_object(&bucket, &key, info, pre).await;
            // Refused before any metadata was written: the pieces are garbage now. (A
            // failed metadata write may have left a replica that names them: those
            // stay, and the object may appear whole after a restart.)
            if matches!(r, Err(ObjectError::PreconditionFailed | ObjectError::Conflict | ObjectError::NoSuchBucket)) {
                objects.discard(&bucket, &key, &written);
            }
            match r {
                Ok(m) => Ok(summary(&m.info)),
                Err(ObjectError::PreconditionFailed) => {
                    Err(failed.take().unwrap_or_else(|| S3Error::new(S3ErrorCode::PreconditionFailed)))
                }
                Err(e) => Err(named_error(e, &bucket, &key)),
            }
        }
        PutTarget::Part { upload_id, part_number } => {
            let extent = w.finish_part().await.map_err(object_error)?;
            let checksums = fin.headers.iter().filter(|(n, _)| n.starts_with("x-amz-checksum-")).cloned().collect();
            let info = PartInfo { size, etag: etag.clone(), modified_ms: now_ms(), checksums, extent };
            if let Err(e) = objects.commit_part(&bucket, &key, &upload_id, part_number, info).await {
                // commit_part itself drops the data of a part whose upload is gone.
                return Err(match e {
                    ObjectError::NoSuchUpload => S3Error::no_such_upload(&upload_id),
                    e => object_error(e),
                });
            }
            Ok(ObjectInfo {
                size,
                etag,
                modified_ms: now_ms(),
                headers: fin.headers,
                data: DataLayout::Inline(vec![]),
                parts: vec![],
            })
        }
    }
}

/// A piece of a response body: object bytes, or literal bytes (multipart/byteranges
/// delimiters).
#[derive(Debug, Clone)]
pub enum Segment {
    Data { start: u64, end: u64 },
    Literal(Bytes),
}

/// What the handler decided to send.
#[derive(Debug)]
pub struct ReadPlan {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub segments: Vec<Segment>,
}

impl ReadPlan {
    pub fn body_len(&self) -> u64 {
        self.segments
            .iter()
            .map(|s| match s {
                Segment::Data { start, end } => end - start,
                Segment::Literal(b) => b.len() as u64,
            })
            .sum()
    }
}

/// Chooses status and ranges against the current version; may run again when a
/// concurrent write replaces the version it first saw.
pub type Decide = Box<dyn Fn(&ObjectInfo) -> Result<ReadPlan, S3Error> + Send>;

/// Looks the object up, lets `decide` choose status and ranges against it, and
/// streams the chosen bytes into `tx` from a task on this core. Returns the
/// metadata and the plan at once; the body follows on `tx`. With `direct`, the
/// body of an inline object comes back with them instead (it is in memory
/// already: no task, no channel).
pub async fn read(
    cx: Rc<CoreCx>,
    bucket: String,
    key: String,
    decide: Decide,
    tx: Option<flume::Sender<BodyChunk>>,
    direct: bool,
) -> Result<(ObjectInfo, ReadPlan, Option<Bytes>), S3Error> {
    let objects = cx.objects().clone();
    // An inline object's bytes live in its metadata record: a PUT of the same key
    // replaces that record on the drives just before the index moves on. A read
    // caught in between sees the newer record and looks the key up again (bounded).
    let mut attempts = 0;
    let (meta, plan, reader, inline) = loop {
        let meta = objects.head(&bucket, &key).map_err(|e| named_error(e, &bucket, &key))?;
        let plan = decide(&meta.info)?;
        let has_data = plan.segments.iter().any(|s| matches!(s, Segment::Data { .. }));
        if has_data {
            objects.check_readable(&meta).map_err(object_error)?;
        }
        let reader = objects.reader(&bucket, &key, &meta);
        let inline = if has_data && tx.is_some() && matches!(meta.info.data, DataLayout::Inline(_)) {
            match reader.inline_data().await {
                Ok(b) => Some(b),
                Err(ObjectError::Stale(_)) if attempts < STALE_RETRIES_MAX => {
                    attempts += 1;
                    drop(reader);
                    glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
                    continue;
                }
                Err(e) => return Err(object_error(e)),
            }
        } else {
            None
        };
        break (meta, plan, reader, inline);
    };
    let info = summary(&meta.info);
    let Some(tx) = tx else { return Ok((info, plan, None)) };
    let segments = plan.segments.clone();
    if segments.is_empty() {
        return Ok((info, plan, None));
    }
    if let (true, Some(all)) = (direct, &inline) {
        let body = match segments.as_slice() {
            [Segment::Data { start, end }] => all.slice(*start as usize..*end as usize),
            segs => {
                let mut b = bytes::BytesMut::with_capacity(plan.body_len() as usize);
                for seg in segs {
                    match seg {
                        Segment::Literal(l) => b.extend_from_slice(l),
                        Segment::Data { start, end } => b.extend_from_slice(&all[*start as usize..*end as usize]),
                    }
                }
                b.freeze()
            }
        };
        return Ok((info, plan, Some(body)));
    }
    glommio::spawn_local(async move {
        for seg in segments {
            match seg {
                Segment::Literal(b) => {
                    if tx.send_async(Ok(b)).await.is_err() {
                        return;
                    }
                }
                Segment::Data { start, end } => {
                    if let Some(all) = &inline {
                        let b = all.slice(start as usize..end as usize);
                        if tx.send_async(Ok(b)).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    // Read-ahead: the next chunks' disk reads run while this one is
                    // handed over, keeping the drives busy; bounded, so a stream holds
                    // at most READ_AHEAD_CHUNKS + the channel's chunks in memory.
                    use futures::StreamExt;
                    let reads = futures::stream::iter(reader.chunks(start, end, READ_CHUNK_BYTES))
                        .map(|(pos, len)| {
                            let reader = &reader;
                            async move { (len, reader.read(pos, len).await) }
                        })
                        .buffered(READ_AHEAD_CHUNKS);
                    futures::pin_mut!(reads);
                    while let Some((len, chunk)) = reads.next().await {
                        match chunk {
                            Ok(c) if c.len() as u64 == len => {
                                if tx.send_async(Ok(c)).await.is_err() {
                                    return; // the client went away
                                }
                            }
                            Ok(_) => {
                                let _ = tx.send_async(Err(producer_error("object shorter than its size".into()))).await;
                                return;
                            }
                            Err(e) => {
                                tracing::error!(error = %e, "read failed mid-response: aborting the connection");
                                let _ = tx.send_async(Err(producer_error(e.to_string()))).await;
                                return;
                            }
                        }
                    }
                }
            }
        }
    })
    .detach();
    Ok((info, plan, None))
}
