//! The S3 handlers' backend in a cluster gateway (`tessera gateway`): the same
//! handlers as the embedded server (routing, auth, conditions, ranges, checksums,
//! XML), with the object layer's calls replaced by the cluster's:
//! * objects through [`ClusterClient`] (pieces on the partition's erasure set, the
//!   commit through Kafka, reads from a read quorum), on the connection's own core;
//! * the bucket catalogue in etcd, reached through the control thread; each
//!   gateway keeps a copy refreshed with the topology, and asks etcd before it
//!   answers NoSuchBucket, so a bucket created through one gateway is usable
//!   through every other at once.
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use tessera_engine::applied::MetaId;
use tessera_engine::io::glommio_io::GlommioIo;
use tessera_engine::io::Io;
use tessera_engine::object::meta::{MetaEntry, UploadInfo};
use tessera_engine::object::{DataLayout, ListItem, ObjectInfo, PartInfo};

use super::error::{S3Error, S3ErrorCode};
use super::md5_lanes::{self, LaneMd5};
use super::owner::{summary, BodyChunk, BodyMsg, Decide, PutTarget, ReadPlan, Segment, HASHED_PER_TURN};
use crate::cluster_client::{ClusterClient, ClusterIoError, INLINE_BYTES_MAX};

/// Reads a stream keeps in flight ahead of the one being sent.
const READ_AHEAD: usize = 2;

/// A request to the control thread, which holds the etcd client.
pub enum ControlReq {
    CreateBucket(String, flume::Sender<Result<Option<i64>, String>>),
    DeleteBucket(String, flume::Sender<Result<bool, String>>),
    Bucket(String, flume::Sender<Result<Option<i64>, String>>),
    Buckets(flume::Sender<Result<Vec<(String, i64)>, String>>),
}

/// What every core of a cluster gateway shares.
pub struct ClusterShared {
    pub control: flume::Sender<ControlReq>,
    /// The bucket catalogue as last read from etcd (name → creation time).
    pub buckets: RwLock<BTreeMap<String, i64>>,
}

/// One core's view of the cluster.
pub struct ClusterCx {
    pub client: ClusterClient,
    pub shared: Arc<ClusterShared>,
}

fn control_error(e: impl std::fmt::Display) -> S3Error {
    S3Error::new(S3ErrorCode::ServiceUnavailable).with_message(format!("cluster catalogue (etcd): {e}"))
}

/// The S3 error for a cluster failure: 503 with the reason, so clients retry and
/// operators see why (500 for a cluster config this build cannot serve).
pub fn io_error(e: ClusterIoError) -> S3Error {
    match e {
        e @ ClusterIoError::BadConfig(_) => S3Error::new(S3ErrorCode::InternalError).with_message(e.to_string()),
        e => S3Error::new(S3ErrorCode::ServiceUnavailable).with_message(e.to_string()),
    }
}

impl ClusterCx {
    async fn ask<T>(&self, make: impl FnOnce(flume::Sender<Result<T, String>>) -> ControlReq) -> Result<T, S3Error> {
        let (tx, rx) = flume::bounded(1);
        self.shared.control.send_async(make(tx)).await.map_err(|_| control_error("control thread stopped"))?;
        rx.recv_async().await.map_err(|_| control_error("control thread stopped"))?.map_err(control_error)
    }

    /// Whether the bucket is known to this gateway (no etcd round trip).
    pub fn bucket_known(&self, name: &str) -> bool {
        self.shared.buckets.read().expect("not poisoned").contains_key(name)
    }

    /// Whether the bucket exists: this gateway's copy, else etcd.
    pub async fn check_bucket(&self, name: &str) -> Result<(), S3Error> {
        if self.bucket_known(name) {
            return Ok(());
        }
        match self.ask(|tx| ControlReq::Bucket(name.to_string(), tx)).await? {
            Some(created) => {
                self.shared.buckets.write().expect("not poisoned").insert(name.to_string(), created);
                Ok(())
            }
            None => Err(S3Error::no_such_bucket(name)),
        }
    }

    /// `Some(created_ms)` when created now, `None` when it existed.
    pub async fn create_bucket(&self, name: &str) -> Result<Option<i64>, S3Error> {
        let created = self.ask(|tx| ControlReq::CreateBucket(name.to_string(), tx)).await?;
        if let Some(ms) = created {
            self.shared.buckets.write().expect("not poisoned").insert(name.to_string(), ms);
        }
        Ok(created)
    }

