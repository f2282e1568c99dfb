//! The cluster gateway's data path, below S3: write an object's pieces to its
//! partition's erasure set, order the commit through Kafka, and read it back
//! through any gateway. Runs on a core (glommio); the Kafka appender reaches the
//! control thread through a bounded channel.
//!
//! **Write:** the body is cut into stripes of `k × CHUNK_BYTES`, coded into `k + m`
//! shards; [`GROUP_STRIPES`] stripes of one slot make one piece (1 MiB), written to
//! that slot's node and drive. A group needs `k` durable pieces (a write quorum
//! that survives `m` nodes down); slots that failed are recorded in the extent
//! (`missing_slots`) so reads skip them and repair knows what to rebuild. Small
//! bodies ride inline in the commit record. Then the record is appended to the
//! partition's log and the write waits until `W = ⌊n/2⌋ + 1` nodes of the set have
//! applied it.
//!
//! **Read:** the record is asked of the set's live nodes until `R = n − W + 1` have
//! answered, and the highest log position wins: every read quorum meets every
//! write quorum, so a read sees every acknowledged write (read-after-write through
//! any gateway). Data pieces are read first; a missing or corrupt one is replaced by
//! parity and decoding.
//!
//! With fewer than `k` live slots the partition is unavailable and every request
//! fails at once ([`ClusterIoError::Unavailable`]), before any byte is written or
//! returned.
use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use futures::future::join_all;
use glommio::net::TcpStream;
use md5::{Digest, Md5};
use tessera_engine::applied::MetaId;
use tessera_engine::erasure::{new_codec, CodecKind};
use tessera_engine::format::ShardKey;
use tessera_engine::object::meta::{self, DataLayout, Extent, Geometry, MetaEntry, MetaRecord, ObjectInfo};
use tessera_engine::object::Keyspace;
use tessera_engine::placement::Placement;

use crate::kafka::Appender;
use crate::wire::{AsyncClient, Reply, Request, WireError, TO_END};

/// Bytes per data shard in a full stripe.
pub const CHUNK_BYTES: usize = 256 << 10;
/// Stripes per piece: a piece is 1 MiB per slot.
pub const GROUP_STRIPES: usize = 4;
/// Bodies up to this size ride inline in the commit record.
pub const INLINE_BYTES_MAX: usize = 128 << 10;
/// Connecting to a node gives up after this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a write waits for the set to apply its commit record.
const APPLY_WAIT_MS: u32 = 10_000;
/// Slots per set an extent can describe (`Extent::missing_slots` is a u64 bitmap).
pub const SLOTS_MAX: usize = 64;
/// Idle connections kept per node.
const POOL_PER_NODE_MAX: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum ClusterIoError {
    #[error("partition {partition} unavailable: {live} of {n} slots live, {need} needed")]
    Unavailable { partition: u32, live: usize, n: usize, need: usize },
    #[error("write quorum lost: {0}")]
    WriteQuorum(String),
    #[error("read quorum lost: {0}")]
    ReadQuorum(String),
    #[error("commit log: {0}")]
    Log(String),
    #[error("data lost or unreadable: {0}")]
    Unreadable(String),
    #[error("no placement yet: the cluster has fewer than k + m members")]
    NoPlacement,
    #[error("unsupported: {0}")]
    Unsupported(String),
}

/// What a gateway knows of the cluster, refreshed from etcd.
#[derive(Debug, Clone)]
pub struct Topology {
    pub keyspace: Keyspace,
    pub k: usize,
    pub m: usize,
    pub placement: Option<Placement>,
    pub addrs: HashMap<String, SocketAddr>,
    pub alive: BTreeSet<String>,
}

impl Topology {
    /// The set of `partition`: (slot, node address) for every slot, live or not.
    fn set(&self, partition: u32) -> Result<Vec<(usize, SocketAddr, u16, bool)>, ClusterIoError> {
        let p = self.placement.as_ref().ok_or(ClusterIoError::NoPlacement)?;
        Ok(p.sets[partition as usize]
            .iter()
            .enumerate()
            .filter_map(|(slot, s)| {
                let addr = *self.addrs.get(&s.node)?;
                Some((slot, addr, s.drive as u16, self.alive.contains(&s.node)))
            })
            .collect())
    }
}

