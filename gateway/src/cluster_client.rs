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
//! parity and decoding. Too few answers or pieces from the nodes the view says are
//! live, and the set's other slots are asked before the read fails: liveness in
//! etcd lags a crash by a lease and a restart by a refresh.
//!
//! With fewer than `k` live slots the partition is unavailable and every request
//! fails at once ([`ClusterIoError::Unavailable`]), before any byte is written or
//! returned.
//!
//! **Placement moves** (a node added): while a move is on ([`Move`]), new pieces go
//! to the target set and, for the slots that move, also to their current holder;
//! a commit waits for a write quorum of *both* sets; metadata and pieces are read
//! from the current set until the move has switched, then from the target set.
//! Each phase lasts at least [`MOVE_FENCE`] (the coordinator waits that long), and
//! a gateway answers only while its view of the placement is younger than
//! [`VIEW_AGE_MAX`] and unchanged since the request chose its quorums, so no
//! request decides on a placement two phases old: every read quorum still meets
//! every acknowledged write's quorum throughout the move.
use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use futures::StreamExt;
use glommio::net::TcpStream;
use tessera_engine::applied::MetaId;
use tessera_engine::erasure::{new_codec, CodecKind};
use tessera_engine::format::ShardKey;
use tessera_engine::object::meta::{self, DataLayout, Extent, Geometry, MetaEntry, MetaRecord, ObjectInfo};
use tessera_engine::object::Keyspace;
use tessera_engine::placement::Placement;

use crate::kafka::Appender;
use crate::wire::{AsyncClient, Listed, Reply, Request, WireError};

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
/// A gateway whose last topology read from etcd started longer ago than this
/// refuses to decide on quorums (503): a placement phase may have moved on.
pub const VIEW_AGE_MAX: Duration = Duration::from_secs(5);
/// The least time a placement move stays in a phase, counted from when the
/// coordinator first saw the phase: longer than [`VIEW_AGE_MAX`], so every request
/// decided on the phase before has finished.
pub const MOVE_FENCE: Duration = Duration::from_secs(6);
/// Times a request re-decides its quorum when the placement changed under it.
const LAYOUT_RETRIES: usize = 3;

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
    #[error("cluster config: {0}")]
    BadConfig(String),
    #[error("cluster view out of date: {0}")]
    StaleView(String),
}

/// The phase of a placement move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MovePhase {
    /// The new holders catch up (the log, then the pieces of the slots they take);
    /// reads use the current placement.
    Syncing,
    /// Every new holder has caught up; reads use the target placement.
    Switched,
}

/// A placement move in progress: the current placement stays whole until it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub target: Placement,
    pub phase: MovePhase,
}

/// What a gateway knows of the cluster, refreshed from etcd.
#[derive(Debug, Clone)]
pub struct Topology {
    pub keyspace: Keyspace,
    pub k: usize,
    pub m: usize,
    /// The current placement (every slot holds all of its pieces).
    pub placement: Option<Placement>,
    /// The move to another placement, if one is on.
    pub moving: Option<Move>,
    pub addrs: HashMap<String, SocketAddr>,
    pub alive: BTreeSet<String>,
}

/// A set's slots: (slot, node address, drive, alive) for every slot whose node
/// has an address.
type SetSlots = Vec<(usize, SocketAddr, u16, bool)>;

impl Topology {
    /// What identifies the placement a request decided on.
    pub fn layout(&self) -> (Option<u64>, Option<(u64, MovePhase)>) {
        (self.placement.as_ref().map(|p| p.version), self.moving.as_ref().map(|m| (m.target.version, m.phase)))
    }

    /// Where metadata and pieces are read: the current placement, or the target
    /// once the move has switched.
    pub fn read_placement(&self) -> Option<&Placement> {
        match &self.moving {
            Some(m) if m.phase == MovePhase::Switched => Some(&m.target),
            _ => self.placement.as_ref(),
        }
    }

    /// Where new pieces go: the target while a move is on.
    pub fn write_placement(&self) -> Option<&Placement> {
        self.moving.as_ref().map(|m| &m.target).or(self.placement.as_ref())
    }

    /// The placement other than the read one whose write quorum a commit also needs
    /// while a move is on.
    fn other_placement(&self) -> Option<&Placement> {
        match &self.moving {
            None => None,
            Some(m) if m.phase == MovePhase::Switched => self.placement.as_ref(),
            Some(m) => Some(&m.target),
        }
    }

    fn slots_in(&self, p: Option<&Placement>, partition: u32) -> Result<SetSlots, ClusterIoError> {
        let p = p.ok_or(ClusterIoError::NoPlacement)?;
        let set = p.sets.get(partition as usize).ok_or_else(|| {
            ClusterIoError::BadConfig(format!("partition {partition} is not in placement {}", p.version))
        })?;
        Ok(set
            .iter()
            .enumerate()
            .filter_map(|(slot, s)| {
                let addr = *self.addrs.get(&s.node)?;
                Some((slot, addr, s.drive as u16, self.alive.contains(&s.node)))
            })
            .collect())
    }

    /// The read set of `partition`: (slot, node address, drive, alive) per slot.
    fn set(&self, partition: u32) -> Result<SetSlots, ClusterIoError> {
        self.slots_in(self.read_placement(), partition)
    }

    /// The slots of `partition` a move takes from one node to another, with their
    /// current holder: new pieces go to both, so the current holder stays whole
    /// for readers until the move has switched.
    fn moving_from(&self, partition: u32) -> Result<SetSlots, ClusterIoError> {
        let Some(m) = &self.moving else { return Ok(vec![]) };
        let (Some(cur), Some(target)) = (self.placement.as_ref(), m.target.sets.get(partition as usize)) else {
            return Ok(vec![]);
        };
        let current = self.slots_in(Some(cur), partition)?;
        Ok(current
            .into_iter()
            .filter(|(slot, _, _, _)| {
                target.get(*slot).map(|t| &t.node) != cur.sets[partition as usize].get(*slot).map(|c| &c.node)
            })
            .collect())
    }
}