    pub async fn delete_bucket(&self, name: &str) -> Result<(), S3Error> {
        self.check_bucket(name).await?;
        let (objects, _) = self.client.list(name, "", "", 1).await.map_err(io_error)?;
        if !objects.is_empty() {
            return Err(S3Error::new(S3ErrorCode::BucketNotEmpty).with_resource(name));
        }
        self.shared.buckets.write().expect("not poisoned").remove(name);
        if !self.ask(|tx| ControlReq::DeleteBucket(name.to_string(), tx)).await? {
            return Err(S3Error::no_such_bucket(name));
        }
        Ok(())
    }

    pub async fn buckets(&self) -> Result<Vec<(String, i64)>, S3Error> {
        self.ask(ControlReq::Buckets).await
    }
}

/// Receives a PUT body and commits it: small bodies inline in the commit record,
/// larger ones written group by group to the set as they arrive (memory: one
/// group). Nothing is visible until the commit; a body that fails leaves pieces
/// no record names, which the nodes collect.
pub async fn put(
    cc: Rc<ClusterCx>,
    bucket: String,
    key: String,
    target: PutTarget,
    rx: flume::Receiver<BodyMsg>,
) -> Result<ObjectInfo, S3Error> {
    cc.check_bucket(&bucket).await?;
    cc.client.check_available(&bucket, &key).map_err(io_error)?;
    if let PutTarget::Part { upload_id, .. } = &target {
        open_upload(&cc, &bucket, &key, upload_id).await?;
    }
    let mut md5 = LaneMd5::new();
    let mut hashed = 0;
    let mut small: Vec<u8> = Vec::new();
    // A part is always coded into an extent: the object it completes is the list
    // of its parts' extents.
    let mut writer = match target {
        PutTarget::Part { .. } => Some(cc.client.writer(&bucket, &key).map_err(io_error)?),
        PutTarget::Object => None,
    };
    let fin = loop {
        match rx.recv_async().await {
            Ok(BodyMsg::Data(b)) => {
                md5.push(b.clone());
                // As on the embedded owner: the reactor sends the pieces meanwhile,
                // and the core's uploads are hashed together.
                hashed += b.len();
                if hashed >= HASHED_PER_TURN {
                    hashed = 0;
                    GlommioIo::yield_to_reactor().await;
                    md5_lanes::hash_queued();
                }
                match writer.as_mut() {
                    Some(w) => crate::cluster_client::ExtentWriter::push(w, &b).await.map_err(io_error)?,
                    None => {
                        small.extend_from_slice(&b);
                        if small.len() > INLINE_BYTES_MAX {
                            let mut w = cc.client.writer(&bucket, &key).map_err(io_error)?;
                            w.push(&small).await.map_err(io_error)?;
                            small = Vec::new();
                            writer = Some(w);
                        }
                    }
                }
            }
            Ok(BodyMsg::End(Ok(fin))) => break fin,
            Ok(BodyMsg::End(Err(e))) => return Err(e),
            Err(_) => return Err(S3Error::new(S3ErrorCode::IncompleteBody)),
        }
    };
    let digest = md5.finish();
    if fin.content_md5.is_some_and(|want| want != digest.0) {
        return Err(S3Error::new(S3ErrorCode::BadDigest));
    }
    let (size, data) = match writer {
        Some(w) => {
            let size = w.size();
            (size, DataLayout::Extents(vec![w.finish().await.map_err(io_error)?]))
        }
        None => (small.len() as u64, DataLayout::Inline(small)),
    };
    if let PutTarget::Part { upload_id, part_number } = target {
        let DataLayout::Extents(mut extents) = data else { unreachable!("parts are written as extents") };
        let checksums = fin.headers.iter().filter(|(n, _)| n.starts_with("x-amz-checksum-")).cloned().collect();
        let now = now_ms();
        let part = PartInfo { size, etag: digest.etag(), modified_ms: now, checksums, extent: extents.remove(0) };
        let entry =
            MetaEntry::Part { bucket: bucket.clone(), key: key.clone(), upload_id, part_number, part: Some(part) };
        cc.client.commit_entry(&bucket, &key, entry).await.map_err(io_error)?;
        return Ok(ObjectInfo {
            size,
            etag: digest.etag(),
            modified_ms: now,
            headers: fin.headers,
            data: DataLayout::Inline(vec![]),
            parts: vec![],
        });
    }
    if let Some(check) = &fin.precondition {
        // Checked against the newest version a read quorum knows, right before the
        // commit (a concurrent writer between the two may still win: the later log
        // position does).
        let current = cc.client.head(&bucket, &key).await.map_err(io_error)?;
        check(current.as_ref().map(|(_, info)| info))?;
    }
    let info =
        ObjectInfo { size, etag: digest.etag(), modified_ms: now_ms(), headers: fin.headers, data, parts: vec![] };
    let out = summary(&info);
    cc.client.commit_object(&bucket, &key, Some(info)).await.map_err(io_error)?;
    Ok(out)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn upload_id_of(bucket: &str, key: &str, upload_id: &str) -> MetaId {
    MetaId::Upload { bucket: bucket.into(), key: key.into(), upload_id: upload_id.into() }
}

/// Starts a multipart upload: its record in the key's partition, so every
/// gateway sees it. Returns the upload id.
pub async fn create_upload(
    cc: &ClusterCx,
    bucket: &str,
    key: &str,
    headers: Vec<(String, String)>,
) -> Result<String, S3Error> {
    cc.check_bucket(bucket).await?;
    let upload_id = format!("{:032x}", rand::random::<u128>());
    let upload = Some(UploadInfo { initiated_ms: now_ms(), headers });
    let entry = MetaEntry::Upload { bucket: bucket.into(), key: key.into(), upload_id: upload_id.clone(), upload };
    cc.client.commit_entry(bucket, key, entry).await.map_err(io_error)?;
    Ok(upload_id)
}

/// The upload's record, if it is open (NoSuchUpload otherwise).
pub async fn open_upload(cc: &ClusterCx, bucket: &str, key: &str, upload_id: &str) -> Result<UploadInfo, S3Error> {
    cc.check_bucket(bucket).await?;
    let rec = cc.client.newest_record(bucket, key, upload_id_of(bucket, key, upload_id)).await.map_err(io_error)?;
    match rec.map(|r| r.entry) {
        Some(MetaEntry::Upload { upload: Some(u), .. }) => Ok(u),
        _ => Err(S3Error::no_such_upload(upload_id)),
    }
}

/// Ends an upload (completed or aborted): its parts stop counting as live data.
pub async fn close_upload(cc: &ClusterCx, bucket: &str, key: &str, upload_id: &str) -> Result<(), S3Error> {
    let entry = MetaEntry::Upload { bucket: bucket.into(), key: key.into(), upload_id: upload_id.into(), upload: None };
    cc.client.commit_entry(bucket, key, entry).await.map_err(io_error)?;
    Ok(())
}

/// The parts uploaded so far, by part number.
pub async fn upload_parts(
    cc: &ClusterCx,
    bucket: &str,
    key: &str,
    upload_id: &str,
) -> Result<Vec<(u32, PartInfo)>, S3Error> {
    cc.client.upload_parts(bucket, key, upload_id).await.map_err(io_error)
}

/// The object's current version from a read quorum (NoSuchBucket, NoSuchKey).
async fn current(cc: &ClusterCx, bucket: &str, key: &str) -> Result<ObjectInfo, S3Error> {
    cc.check_bucket(bucket).await?;
    match cc.client.head(bucket, key).await.map_err(io_error)? {
        Some((_, info)) => Ok(info),
        None => Err(S3Error::no_such_key(key)),
    }
}

/// Chunks of `start..end` for reading: cut at stripe boundaries (a chunk reads
/// `k` shards of one stripe, data slots only when healthy).
fn chunks(info: &ObjectInfo, start: u64, end: u64) -> Vec<(u64, u64)> {
    let DataLayout::Extents(extents) = &info.data else { return vec![(start, end)] };
    let mut out = Vec::new();
    let mut base = 0;
    for e in extents {
        let stripe = e.geometry.k as u64 * e.geometry.chunk_bytes as u64;
        let (mut a, b) = (start.max(base), end.min(base + e.size));
        while a < b {
            let next = (base + ((a - base) / stripe + 1) * stripe).min(b);
            out.push((a, next));
            a = next;
        }
        base += e.size;
    }
    out
}

/// Looks the object up, lets `decide` choose status and ranges, and streams the
/// chosen bytes into `tx` from a task. The first chunk is read before this
/// returns, so an object that cannot be read fails with a 503 before any header
/// is sent; a failure later ends the response early (never a short 200).
pub async fn read(
    cc: Rc<ClusterCx>,
    bucket: String,
    key: String,
    decide: Decide,
    tx: Option<flume::Sender<BodyChunk>>,
    direct: bool,
) -> Result<(ObjectInfo, ReadPlan, Option<Bytes>), S3Error> {
    let info = current(&cc, &bucket, &key).await?;
    let plan = decide(&info)?;
    let out = summary(&info);
    let Some(tx) = tx else { return Ok((out, plan, None)) };
    let segments = plan.segments.clone();
    if segments.is_empty() {
        return Ok((out, plan, None));
    }
    if let DataLayout::Inline(all) = info.data {
        let all = Bytes::from(all);
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
        if direct {
            return Ok((out, plan, Some(body)));
        }
        glommio::spawn_local(async move {
            let _ = tx.send_async(Ok(body)).await;
        })
        .detach();
        return Ok((out, plan, None));
    }
    let partition = cc.client.topology().keyspace.partition_of(&bucket, &key);
    // Every chunk to send, in order: literals as they are, data by range.
    enum Piece {
        Literal(Bytes),
        Range(u64, u64),
    }
    let mut pieces = Vec::new();
    for seg in segments {
        match seg {
            Segment::Literal(b) => pieces.push(Piece::Literal(b)),
            Segment::Data { start, end } => {
                pieces.extend(chunks(&info, start, end).into_iter().map(|(a, b)| Piece::Range(a, b)))
            }
        }
    }
    let first = pieces.iter().position(|p| matches!(p, Piece::Range(..)));
    let mut prefetched = None;
    if let Some(i) = first {
        let Piece::Range(a, b) = pieces[i] else { unreachable!() };
        prefetched = Some((i, cc.client.read_range(partition, &info, a, b).await.map_err(io_error)?));
    }
    let info = Rc::new(info);
    glommio::spawn_local(async move {
        use futures::StreamExt;
        let reads = futures::stream::iter(pieces.into_iter().enumerate())
            .map(|(i, p)| {
                let (cc, info) = (cc.clone(), info.clone());
                let pre = match &prefetched {
                    Some((at, _)) if *at == i => prefetched.take().map(|(_, d)| d),
                    _ => None,
                };
                async move {
                    match (p, pre) {
                        (Piece::Literal(b), _) => Ok(b),
                        (Piece::Range(..), Some(d)) => Ok(Bytes::from(d)),
                        (Piece::Range(a, b), None) => {
                            let d = cc.client.read_range(partition, &info, a, b).await?;
                            if d.len() as u64 == b - a {
                                Ok(Bytes::from(d))
                            } else {
                                Err(ClusterIoError::Unreadable(format!("{} bytes read of {}", d.len(), b - a)))
                            }
                        }
                    }
                }
            })
            .buffered(READ_AHEAD);
        futures::pin_mut!(reads);
        while let Some(r) = reads.next().await {
            match r {
                Ok(b) => {
                    if tx.send_async(Ok(b)).await.is_err() {
                        return; // the client went away
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "cluster read failed mid-response: aborting the connection");
                    let err = crate::http::BodyError::Producer(Box::new(std::io::Error::other(e.to_string())));
                    let _ = tx.send_async(Err(err)).await;
                    return;
                }
            }
        }
    })
    .detach();
    Ok((out, plan, None))
}

pub async fn delete(cc: &ClusterCx, bucket: &str, key: &str) -> Result<(), S3Error> {
    cc.check_bucket(bucket).await?;
    cc.client.delete(bucket, key).await.map_err(io_error)?;
    Ok(())
}

/// Whether `bucket/key` exists (ACL requests on an object).
pub async fn head(cc: &ClusterCx, bucket: &str, key: &str) -> Result<(), S3Error> {
    current(cc, bucket, key).await.map(|_| ())
}

/// A listing page over every partition: objects and, with a delimiter, common
/// prefixes, in name order, at most `max`; and whether more follow.
pub async fn list(
    cc: &ClusterCx,
    bucket: &str,
    prefix: &str,
    delimiter: Option<&str>,
    after: Option<&str>,
    max: usize,
) -> Result<(Vec<ListItem>, bool), S3Error> {
    cc.check_bucket(bucket).await?;
    let mut items: Vec<ListItem> = Vec::new();
    let mut cursor = after.unwrap_or("").to_string();
    loop {
        let want = max + 1 - items.len();
        let (entries, more) = cc.client.list(bucket, prefix, &cursor, want).await.map_err(io_error)?;
        for e in entries {
            cursor = e.key.clone();
            let common = delimiter.and_then(|d| {
                let rest = &e.key[prefix.len()..];
                rest.find(d).map(|i| format!("{prefix}{}", &rest[..i + d.len()]))
            });
            match common {
                // A marker naming a common prefix (a continuation) skips its keys.
                Some(p) if Some(p.as_str()) == after => {}
                Some(p) if matches!(items.last(), Some(ListItem::Prefix(last)) if *last == p) => {}
                Some(p) => items.push(ListItem::Prefix(p)),
                None => items.push(ListItem::Object {
                    key: e.key,
                    info: Rc::new(ObjectInfo {
                        size: e.size,
                        etag: e.etag,
                        modified_ms: e.modified_ms,
                        headers: vec![],
                        data: DataLayout::Inline(vec![]),
                        parts: vec![],
                    }),
                }),
            }
            if items.len() > max {
                break;
            }
        }
        if items.len() > max || !more {
            break;
        }
    }
    let truncated = items.len() > max;
    items.truncate(max);
    Ok((items, truncated))
}