/// A live slot of a set: (slot, node address, drive on the node).
type LiveSlot = (usize, SocketAddr, u16);

/// Connections to nodes, kept per node address.
#[derive(Default)]
struct Pool {
    idle: HashMap<SocketAddr, Vec<AsyncClient<TcpStream>>>,
}

/// A core's handle on the cluster.
pub struct ClusterClient {
    topology: RefCell<Rc<Topology>>,
    secret: Vec<u8>,
    appender: Appender,
    pool: RefCell<Pool>,
}

/// What a read found.
#[derive(Debug)]
pub struct Found {
    pub position: u64,
    pub info: ObjectInfo,
    pub body: Vec<u8>,
}

fn quorums(n: usize) -> (usize, usize) {
    let w = n / 2 + 1;
    (w, n - w + 1)
}

impl ClusterClient {
    pub fn new(topology: Topology, secret: Vec<u8>, appender: Appender) -> ClusterClient {
        ClusterClient { topology: RefCell::new(Rc::new(topology)), secret, appender, pool: Default::default() }
    }

    pub fn set_topology(&self, t: Topology) {
        *self.topology.borrow_mut() = Rc::new(t);
    }

    pub fn topology(&self) -> Rc<Topology> {
        self.topology.borrow().clone()
    }

    /// One call to a node, on a pooled connection (a failed one is dropped).
    async fn call(&self, addr: SocketAddr, req: &Request) -> Result<Reply, WireError> {
        let pooled = self.pool.borrow_mut().idle.get_mut(&addr).and_then(Vec::pop);
        let mut client = match pooled {
            Some(c) => c,
            None => {
                let stream = futures_lite::future::or(
                    async { TcpStream::connect(addr).await.map_err(|e| WireError::Io(e.into())) },
                    async {
                        glommio::timer::sleep(CONNECT_TIMEOUT).await;
                        Err(WireError::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")))
                    },
                )
                .await?;
                stream.set_nodelay(true).map_err(|e| WireError::Io(e.into()))?;
                AsyncClient::handshake(stream, &self.secret).await?
            }
        };
        let r = client.call(req).await;
        if r.is_ok() {
            let mut pool = self.pool.borrow_mut();
            let idle = pool.idle.entry(addr).or_default();
            if idle.len() < POOL_PER_NODE_MAX {
                idle.push(client);
            }
        }
        r
    }

    fn live_set(&self, partition: u32) -> Result<(Rc<Topology>, Vec<LiveSlot>, usize), ClusterIoError> {
        let t = self.topology();
        let n = t.k + t.m;
        if n > SLOTS_MAX {
            return Err(ClusterIoError::Unsupported(format!(
                "code {}+{}: extents record at most {SLOTS_MAX} slots",
                t.k, t.m
            )));
        }
        let set = t.set(partition)?;
        let live: Vec<_> = set.iter().filter(|s| s.3).map(|s| (s.0, s.1, s.2)).collect();
        if live.len() < t.k {
            return Err(ClusterIoError::Unavailable { partition, live: live.len(), n, need: t.k });
        }
        Ok((t, live, n))
    }

    /// Stores `body` under `bucket/key`; resolves once any gateway's read sees it.
    /// Returns the commit's log position and the ETag.
    pub async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: &[u8],
        headers: Vec<(String, String)>,
    ) -> Result<(u64, String), ClusterIoError> {
        let t = self.topology();
        let partition = t.keyspace.partition_of(bucket, key);
        let (t, live, n) = self.live_set(partition)?;
        let etag = format!("\"{}\"", hex::encode(Md5::digest(body)));
        let data = if body.len() <= INLINE_BYTES_MAX {
            DataLayout::Inline(body.to_vec())
        } else {
            DataLayout::Extents(vec![self.write_extent(&t, partition, &live, body).await?])
        };
        let info = ObjectInfo {
            size: body.len() as u64,
            etag: etag.clone(),
            modified_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
            headers,
            data,
            parts: vec![],
        };
        let rec = MetaRecord {
            version: 0,
            entry: MetaEntry::Object { bucket: bucket.into(), key: key.into(), object: Some(info) },
        };
        let position = self.commit(partition, key, &rec, &live, n).await?;
        Ok((position, etag))
    }