/// A live slot of a set: (slot, node address, drive on the node).
type LiveSlot = (usize, SocketAddr, u16);

/// A slot of a set to ask, whatever its liveness.
fn live_slot(&(slot, addr, drive, _): &(usize, SocketAddr, u16, bool)) -> LiveSlot {
    (slot, addr, drive)
}

/// Connections to nodes, kept per node address.
#[derive(Default)]
struct Pool {
    idle: HashMap<SocketAddr, Vec<AsyncClient<TcpStream>>>,
}

/// A core's handle on the cluster.
pub struct ClusterClient {
    topology: RefCell<Rc<Topology>>,
    secret: Vec<u8>,
    /// The commit log; `None` for a reader only (a node rebuilding pieces).
    appender: Option<Appender>,
    pool: RefCell<Pool>,
    /// Nodes that just failed a call, with when: skipped like a node whose lease
    /// is gone until [`SUSPECT_FOR`] has passed, so a crashed node costs one failed
    /// call rather than one per request until etcd notices (its lease's TTL).
    suspects: RefCell<HashMap<SocketAddr, Instant>>,
    /// When the topology was last read from etcd; `None`: the view is not fenced
    /// (a node's repair reader, tests below S3).
    clock: Option<Arc<ViewClock>>,
}

/// When a gateway's control thread last started a topology read from etcd that
/// succeeded (and handed any change to the cores): the age of every core's view.
#[derive(Debug)]
pub struct ViewClock {
    base: Instant,
    started_ms: AtomicU64,
}

impl ViewClock {
    pub fn new() -> Arc<ViewClock> {
        Arc::new(ViewClock { base: Instant::now(), started_ms: AtomicU64::new(0) })
    }

    /// A read that started at `at` succeeded and its topology is with the cores.
    pub fn refreshed(&self, at: Instant) {
        let ms = at.saturating_duration_since(self.base).as_millis() as u64;
        self.started_ms.fetch_max(ms, Ordering::AcqRel);
    }

    pub fn age(&self) -> Duration {
        self.base.elapsed().saturating_sub(Duration::from_millis(self.started_ms.load(Ordering::Acquire)))
    }
}

/// A node that failed a call is left out of new requests for this long.
const SUSPECT_FOR: Duration = Duration::from_secs(2);

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

/// The piece holding `slot`'s shards of `group`.
pub fn piece_key(partition: u32, data_id: u128, group: usize, slot: usize) -> ShardKey {
    ShardKey { partition, object: data_id, piece: (group as u32) << 8 | slot as u32 }
}

/// Bytes of data in one full group of `k` data slots.
pub fn group_bytes(g: &Geometry) -> usize {
    g.k as usize * g.chunk_bytes as usize * g.group_stripes as usize
}