    /// Appends the record and waits for a write quorum of the set to apply it.
    async fn commit(
        &self,
        partition: u32,
        key: &str,
        rec: &MetaRecord,
        live: &[LiveSlot],
        n: usize,
    ) -> Result<u64, ClusterIoError> {
        let position = self
            .appender
            .append(partition, key.as_bytes().to_vec(), meta::encode(rec))
            .await
            .map_err(|e| ClusterIoError::Log(e.to_string()))?;
        let (w, _) = quorums(n);
        let wait = Request::MetaWait { partition, position, timeout_ms: APPLY_WAIT_MS };
        let acks = join_all(live.iter().map(|(_, addr, _)| self.call(*addr, &wait))).await;
        let applied = acks.iter().filter(|r| matches!(r, Ok(Reply::Applied(a)) if *a >= position)).count();
        if applied < w {
            return Err(ClusterIoError::WriteQuorum(format!(
                "position {position} of partition {partition} applied by {applied} nodes, {w} needed"
            )));
        }
        Ok(position)
    }

    async fn write_extent(
        &self,
        t: &Topology,
        partition: u32,
        live: &[LiveSlot],
        body: &[u8],
    ) -> Result<Extent, ClusterIoError> {
        let (k, m) = (t.k, t.m);
        let n = k + m;
        let mut codec =
            new_codec(CodecKind::ReedSolomonSimd, k, m).map_err(|e| ClusterIoError::Unreadable(e.to_string()))?;
        let data_id: u128 = rand::random();
        let stripe_bytes = k * CHUNK_BYTES;
        let stripes = body.len().div_ceil(stripe_bytes);
        let mut missing: u64 = 0;
        for s in 0..n {
            if !live.iter().any(|l| l.0 == s) {
                missing |= 1 << s;
            }
        }
        for group in 0..stripes.div_ceil(GROUP_STRIPES) {
            let first = group * GROUP_STRIPES;
            let last = (first + GROUP_STRIPES).min(stripes);
            let mut pieces: Vec<Vec<u8>> = vec![Vec::with_capacity((last - first) * CHUNK_BYTES); n];
            for stripe in first..last {
                let start = stripe * stripe_bytes;
                let end = (start + stripe_bytes).min(body.len());
                // Shard length: the stripe's bytes over k, even (the codec's alignment).
                let shard = (end - start).div_ceil(k).next_multiple_of(2);
                let mut shards: Vec<Vec<u8>> = (0..n).map(|_| vec![0u8; shard]).collect();
                for (i, sh) in shards.iter_mut().take(k).enumerate() {
                    let a = (start + i * shard).min(end);
                    let b = (a + shard).min(end);
                    sh[..b - a].copy_from_slice(&body[a..b]);
                }
                let (data, parity) = shards.split_at_mut(k);
                let data_refs: Vec<&[u8]> = data.iter().map(|v| v.as_slice()).collect();
                let mut parity_refs: Vec<&mut [u8]> = parity.iter_mut().map(|v| v.as_mut_slice()).collect();
                codec.encode(&data_refs, &mut parity_refs).map_err(|e| ClusterIoError::Unreadable(e.to_string()))?;
                for (slot, sh) in shards.into_iter().enumerate() {
                    pieces[slot].extend_from_slice(&sh);
                }
            }
            let requests: Vec<_> = live
                .iter()
                .map(|(slot, addr, drive)| {
                    let req = Request::Put {
                        drive: *drive,
                        key: ShardKey { partition, object: data_id, piece: (group as u32) << 8 | *slot as u32 },
                        data: std::mem::take(&mut pieces[*slot]),
                    };
                    (*slot, *addr, req)
                })
                .collect();
            let writes = requests.iter().map(|(slot, addr, req)| async move { (*slot, self.call(*addr, req).await) });
            let results = join_all(writes).await;
            let mut ok = 0;
            for (slot, r) in results {
                match r {
                    Ok(Reply::Ok) => ok += 1,
                    other => {
                        tracing::warn!(partition, slot, result = ?other.map(|_| ()), "piece write failed");
                        missing |= 1 << slot;
                    }
                }
            }
            if ok < k {
                return Err(ClusterIoError::WriteQuorum(format!(
                    "group {group} of partition {partition}: {ok} pieces durable, {k} needed"
                )));
            }
        }
        Ok(Extent {
            data_id,
            size: body.len() as u64,
            geometry: Geometry {
                k: k as u8,
                m: m as u8,
                codec: 0,
                chunk_bytes: CHUNK_BYTES as u32,
                group_stripes: GROUP_STRIPES as u32,
                first_drive: 0,
                drives: n as u16,
            },
            missing_slots: missing,
        })
    }

    /// The newest applied record of `bucket/key` from a read quorum of the set.
    async fn newest(&self, bucket: &str, key: &str) -> Result<Option<(u64, MetaRecord)>, ClusterIoError> {
        let t = self.topology();
        let partition = t.keyspace.partition_of(bucket, key);
        let (_, live, n) = self.live_set(partition)?;
        let (_, r) = quorums(n);
        let req = Request::MetaGet { partition, id: MetaId::Object { bucket: bucket.into(), key: key.into() } };
        let answers = join_all(live.iter().map(|(_, addr, _)| self.call(*addr, &req))).await;
        let mut answered = 0;
        let mut best: Option<MetaRecord> = None;
        for a in answers {
            if let Ok(Reply::Meta { record, .. }) = a {
                answered += 1;
                if let Some(bytes) = record {
                    let rec = meta::decode(&bytes).map_err(|e| ClusterIoError::Unreadable(e.to_string()))?;
                    if best.as_ref().is_none_or(|b| rec.version > b.version) {
                        best = Some(rec);
                    }
                }
            }
        }
        if answered < r {
            return Err(ClusterIoError::ReadQuorum(format!("{answered} of {n} nodes answered, {r} needed")));
        }
        Ok(best.map(|b| (b.version, b)))
    }

    /// Reads `bucket/key` whole; `None` when it does not exist (or was deleted).
    pub async fn get(&self, bucket: &str, key: &str) -> Result<Option<Found>, ClusterIoError> {
        let Some((position, rec)) = self.newest(bucket, key).await? else { return Ok(None) };
        let MetaEntry::Object { object: Some(info), .. } = rec.entry else { return Ok(None) };
        let body = match &info.data {
            DataLayout::Inline(d) => d.clone(),
            DataLayout::Extents(extents) => {
                let t = self.topology();
                let partition = t.keyspace.partition_of(bucket, key);
                let mut out = Vec::with_capacity(info.size as usize);
                for e in extents {
                    self.read_extent(&t, partition, e, &mut out).await?;
                }
                out
            }
        };
        if body.len() as u64 != info.size {
            return Err(ClusterIoError::Unreadable(format!(
                "{} bytes read for an object of {}",
                body.len(),
                info.size
            )));
        }
        Ok(Some(Found { position, info, body }))
    }