/// The shard length of a stripe holding `len` bytes of data.
fn shard_len(len: usize, k: usize) -> usize {
    len.div_ceil(k).next_multiple_of(2)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl ClusterClient {
    pub fn new(topology: Topology, secret: Vec<u8>, appender: Appender) -> ClusterClient {
        ClusterClient::with_appender(topology, secret, Some(appender))
    }

    /// A client that reads and writes pieces and reads metadata but cannot commit.
    pub fn reader(topology: Topology, secret: Vec<u8>) -> ClusterClient {
        ClusterClient::with_appender(topology, secret, None)
    }

    fn with_appender(topology: Topology, secret: Vec<u8>, appender: Option<Appender>) -> ClusterClient {
        ClusterClient {
            topology: RefCell::new(Rc::new(topology)),
            secret,
            appender,
            pool: Default::default(),
            suspects: Default::default(),
            clock: None,
        }
    }

    /// Fences this client's decisions on the age of its view (a gateway's).
    pub fn fenced(mut self, clock: Arc<ViewClock>) -> ClusterClient {
        self.clock = Some(clock);
        self
    }

    /// Whether a decision taken on `t` may stand: `Ok(false)` when the placement
    /// changed since (decide again on the new one), an error when the view is too
    /// old to trust (etcd unreachable).
    fn decided_on(&self, t: &Topology) -> Result<bool, ClusterIoError> {
        if let Some(c) = &self.clock {
            let age = c.age();
            if age > VIEW_AGE_MAX {
                return Err(ClusterIoError::StaleView(format!(
                    "the topology was last read from etcd {:.1} s ago (limit {} s)",
                    age.as_secs_f64(),
                    VIEW_AGE_MAX.as_secs()
                )));
            }
        }
        Ok(self.topology().layout() == t.layout())
    }

    pub fn set_topology(&self, t: Topology) {
        *self.topology.borrow_mut() = Rc::new(t);
    }

    pub fn topology(&self) -> Rc<Topology> {
        self.topology.borrow().clone()
    }

    fn suspected(&self, addr: &SocketAddr) -> bool {
        let mut s = self.suspects.borrow_mut();
        match s.get(addr) {
            Some(at) if at.elapsed() < SUSPECT_FOR => true,
            Some(_) => {
                s.remove(addr);
                false
            }
            None => false,
        }
    }

    /// One call to a node, on a pooled connection (a failed one is dropped and the
    /// node suspected for a while).
    pub async fn call(&self, addr: SocketAddr, req: &Request) -> Result<Reply, WireError> {
        let r = self.call_inner(addr, req).await;
        if r.is_err() {
            self.suspects.borrow_mut().insert(addr, Instant::now());
        }
        r
    }

    async fn call_inner(&self, addr: SocketAddr, req: &Request) -> Result<Reply, WireError> {
        // A pooled connection may have died with its node's previous run: a failure
        // on one is tried again once on a fresh connection.
        let pooled = self.pool.borrow_mut().idle.get_mut(&addr).and_then(Vec::pop);
        if let Some(client) = pooled {
            match self.call_on(addr, client, req).await {
                Err(WireError::Io(e)) => tracing::debug!(%addr, error = %e, "pooled connection failed; reconnecting"),
                r => return r,
            }
        }
        let client = self.connect(addr).await?;
        self.call_on(addr, client, req).await
    }

    async fn call_on(
        &self,
        addr: SocketAddr,
        mut client: AsyncClient<TcpStream>,
        req: &Request,
    ) -> Result<Reply, WireError> {
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

    async fn connect(&self, addr: SocketAddr) -> Result<AsyncClient<TcpStream>, WireError> {
        let stream = futures_lite::future::or(
            async { TcpStream::connect(addr).await.map_err(|e| WireError::Io(e.into())) },
            async {
                glommio::timer::sleep(CONNECT_TIMEOUT).await;
                Err(WireError::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")))
            },
        )
        .await?;
        stream.set_nodelay(true).map_err(|e| WireError::Io(e.into()))?;
        AsyncClient::handshake(stream, &self.secret).await
    }

    /// The slots of `partition`'s read set that are alive and not suspected; fails
    /// fast with fewer than `k`.
    fn live_set(&self, partition: u32) -> Result<(Rc<Topology>, Vec<LiveSlot>, usize), ClusterIoError> {
        let t = self.topology();
        let set = t.set(partition)?;
        let (live, n) = self.live_of(&t, partition, &set)?;
        Ok((t, live, n))
    }

    /// The live, unsuspected slots of `set`; fails fast with fewer than `k`.
    fn live_of(&self, t: &Topology, partition: u32, set: &SetSlots) -> Result<(Vec<LiveSlot>, usize), ClusterIoError> {
        let n = t.k + t.m;
        if n > SLOTS_MAX {
            // `cluster init` refuses such a code; this guards a config written otherwise.
            return Err(ClusterIoError::BadConfig(format!(
                "code {}+{}: extents record at most {SLOTS_MAX} slots",
                t.k, t.m
            )));
        }
        let live = self.usable(set, t.k);
        if live.len() < t.k {
            return Err(ClusterIoError::Unavailable { partition, live: live.len(), n, need: t.k });
        }
        Ok((live, n))
    }

    /// The slots of `set` to ask: alive and not suspected; or, when that leaves
    /// fewer than `need`, alive ones, suspected too (a node that failed a call a
    /// moment ago may be back, restarted: asking costs one call, failing fast
    /// would turn a read that can succeed into a 503).
    fn usable(&self, set: &SetSlots, need: usize) -> Vec<LiveSlot> {
        let trusted: Vec<_> = set.iter().filter(|s| s.3 && !self.suspected(&s.1)).map(live_slot).collect();
        if trusted.len() >= need {
            return trusted;
        }
        set.iter().filter(|s| s.3).map(live_slot).collect()
    }

    /// Checks that `bucket/key`'s partition can take a write or serve a read now.
    pub fn check_available(&self, bucket: &str, key: &str) -> Result<u32, ClusterIoError> {
        let partition = self.topology().keyspace.partition_of(bucket, key);
        self.live_set(partition)?;
        Ok(partition)
    }

    /// Starts writing an extent of `bucket/key`'s partition.
    pub fn writer(&self, bucket: &str, key: &str) -> Result<ExtentWriter<'_>, ClusterIoError> {
        let t = self.topology();
        let partition = t.keyspace.partition_of(bucket, key);
        // Readable now (the read set), and written where the placement is going.
        self.live_of(&t, partition, &t.set(partition)?)?;
        let (live, n) = self.live_of(&t, partition, &t.slots_in(t.write_placement(), partition)?)?;
        let also: Vec<LiveSlot> = t
            .moving_from(partition)?
            .into_iter()
            .filter(|s| s.3 && !self.suspected(&s.1))
            .map(|s| live_slot(&s))
            .collect();
        let (k, m) = (t.k, t.m);
        let codec =
            new_codec(CodecKind::ReedSolomonSimd, k, m).map_err(|e| ClusterIoError::Unreadable(e.to_string()))?;
        let mut missing: u64 = 0;
        for s in 0..n {
            if !live.iter().any(|l| l.0 == s) {
                missing |= 1 << s;
            }
        }
        let geometry = Geometry {
            k: k as u8,
            m: m as u8,
            codec: 0,
            chunk_bytes: CHUNK_BYTES as u32,
            group_stripes: GROUP_STRIPES as u32,
            first_drive: 0,
            drives: n as u16,
        };
        Ok(ExtentWriter {
            client: self,
            partition,
            live,
            also,
            codec,
            data_id: rand::random(),
            geometry,
            missing,
            group: 0,
            buf: Vec::with_capacity(group_bytes(&geometry)),
            size: 0,
        })
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
        let etag = {
            let mut md5 = crate::s3::checksum::Md5::new();
            md5.update(body);
            md5.finish().etag()
        };
        let data = if body.len() <= INLINE_BYTES_MAX {
            self.check_available(bucket, key)?;
            DataLayout::Inline(body.to_vec())
        } else {
            let mut w = self.writer(bucket, key)?;
            w.push(body).await?;
            DataLayout::Extents(vec![w.finish().await?])
        };
        let info = ObjectInfo {
            size: body.len() as u64,
            etag: etag.clone(),
            modified_ms: now_ms(),
            headers,
            data,
            parts: vec![],
        };
        let position = self.commit_object(bucket, key, Some(info)).await?;
        Ok((position, etag))
    }

    /// Commits `bucket/key` as `object` (`None`: deleted) and waits until a write
    /// quorum of its set applied it. Returns the log position.
    pub async fn commit_object(
        &self,
        bucket: &str,
        key: &str,
        object: Option<ObjectInfo>,
    ) -> Result<u64, ClusterIoError> {
        self.commit_entry(bucket, key, MetaEntry::Object { bucket: bucket.into(), key: key.into(), object }).await
    }

    /// Commits any record about `bucket/key` (object, upload, part) to its
    /// partition and waits for a write quorum to apply it.
    pub async fn commit_entry(&self, bucket: &str, key: &str, entry: MetaEntry) -> Result<u64, ClusterIoError> {
        let partition = self.topology().keyspace.partition_of(bucket, key);
        self.live_set(partition)?;
        let rec = MetaRecord { version: 0, entry };
        self.commit(partition, key, &rec).await
    }

    /// Appends the record and waits for a write quorum of the set to apply it (of
    /// both sets while a placement move is on).
    async fn commit(&self, partition: u32, key: &str, rec: &MetaRecord) -> Result<u64, ClusterIoError> {
        let appender = self.appender.as_ref().ok_or_else(|| ClusterIoError::Log("this client cannot commit".into()))?;
        let position = appender
            .append(partition, key.as_bytes().to_vec(), meta::encode(rec))
            .await
            .map_err(|e| ClusterIoError::Log(e.to_string()))?;
        for _ in 0..LAYOUT_RETRIES {
            let t = self.topology();
            let mut sets = vec![t.set(partition)?];
            if t.other_placement().is_some() {
                sets.push(t.slots_in(t.other_placement(), partition)?);
            }
            let mut ask: Vec<SocketAddr> = Vec::new();
            for set in &sets {
                let (live, _) = self.live_of(&t, partition, set)?;
                ask.extend(live.iter().map(|l| l.1).filter(|a| !ask.contains(a)).collect::<Vec<_>>());
            }
            // Done as soon as every set has its quorum: a node far behind (one a move
            // just gave the partition to) is not waited for.
            let (w, _) = quorums(t.k + t.m);
            let met = |applied: &[SocketAddr]| {
                sets.iter().all(|set| set.iter().filter(|s| applied.contains(&s.1)).count() >= w)
            };
            let wait = Request::MetaWait { partition, position, timeout_ms: APPLY_WAIT_MS };
            let mut calls: futures::stream::FuturesUnordered<_> = ask
                .iter()
                .map(|addr| {
                    let wait = &wait;
                    async move { (*addr, self.call(*addr, wait).await) }
                })
                .collect();
            let mut applied: Vec<SocketAddr> = Vec::new();
            while !met(&applied) {
                let Some((addr, r)) = calls.next().await else { break };
                if matches!(r, Ok(Reply::Applied(a)) if a >= position) {
                    applied.push(addr);
                }
            }
            drop(calls);
            for set in &sets {
                let got = set.iter().filter(|s| applied.contains(&s.1)).count();
                if got < w {
                    return Err(ClusterIoError::WriteQuorum(format!(
                        "position {position} of partition {partition} applied by {got} nodes of its set, {w} needed"
                    )));
                }
            }
            if self.decided_on(&t)? {
                return Ok(position);
            }
        }
        Err(ClusterIoError::StaleView(format!("the placement of partition {partition} kept changing")))
    }

    /// The newest applied record of `bucket/key` from a read quorum of the set.
    async fn newest(&self, bucket: &str, key: &str) -> Result<Option<MetaRecord>, ClusterIoError> {
        self.newest_record(bucket, key, MetaId::Object { bucket: bucket.into(), key: key.into() }).await
    }

    /// The newest applied record of `id` (about `bucket/key`) from a read quorum.
    pub async fn newest_record(
        &self,
        bucket: &str,
        key: &str,
        id: MetaId,
    ) -> Result<Option<MetaRecord>, ClusterIoError> {
        let partition = self.topology().keyspace.partition_of(bucket, key);
        let req = Request::MetaGet { partition, id };
        self.on_read_set(partition, |live, n| {
            let req = &req;
            async move { self.newest_of(&live, n, req).await }
        })
        .await
    }

    /// Runs `read` on the live slots of `partition`'s read set; again on the new
    /// placement when it changed before the read finished.
    async fn on_read_set<T, F, Fut>(&self, partition: u32, read: F) -> Result<T, ClusterIoError>
    where
        F: Fn(Vec<LiveSlot>, usize) -> Fut,
        Fut: std::future::Future<Output = Result<T, ClusterIoError>>,
    {
        for _ in 0..LAYOUT_RETRIES {
            let (t, live, n) = self.live_set(partition)?;
            let asked = live.len();
            let got = match read(live, n).await {
                // Too few answered: ask the whole set, suspected or down in this view
                // too, before failing (see `read_span`).
                Err(e @ ClusterIoError::ReadQuorum(_)) => {
                    let set = t.set(partition)?;
                    if set.len() == asked {
                        return Err(e);
                    }
                    read(set.iter().map(live_slot).collect(), n).await?
                }
                r => r?,
            };
            if self.decided_on(&t)? {
                return Ok(got);
            }
        }
        Err(ClusterIoError::StaleView(format!("the placement of partition {partition} kept changing")))
    }

    /// The newest record `req` finds on a read quorum of `live`.
    async fn newest_of(
        &self,
        live: &[LiveSlot],
        n: usize,
        req: &Request,
    ) -> Result<Option<MetaRecord>, ClusterIoError> {
        let (_, r) = quorums(n);
        let answers = join_all(live.iter().map(|(_, addr, _)| self.call(*addr, req))).await;
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
        Ok(best)
    }

    /// The current version of `bucket/key` and its log position; `None` when it
    /// does not exist (or was deleted).
    pub async fn head(&self, bucket: &str, key: &str) -> Result<Option<(u64, ObjectInfo)>, ClusterIoError> {
        let Some(rec) = self.newest(bucket, key).await? else { return Ok(None) };
        match rec.entry {
            MetaEntry::Object { object: Some(info), .. } => Ok(Some((rec.version, info))),
            _ => Ok(None),
        }
    }

    /// Reads `bucket/key` whole; `None` when it does not exist (or was deleted).
    pub async fn get(&self, bucket: &str, key: &str) -> Result<Option<Found>, ClusterIoError> {
        let Some((position, info)) = self.head(bucket, key).await? else { return Ok(None) };
        let body = match &info.data {
            DataLayout::Inline(d) => d.clone(),
            DataLayout::Extents(_) => {
                let partition = self.topology().keyspace.partition_of(bucket, key);
                self.read_range(partition, &info, 0, info.size).await?
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

    /// Bytes `start..end` of an object stored in extents (they may span extents).
    pub async fn read_range(
        &self,
        partition: u32,
        info: &ObjectInfo,
        start: u64,
        end: u64,
    ) -> Result<Vec<u8>, ClusterIoError> {
        let DataLayout::Extents(extents) = &info.data else {
            return Err(ClusterIoError::Unreadable("not an object in extents".into()));
        };
        let mut out = Vec::with_capacity((end - start) as usize);
        let mut base = 0u64;
        for e in extents {
            let (a, b) = (start.max(base), end.min(base + e.size));
            if a < b {
                let mut pos = a - base;
                while pos < b - base {
                    let group_end = (pos / group_bytes(&e.geometry) as u64 + 1) * group_bytes(&e.geometry) as u64;
                    let upto = group_end.min(b - base);
                    self.read_span(partition, e, pos, upto, &mut out).await?;
                    pos = upto;
                }
            }
            base += e.size;
        }
        Ok(out)
    }

    /// Bytes `start..end` of extent `e`, within one group: only the stripes they
    /// touch, from the data slots when they answer, else decoded from parity.
    pub async fn read_span(
        &self,
        partition: u32,
        e: &Extent,
        start: u64,
        end: u64,
        out: &mut Vec<u8>,
    ) -> Result<(), ClusterIoError> {
        let g = e.geometry;
        let (k, m) = (g.k as usize, g.m as usize);
        let n = k + m;
        let t = self.topology();
        let set = t.set(partition)?;
        let chunk = g.chunk_bytes as usize;
        let stripe_bytes = (k * chunk) as u64;
        let size = e.size as usize;
        let gs = g.group_stripes as u64;
        let (s0, s1) = (start / stripe_bytes, (end - 1) / stripe_bytes);
        let group = (s0 / gs) as usize;
        debug_assert_eq!(group, (s1 / gs) as usize, "a span stays in one group");
        let first = group as u64 * gs;
        // Every stripe before the object's last is full (shards of `chunk`).
        let stripe_len = |s: u64| ((s + 1) * stripe_bytes).min(size as u64) - s * stripe_bytes;
        let offset = ((s0 - first) as usize) * chunk;
        let len: usize = (s0..=s1).map(|s| shard_len(stripe_len(s) as usize, k)).sum();
        // Data slots first, then parity, then slots the write missed (a repair may
        // have rebuilt them since); a missing or corrupt piece moves on to the next.
        let alive = self.usable(&set, k);
        let missed = |slot: usize| e.missing_slots & (1 << slot) != 0;
        let mut order: Vec<LiveSlot> = alive.iter().filter(|s| s.0 < k && !missed(s.0)).copied().collect();
        order.extend(alive.iter().filter(|s| s.0 >= k && !missed(s.0)).copied());
        order.extend(alive.iter().filter(|s| missed(s.0)).copied());
        if alive.len() < k {
            return Err(ClusterIoError::Unavailable { partition, live: alive.len(), n, need: k });
        }
        let mut pieces: Vec<Option<Vec<u8>>> = vec![None; n];
        // Why each slot asked gave no piece: the error says it (an operator's first
        // question when a group is unreadable is which node failed and how).
        let mut failed: Vec<String> = Vec::new();
        let mut next = 0;
        loop {
            let have = pieces.iter().filter(|p| p.is_some()).count();
            if have >= k {
                break;
            }
            if next >= order.len() {
                // Before failing, the set's other slots: suspected, or down in this
                // view. A view lags etcd by a refresh, and a node busy enough to miss
                // its lease's renewal may still serve; one more connection attempt
                // each is cheap beside a failed request.
                let rest: Vec<LiveSlot> =
                    set.iter().filter(|s| !order.iter().any(|o| o.0 == s.0)).map(live_slot).collect();
                if rest.is_empty() {
                    break; // every slot of the set asked
                }
                order.extend(rest);
                continue;
            }
            let take = (k - have).min(order.len() - next);
            let batch = &order[next..next + take];
            next += take;
            let reads = batch.iter().map(|(slot, addr, drive)| {
                let req = Request::Get {
                    drive: *drive,
                    key: piece_key(partition, e.data_id, group, *slot),
                    offset: offset as u64,
                    len: len as u64,
                };
                async move { (*slot, self.call(*addr, &req).await) }
            });
            for ((slot, r), (_, addr, _)) in join_all(reads).await.into_iter().zip(batch) {
                let why = match r {
                    Ok(Reply::Data(d)) if d.len() == len => {
                        pieces[slot] = Some(d);
                        continue;
                    }
                    Ok(Reply::Data(d)) => format!("{} bytes, {len} expected", d.len()),
                    Ok(Reply::Error { code, message }) => format!("{code:?}: {message}"),
                    // Cut short: a wrong reply may carry a body.
                    Ok(other) => {
                        format!("unexpected reply {}", format!("{other:?}").chars().take(80).collect::<String>())
                    }
                    Err(e) => e.to_string(),
                };
                let node = t.addrs.iter().find(|(_, a)| *a == addr).map_or("?", |(id, _)| id.as_str());
                tracing::debug!(partition, slot, node, %why, "piece unreadable");
                failed.push(format!("slot {slot} on {node}: {why}"));
            }
        }
        let have = pieces.iter().filter(|p| p.is_some()).count();
        if have < k {
            return Err(ClusterIoError::Unreadable(format!(
                "group {group} of partition {partition}: {have} pieces readable, {k} needed ({})",
                failed.join("; ")
            )));
        }
        // Missing data shards are decoded in place, into zeroed stand-ins for their
        // pieces; the bytes then go out straight from the data slots' pieces.
        let present: Vec<bool> = pieces.iter().map(Option::is_some).collect();
        let mut pieces: Vec<Vec<u8>> = pieces.into_iter().map(|p| p.unwrap_or_else(|| vec![0u8; len])).collect();
        let mut codec = None;
        let mut at = 0;
        for s in s0..=s1 {
            let sl = stripe_len(s) as usize;
            let shard = shard_len(sl, k);
            if present.iter().take(k).any(|p| !p) {
                let codec = match &mut codec {
                    Some(c) => c,
                    None => codec.insert(
                        new_codec(CodecKind::ReedSolomonSimd, k, m)
                            .map_err(|e| ClusterIoError::Unreadable(e.to_string()))?,
                    ),
                };
                let mut refs: Vec<&mut [u8]> = pieces.iter_mut().map(|p| &mut p[at..at + shard]).collect();
                codec.reconstruct_data(&mut refs, &present).map_err(|e| ClusterIoError::Unreadable(e.to_string()))?;
            }
            // The stripe's bytes, cut to the span: data shard i holds stripe bytes
            // i * shard .. (i + 1) * shard.
            let base = s * stripe_bytes;
            let (a, b) = ((start.max(base) - base) as usize, (end.min(base + sl as u64) - base) as usize);
            for (i, piece) in pieces.iter().take(k).enumerate() {
                let (lo, hi) = (a.max(i * shard), b.min((i + 1) * shard));
                if lo < hi {
                    out.extend_from_slice(&piece[at + lo - i * shard..at + hi - i * shard]);
                }
            }
            at += shard;
        }
        Ok(())
    }

    /// Copies `slot`'s piece of `group` from the node that held the slot before a
    /// move (one piece read instead of `k`). `None` when no move gives `node` this
    /// slot from another node, or that node cannot give it whole.
    pub async fn copy_piece(
        &self,
        partition: u32,
        e: &Extent,
        group: usize,
        slot: usize,
        node: &str,
    ) -> Option<Vec<u8>> {
        let t = self.topology();
        let (cur, m) = (t.placement.as_ref()?, t.moving.as_ref()?);
        let (from, to) =
            (cur.sets.get(partition as usize)?.get(slot)?, m.target.sets.get(partition as usize)?.get(slot)?);
        if to.node != node || from.node == node || !t.alive.contains(&from.node) {
            return None;
        }
        let addr = *t.addrs.get(&from.node)?;
        let g = e.geometry;
        let (k, gb) = (g.k as usize, group_bytes(&g) as u64);
        let stripe_bytes = (k * g.chunk_bytes as usize) as u64;
        let (start, end) = (group as u64 * gb, ((group as u64 + 1) * gb).min(e.size));
        let len: usize = (start..end)
            .step_by(stripe_bytes as usize)
            .map(|s| shard_len(((s + stripe_bytes).min(end) - s) as usize, k))
            .sum();
        let req = Request::Get {
            drive: from.drive as u16,
            key: piece_key(partition, e.data_id, group, slot),
            offset: 0,
            len: len as u64,
        };
        match self.call(addr, &req).await {
            Ok(Reply::Data(d)) if d.len() == len => Some(d),
            _ => None,
        }
    }

    /// Rebuilds `slot`'s piece of `group` from the other slots (a repair): every
    /// stripe of the group decoded and re-encoded. `None` when fewer than `k` other
    /// pieces are readable now.
    pub async fn rebuild_piece(
        &self,
        partition: u32,
        e: &Extent,
        group: usize,
        slot: usize,
    ) -> Result<Vec<u8>, ClusterIoError> {
        let g = e.geometry;
        let (k, m) = (g.k as usize, g.m as usize);
        let n = k + m;
        let gb = group_bytes(&g) as u64;
        let start = group as u64 * gb;
        let end = (start + gb).min(e.size);
        let mut data = Vec::with_capacity((end - start) as usize);
        self.read_span(partition, e, start, end, &mut data).await?;
        let mut codec =
            new_codec(CodecKind::ReedSolomonSimd, k, m).map_err(|e| ClusterIoError::Unreadable(e.to_string()))?;
        let stripe_bytes = k * g.chunk_bytes as usize;
        let mut piece = Vec::new();
        for stripe in data.chunks(stripe_bytes) {
            let shards = encode_stripe(&mut *codec, stripe, k, n)?;
            piece.extend_from_slice(&shards[slot]);
        }
        Ok(piece)
    }

    /// The parts of an upload from a read quorum: per part number the newest
    /// record, live ones only, in part-number order.
    pub async fn upload_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<Vec<(u32, tessera_engine::object::meta::PartInfo)>, ClusterIoError> {
        let partition = self.topology().keyspace.partition_of(bucket, key);
        let req = Request::MetaParts { partition, bucket: bucket.into(), key: key.into(), upload_id: upload_id.into() };
        self.on_read_set(partition, |live, n| {
            let req = &req;
            async move { self.parts_of(&live, n, req).await }
        })
        .await
    }

    /// An upload's parts as a read quorum of `live` knows them.
    async fn parts_of(
        &self,
        live: &[LiveSlot],
        n: usize,
        req: &Request,
    ) -> Result<Vec<(u32, tessera_engine::object::meta::PartInfo)>, ClusterIoError> {
        let (_, r) = quorums(n);
        let answers = join_all(live.iter().map(|(_, addr, _)| self.call(*addr, req))).await;
        let mut answered = 0;
        let mut best: std::collections::BTreeMap<u32, MetaRecord> = Default::default();
        for a in answers {
            let Ok(Reply::Records { records, .. }) = a else { continue };
            answered += 1;
            for bytes in records {
                let rec = meta::decode(&bytes).map_err(|e| ClusterIoError::Unreadable(e.to_string()))?;
                let MetaEntry::Part { part_number, .. } = &rec.entry else { continue };
                let n = *part_number;
                if best.get(&n).is_none_or(|b| rec.version > b.version) {
                    best.insert(n, rec);
                }
            }
        }
        if answered < r {
            return Err(ClusterIoError::ReadQuorum(format!("{answered} of {n} nodes answered, {r} needed")));
        }
        Ok(best
            .into_iter()
            .filter_map(|(n, rec)| match rec.entry {
                MetaEntry::Part { part: Some(p), .. } => Some((n, p)),
                _ => None,
            })
            .collect())
    }

    /// Open uploads of `bucket` under `prefix` after `after` (key, upload id), in
    /// that order, over every partition: at least `want` when there are that many.
    pub async fn list_uploads(
        &self,
        bucket: &str,
        prefix: &str,
        after: (&str, &str),
        want: usize,
    ) -> Result<Vec<(String, String, i64)>, ClusterIoError> {
        let request = |partition, cursor: &(String, String), limit| Request::MetaUploads {
            partition,
            bucket: bucket.into(),
            prefix: prefix.into(),
            after_key: cursor.0.clone(),
            after_upload_id: cursor.1.clone(),
            limit,
        };
        let entries = |reply| {
            let Reply::Records { records, .. } = reply else { return Ok(None) };
            let mut out = Vec::with_capacity(records.len());
            for bytes in records {
                let rec = meta::decode(&bytes).map_err(|e| ClusterIoError::Unreadable(e.to_string()))?;
                if let MetaEntry::Upload { key, upload_id, upload, .. } = rec.entry {
                    let initiated_ms = upload.as_ref().map_or(0, |u| u.initiated_ms);
                    let live = upload.is_some();
                    out.push(Entry { id: (key, upload_id), version: rec.version, live, item: initiated_ms });
                }
            }
            Ok(Some(out))
        };
        let after = (after.0.to_string(), after.1.to_string());
        let (found, _) = self.list_merged(after, want, request, entries).await?;
        Ok(found.into_iter().map(|((k, u), initiated)| (k, u, initiated)).collect())
    }

    /// Deletes `bucket/key` (a deletion record, ordered like any write).
    pub async fn delete(&self, bucket: &str, key: &str) -> Result<u64, ClusterIoError> {
        self.commit_object(bucket, key, None).await
    }

    /// Live objects of `bucket` under `prefix` after `after`, in key order, from
    /// every partition: at least `want` when there are that many (a little more at
    /// times), and whether more may follow.
    pub async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        after: &str,
        want: usize,
    ) -> Result<(Vec<Listed>, bool), ClusterIoError> {
        let request = |partition, cursor: &String, limit| Request::MetaList {
            partition,
            bucket: bucket.into(),
            prefix: prefix.into(),
            start_after: cursor.clone(),
            limit,
        };
        let entries = |reply| match reply {
            Reply::Listing { entries, .. } => Ok(Some(
                entries
                    .into_iter()
                    .map(|e| Entry { id: e.key.clone(), version: e.version, live: e.live, item: e })
                    .collect(),
            )),
            _ => Ok(None),
        };
        let (found, more) = self.list_merged(after.to_string(), want, request, entries).await?;
        Ok((found.into_iter().map(|(_, e)| e).collect(), more))
    }

    /// A listing over every partition. Each partition's read quorum answers
    /// `request(partition, cursor, limit)`; `entries` reads an answer. Per id the
    /// highest version wins (a deletion outvotes a stale node's live entry). An
    /// answer cut at `limit` leaves what follows its last id unknown, so the batch
    /// stops at the smallest such id and the next batch starts there, until `want`
    /// live entries or the end. Returns them in id order, and whether more may follow.
    async fn list_merged<K: Ord + Clone, T>(
        &self,
        after: K,
        want: usize,
        request: impl Fn(u32, &K, u32) -> Request,
        entries: impl Fn(Reply) -> Result<Option<Vec<Entry<K, T>>>, ClusterIoError>,
    ) -> Result<(Vec<(K, T)>, bool), ClusterIoError> {
        let partitions = self.topology().keyspace.partitions;
        let limit = want.clamp(1, LIST_BATCH_MAX) as u32;
        let mut out = Vec::new();
        let mut cursor = after;
        let mut retries = 0;
        loop {
            let t = self.topology();
            let answers = join_all((0..partitions).map(|p| {
                let req = request(p, &cursor, limit);
                async move {
                    let (_, live, n) = self.live_set(p)?;
                    let replies = join_all(live.iter().map(|(_, addr, _)| self.call(*addr, &req))).await;
                    Ok::<_, ClusterIoError>((p, n, replies))
                }
            }))
            .await;
            let mut bound: Option<K> = None;
            let mut merged: std::collections::BTreeMap<K, Entry<K, T>> = Default::default();
            for a in answers {
                let (p, n, replies) = a?;
                let (_, r) = quorums(n);
                let mut answered = 0;
                for reply in replies.into_iter().flatten() {
                    let Some(list) = entries(reply)? else { continue };
                    answered += 1;
                    if list.len() >= limit as usize {
                        let last = list.last().expect("limit > 0").id.clone();
                        if bound.as_ref().is_none_or(|b| last < *b) {
                            bound = Some(last);
                        }
                    }
                    for e in list {
                        if merged.get(&e.id).is_none_or(|have| e.version > have.version) {
                            merged.insert(e.id.clone(), e);
                        }
                    }
                }
                if answered < r {
                    return Err(ClusterIoError::ReadQuorum(format!(
                        "listing partition {p}: {answered} of {n} nodes answered, {r} needed"
                    )));
                }
            }
            // Decided on a placement since changed: this batch again, on the new one.
            if !self.decided_on(&t)? {
                retries += 1;
                if retries >= LAYOUT_RETRIES {
                    return Err(ClusterIoError::StaleView("the placement kept changing during a listing".into()));
                }
                continue;
            }
            out.extend(
                merged
                    .into_values()
                    .take_while(|e| bound.as_ref().is_none_or(|b| e.id <= *b))
                    .filter(|e| e.live)
                    .map(|e| (e.id, e.item)),
            );
            match bound {
                None => return Ok((out, false)),
                Some(_) if out.len() >= want => return Ok((out, true)),
                Some(b) => cursor = b,
            }
        }
    }
}

/// One entry of a node's listing answer, for [`ClusterClient::list_merged`].
struct Entry<K, T> {
    id: K,
    version: u64,
    live: bool,
    item: T,
}

/// Entries a listing asks of each node at once.
const LIST_BATCH_MAX: usize = 1000;

/// Codes one stripe of data (at most `k × chunk` bytes) into `n` shards.
fn encode_stripe(
    codec: &mut dyn tessera_engine::erasure::ErasureCodec,
    stripe: &[u8],
    k: usize,
    n: usize,
) -> Result<Vec<Vec<u8>>, ClusterIoError> {
    let shard = shard_len(stripe.len(), k);
    let mut shards: Vec<Vec<u8>> = (0..n).map(|_| vec![0u8; shard]).collect();
    for (i, sh) in shards.iter_mut().take(k).enumerate() {
        let a = (i * shard).min(stripe.len());
        let b = (a + shard).min(stripe.len());
        sh[..b - a].copy_from_slice(&stripe[a..b]);
    }
    let (data, parity) = shards.split_at_mut(k);
    let data_refs: Vec<&[u8]> = data.iter().map(|v| v.as_slice()).collect();
    let mut parity_refs: Vec<&mut [u8]> = parity.iter_mut().map(|v| v.as_mut_slice()).collect();
    codec.encode(&data_refs, &mut parity_refs).map_err(|e| ClusterIoError::Unreadable(e.to_string()))?;
    Ok(shards)
}

/// Writes one extent group by group as its bytes arrive: a group (`k` × 1 MiB)
/// is coded and its pieces written to the set once full; a group needs `k`
/// durable pieces. Memory: one group.
pub struct ExtentWriter<'a> {
    client: &'a ClusterClient,
    partition: u32,
    live: Vec<LiveSlot>,
    /// Current holders of slots a move takes elsewhere: written too, best effort,
    /// so they stay whole for readers until the move switches.
    also: Vec<LiveSlot>,
    codec: tessera_engine::erasure::BoxedCodec,
    data_id: u128,
    geometry: Geometry,
    missing: u64,
    group: usize,
    buf: Vec<u8>,
    size: u64,
}

impl ExtentWriter<'_> {
    pub fn size(&self) -> u64 {
        self.size
    }

    pub async fn push(&mut self, mut data: &[u8]) -> Result<(), ClusterIoError> {
        let gb = group_bytes(&self.geometry);
        while !data.is_empty() {
            let take = (gb - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            self.size += take as u64;
            if self.buf.len() == gb {
                self.flush().await?;
            }
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), ClusterIoError> {
        let (k, n) = (self.geometry.k as usize, (self.geometry.k + self.geometry.m) as usize);
        let stripe_bytes = k * self.geometry.chunk_bytes as usize;
        let mut pieces: Vec<Vec<u8>> = vec![Vec::with_capacity(self.buf.len().div_ceil(k) + 2); n];
        for stripe in self.buf.chunks(stripe_bytes) {
            for (slot, sh) in encode_stripe(&mut *self.codec, stripe, k, n)?.into_iter().enumerate() {
                pieces[slot].extend_from_slice(&sh);
            }
        }
        self.buf.clear();
        let (partition, data_id, group) = (self.partition, self.data_id, self.group);
        let extra: Vec<_> = self
            .also
            .iter()
            .map(|(slot, addr, drive)| {
                let key = piece_key(partition, data_id, group, *slot);
                (*slot, *addr, Request::Put { drive: *drive, key, data: pieces[*slot].clone() })
            })
            .collect();
        let requests: Vec<_> = self
            .live
            .iter()
            .map(|(slot, addr, drive)| {
                let req = Request::Put {
                    drive: *drive,
                    key: piece_key(partition, data_id, group, *slot),
                    data: std::mem::take(&mut pieces[*slot]),
                };
                (*slot, *addr, req)
            })
            .collect();
        let client = self.client;
        let writes = requests.iter().map(|(slot, addr, req)| async move { (*slot, client.call(*addr, req).await) });
        let extra_writes = extra.iter().map(|(slot, addr, req)| async move { (*slot, client.call(*addr, req).await) });
        let (done, extra_done) = futures::join!(join_all(writes), join_all(extra_writes));
        for (slot, r) in extra_done {
            if !matches!(r, Ok(Reply::Ok)) {
                tracing::debug!(partition, slot, "piece write to a slot's previous holder failed");
            }
        }
        let mut ok = 0;
        for (slot, r) in done {
            match r {
                Ok(Reply::Ok) => ok += 1,
                other => {
                    tracing::warn!(partition, slot, result = ?other.map(|_| ()), "piece write failed");
                    self.missing |= 1 << slot;
                }
            }
        }
        // Slots that failed once are not written again in this extent: its record
        // names them missing for every group.
        self.live.retain(|(slot, _, _)| self.missing & (1 << slot) == 0);
        self.group += 1;
        if ok < k {
            return Err(ClusterIoError::WriteQuorum(format!(
                "group {group} of partition {partition}: {ok} pieces durable, {k} needed"
            )));
        }
        Ok(())
    }

    /// Writes what is left and returns the extent for the commit record.
    pub async fn finish(mut self) -> Result<Extent, ClusterIoError> {
        if !self.buf.is_empty() {
            self.flush().await?;
        }
        Ok(Extent { data_id: self.data_id, size: self.size, geometry: self.geometry, missing_slots: self.missing })
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