    async fn read_extent(
        &self,
        t: &Topology,
        partition: u32,
        e: &Extent,
        out: &mut Vec<u8>,
    ) -> Result<(), ClusterIoError> {
        let g = e.geometry;
        let (k, m) = (g.k as usize, g.m as usize);
        let n = k + m;
        let set = t.set(partition)?;
        let chunk = g.chunk_bytes as usize;
        let stripe_bytes = k * chunk;
        let size = e.size as usize;
        let stripes = size.div_ceil(stripe_bytes);
        let mut codec =
            new_codec(CodecKind::ReedSolomonSimd, k, m).map_err(|e| ClusterIoError::Unreadable(e.to_string()))?;
        for group in 0..stripes.div_ceil(g.group_stripes as usize) {
            let first = group * g.group_stripes as usize;
            let last = (first + g.group_stripes as usize).min(stripes);
            // Data slots first; parity only for what is missing.
            let usable: Vec<_> =
                set.iter().filter(|s| s.3 && e.missing_slots & (1 << s.0) == 0).map(|s| (s.0, s.1, s.2)).collect();
            let mut pieces: Vec<Option<Vec<u8>>> = vec![None; n];
            let mut wanted: Vec<_> = usable.iter().filter(|s| s.0 < k).copied().collect();
            let mut spare: Vec<_> = usable.iter().filter(|s| s.0 >= k).copied().collect();
            loop {
                let reads = wanted.iter().map(|(slot, addr, drive)| {
                    let req = Request::Get {
                        drive: *drive,
                        key: ShardKey { partition, object: e.data_id, piece: (group as u32) << 8 | *slot as u32 },
                        offset: 0,
                        len: TO_END,
                    };
                    async move { (*slot, self.call(*addr, &req).await) }
                });
                for (slot, r) in join_all(reads).await {
                    // Anything else (missing, corrupt, node gone) leaves the slot to parity.
                    if let Ok(Reply::Data(d)) = r {
                        pieces[slot] = Some(d);
                    }
                }
                let have = pieces.iter().filter(|p| p.is_some()).count();
                if have >= k || spare.is_empty() {
                    break;
                }
                let more = (k - have).min(spare.len());
                wanted = spare.drain(..more).collect();
            }
            let have = pieces.iter().filter(|p| p.is_some()).count();
            if have < k {
                return Err(ClusterIoError::Unreadable(format!(
                    "group {group} of partition {partition}: {have} pieces readable, {k} needed"
                )));
            }
            // Walk the group's stripes; each slot's piece is the concatenation of its shards.
            let mut offset_in_piece = 0;
            for stripe in first..last {
                let start = stripe * stripe_bytes;
                let end = (start + stripe_bytes).min(size);
                let shard = (end - start).div_ceil(k).next_multiple_of(2);
                let present: Vec<bool> =
                    pieces.iter().map(|p| p.as_ref().is_some_and(|p| p.len() >= offset_in_piece + shard)).collect();
                let mut shards: Vec<Vec<u8>> = (0..n)
                    .map(|i| match (&pieces[i], present[i]) {
                        (Some(p), true) => p[offset_in_piece..offset_in_piece + shard].to_vec(),
                        _ => vec![0u8; shard],
                    })
                    .collect();
                if present.iter().take(k).any(|p| !p) {
                    let mut refs: Vec<&mut [u8]> = shards.iter_mut().map(|s| s.as_mut_slice()).collect();
                    codec
                        .reconstruct_data(&mut refs, &present)
                        .map_err(|e| ClusterIoError::Unreadable(e.to_string()))?;
                }
                let mut remaining = end - start;
                for sh in shards.iter().take(k) {
                    let take = remaining.min(shard);
                    out.extend_from_slice(&sh[..take]);
                    remaining -= take;
                }
                offset_in_piece += shard;
            }
        }
        Ok(())
    }

    /// Deletes `bucket/key` (a deletion record, ordered like any write).
    pub async fn delete(&self, bucket: &str, key: &str) -> Result<u64, ClusterIoError> {
        let t = self.topology();
        let partition = t.keyspace.partition_of(bucket, key);
        let (_, live, n) = self.live_set(partition)?;
        let rec = MetaRecord {
            version: 0,
            entry: MetaEntry::Object { bucket: bucket.into(), key: key.into(), object: None },
        };
        self.commit(partition, key, &rec, &live, n).await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn quorums_intersect_and_survive_m_down() {
        for (k, m) in [(2, 1), (4, 2), (6, 3), (8, 4), (1, 1)] {
            let n = k + m;
            let (w, r) = super::quorums(n);
            assert!(w + r > n, "{k}+{m}: every read quorum meets every write quorum");
            if k > m {
                assert!(w <= k && r <= k, "{k}+{m}: with m slots down, k remain for W = {w} and R = {r}");
            }
        }
    }
}
