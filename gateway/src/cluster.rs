//! Cluster topology in etcd (ARCHITECTURE.md §1, §4, §8): the cluster's code and
//! partition count, its members, the placement of partitions onto them, and
//! which members are alive.
//!
//! Membership and liveness are kept apart, as Ceph's in/out and up/down are:
//! * **Members** are added (`tessera cluster add-node`, or a node starting with a
//!   new id) or drained (`remove-node`). The `k + m`-th member places the
//!   cluster; later changes begin a *move* to the placement recomputed from the
//!   current one ([`tessera_engine::placement`], least data moved). The stored
//!   placement keeps the current one whole until the move ends (syncing →
//!   switched → done, see [`Cluster::advance_move`] and `cluster_client`'s notes
//!   on what gateways do in each phase). It is replaced only by a transaction
//!   that checks nobody replaced it meanwhile.
//! * **Liveness** is an etcd lease a running node keeps alive (an ephemeral key,
//!   like a ZooKeeper ephemeral node). A member whose key is gone is down: its
//!   slots are skipped (degraded reads) but stay where they are, so a restart or
//!   a network blip moves no data.
//!
//! Keys, under `/tessera/<cluster>/` (JSON values, readable with etcdctl):
//! `config`, `placement` (with the move in progress), `members/<id>`, `membership`
//! (member count, rewritten by every join or drain), `alive/<id>` (leased),
//! `synced/<version>/<id>` (a node caught up with a move), `retired/<id>` (drained
//! ids, refused if they try to join again), `buckets/<name>` (the bucket catalogue).
//!
//! etcd-client needs tokio; it runs on a runtime of its own on the control
//! thread, never on the cores.
use std::collections::BTreeMap;
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp};
use serde::{Deserialize, Serialize};
use tessera_engine::placement::{self, NodeSpec, Placement, Slot};

use crate::cluster_client::{Move, MovePhase, MOVE_FENCE};

/// Connection attempts give up after this long (an unreachable etcd is an error
/// the operator should see quickly).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Placement updates retried when another admin changed it in between.
const UPDATE_ATTEMPTS_MAX: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("cannot reach etcd at {endpoints}: {why}")]
    Unreachable { endpoints: String, why: String },
    #[error("cluster {0:?} is already initialised (its config exists in etcd)")]
    AlreadyInitialised(String),
    #[error("cluster {0:?} is not initialised: run `tessera cluster init` first")]
    NotInitialised(String),
    #[error("node {0:?} is already a member")]
    DuplicateMember(String),
    #[error("node {0:?} is not a member")]
    NotMember(String),
    #[error("node {0:?} was removed from the cluster and cannot join again under that id: start it with a new --id and an empty --data")]
    Retired(String),
    #[error("{0}")]
    Invalid(String),
    #[error("placement: {0}")]
    Placement(#[from] placement::PlacementError),
    #[error("corrupt record {key}: {why}")]
    Corrupt { key: String, why: String },
    #[error("the placement kept changing under this update ({0} attempts)")]
    Contended(usize),
}

pub type ClusterResult<T> = Result<T, ClusterError>;

/// What `cluster init` fixes for the cluster's lifetime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterConfig {
    pub k: u32,
    pub m: u32,
    pub partitions: u32,
    /// Key of the partition hash (hex, 128 bits), random per cluster so crafted
    /// keys cannot pile onto one partition.
    pub hash_key: String,
    pub created_ms: i64,
}

/// A storage node the operator added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: String,
    /// Where it serves shard pieces.
    pub addr: String,
    pub zone: String,
    pub drives: u32,
    /// Being drained (`cluster remove-node`): the next placement leaves it out.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub leaving: bool,
}

/// The placement as stored: `sets[p]` lists `[node, drive]` per slot.
/// A bucket in the catalogue (`buckets/<name>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StoredBucket {
    created_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StoredPlacement {
    version: u64,
    k: u32,
    m: u32,
    sets: Vec<Vec<(String, u32)>>,
    /// The placement being moved to, and how far the move is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    moving: Option<StoredMove>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StoredMove {
    version: u64,
    phase: MovePhase,
    sets: Vec<Vec<(String, u32)>>,
}

fn stored_sets(p: &Placement) -> Vec<Vec<(String, u32)>> {
    p.sets.iter().map(|s| s.iter().map(|x| (x.node.clone(), x.drive)).collect()).collect()
}

fn placement_of(version: u64, k: u32, m: u32, sets: Vec<Vec<(String, u32)>>) -> Placement {
    Placement {
        version,
        k,
        m,
        sets: sets.into_iter().map(|set| set.into_iter().map(|(node, drive)| Slot { node, drive }).collect()).collect(),
    }
}

impl StoredPlacement {
    fn new(current: &Placement, moving: Option<&Move>) -> Self {
        StoredPlacement {
            version: current.version,
            k: current.k,
            m: current.m,
            sets: stored_sets(current),
            moving: moving.map(|mv| StoredMove {
                version: mv.target.version,
                phase: mv.phase,
                sets: stored_sets(&mv.target),
            }),
        }
    }

    fn layout(self) -> (Placement, Option<Move>) {
        let (k, m) = (self.k, self.m);
        let moving = self.moving.map(|mv| Move { target: placement_of(mv.version, k, m, mv.sets), phase: mv.phase });
        (placement_of(self.version, k, m, self.sets), moving)
    }
}

impl From<&Placement> for StoredPlacement {
    fn from(p: &Placement) -> Self {
        StoredPlacement::new(p, None)
    }
}

impl From<StoredPlacement> for Placement {
    fn from(s: StoredPlacement) -> Self {
        s.layout().0
    }
}

/// The slots a move gives to each node that did not hold them: node → (partition, slot).
pub fn incoming(current: &Placement, target: &Placement) -> BTreeMap<String, Vec<(u32, usize)>> {
    let mut out: BTreeMap<String, Vec<(u32, usize)>> = BTreeMap::new();
    for (p, (cur, tgt)) in current.sets.iter().zip(&target.sets).enumerate() {
        for (slot, t) in tgt.iter().enumerate() {
            if cur.get(slot).map(|c| &c.node) != Some(&t.node) {
                out.entry(t.node.clone()).or_default().push((p as u32, slot));
            }
        }
    }
    out
}

/// After a change of members: the placement to store (`None`: unchanged) and what
/// it means. A move begins from `stored` unless one is on already (the
/// coordinator begins the next when it ends).
fn begin_move(
    stored: StoredPlacement,
    members: &[Member],
    partitions: u32,
) -> ClusterResult<(Option<StoredPlacement>, Joined)> {
    if stored.moving.is_some() {
        return Ok((None, Joined::Queued));
    }
    let (current, _) = stored.layout();
    Ok(match planned(&current, members, partitions)? {
        Some(target) => {
            let v = target.version;
            let mv = Move { target, phase: MovePhase::Syncing };
            (Some(StoredPlacement::new(&current, Some(&mv))), Joined::Moving(v))
        }
        None => (None, Joined::Queued),
    })
}

/// The placement the members call for, moved from `current` as little as
/// possible; `None` when `current` places exactly the members (a move is for a
/// change of members only: recomputing a balanced placement may shuffle a slot,
/// and that is no reason to move data).
fn planned(current: &Placement, members: &[Member], partitions: u32) -> ClusterResult<Option<Placement>> {
    let staying: Vec<&Member> = members.iter().filter(|m| !m.leaving).collect();
    let placed: std::collections::BTreeSet<&str> = current.sets.iter().flatten().map(|s| s.node.as_str()).collect();
    if placed == staying.iter().map(|m| m.id.as_str()).collect() {
        return Ok(None);
    }
    let nodes: Vec<NodeSpec> =
        staying.iter().map(|m| NodeSpec { id: m.id.clone(), zone: m.zone.clone(), drives: m.drives }).collect();
    let next = placement::compute(Some(current), &nodes, partitions, current.k, current.m)?;
    Ok((next.sets != current.sets).then_some(next))
}

/// A member's liveness record (under its lease).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alive {
    pub id: String,
    pub addr: String,
    pub since_ms: i64,
}

/// What `cluster status` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub cluster: String,
    pub config: ClusterConfig,
    pub members: Vec<MemberStatus>,
    pub placement_version: Option<u64>,
    /// The placement move in progress, if any.
    pub moving: Option<MoveStatus>,
    /// Partitions with at least one slot on a member that is down.
    pub degraded_partitions: usize,
    /// Partitions with fewer than `k` slots on live members: unreadable.
    pub unavailable_partitions: usize,
    /// Placement exists and every partition has at least `k` live slots.
    pub ready: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct MemberStatus {
    pub id: String,
    pub addr: String,
    pub zone: String,
    pub drives: u32,
    pub alive: bool,
    /// Being drained (`cluster remove-node`).
    pub leaving: bool,
    /// Erasure-set slots placed on it.
    pub slots: usize,
    /// Slots it will hold when the move in progress ends (`slots` without one).
    pub target_slots: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct MoveStatus {
    /// The placement version being moved to.
    pub version: u64,
    pub phase: MovePhase,
    /// Slots changing holder.
    pub slots_moving: usize,
    /// Nodes taking slots that hold everything given to them, and those still catching up.
    pub synced: Vec<String>,
    pub waiting: Vec<String>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// What adding a member did to the placement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joined {
    /// Fewer than `k + m` members: no placement yet.
    Unplaced,
    /// The first placement, of this version.
    Placed(u64),
    /// A move to the placement of this version has begun.
    Moving(u64),
    /// A move is on already; the next one follows when it ends.
    Queued,
}

impl std::fmt::Display for Joined {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Joined::Unplaced => write!(f, "no placement yet (fewer members than k+m)"),
            Joined::Placed(v) => write!(f, "placement version {v}"),
            Joined::Moving(v) => write!(f, "moving to placement version {v}"),
            Joined::Queued => write!(f, "a placement move is on; the next one follows it"),
        }
    }
}

/// Cluster names become etcd key segments.
pub fn check_name(name: &str) -> ClusterResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ClusterError::Invalid(format!("cluster name {name:?}: 1-63 of a-z 0-9 - _")))
    }
}

fn check_member(m: &Member) -> ClusterResult<()> {
    let id_ok = !m.id.is_empty()
        && m.id.len() <= 63
        && m.id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !id_ok {
        return Err(ClusterError::Invalid(format!("node id {:?}: 1-63 of A-Z a-z 0-9 - _ .", m.id)));
    }
    if m.addr.parse::<std::net::SocketAddr>().is_err() {
        return Err(ClusterError::Invalid(format!("node address {:?}: expected IP:PORT", m.addr)));
    }
    if m.drives == 0 || m.drives > 1024 {
        return Err(ClusterError::Invalid(format!("node {:?}: drives must be 1..=1024", m.id)));
    }
    if m.zone.is_empty() || m.zone.len() > 63 {
        return Err(ClusterError::Invalid(format!("node {:?}: zone must be 1-63 bytes", m.id)));
    }
    Ok(())
}

/// One cluster in one etcd.
pub struct Cluster {
    client: Client,
    name: String,
}

impl Cluster {
    /// Connects to etcd (`endpoints`: comma-separated URLs).
    pub async fn connect(endpoints: &str, name: &str) -> ClusterResult<Cluster> {
        check_name(name)?;
        let urls: Vec<&str> = endpoints.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
        if urls.is_empty() {
            return Err(ClusterError::Invalid("--etcd needs at least one URL".into()));
        }
        let opts =
            etcd_client::ConnectOptions::new().with_connect_timeout(CONNECT_TIMEOUT).with_timeout(CONNECT_TIMEOUT);
        let unreachable = |why: String| ClusterError::Unreachable { endpoints: endpoints.to_string(), why };
        let mut client = tokio::time::timeout(CONNECT_TIMEOUT, Client::connect(urls, Some(opts)))
            .await
            .map_err(|_| unreachable("timed out".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        // connect() is lazy about the first request: prove the endpoint answers.
        tokio::time::timeout(CONNECT_TIMEOUT, client.status())
            .await
            .map_err(|_| unreachable("timed out".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(Cluster { client, name: name.to_string() })
    }

    fn key(&self, rest: &str) -> String {
        format!("/tessera/{}/{rest}", self.name)
    }

    /// Creates the cluster: its code and partition count, fixed from now on.
    pub async fn init(&mut self, k: u32, m: u32, partitions: u32) -> ClusterResult<ClusterConfig> {
        // An extent records its missing slots in a 64-bit map.
        let slots_max = crate::cluster_client::SLOTS_MAX as u32;
        if k == 0 || m == 0 || k + m > slots_max {
            return Err(ClusterError::Invalid(format!("code {k}+{m}: k and m at least 1, k + m at most {slots_max}")));
        }
        if partitions == 0 || partitions > 1 << 16 {
            return Err(ClusterError::Invalid(format!("partitions {partitions}: 1..=65536")));
        }
        let hash_key = format!("{:016x}{:016x}", rand::random::<u64>(), rand::random::<u64>());
        let config = ClusterConfig { k, m, partitions, hash_key, created_ms: now_ms() };
        let key = self.key("config");
        let value = serde_json::to_vec(&config).expect("config serialises");
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value, None)]);
        if !self.client.txn(txn).await?.succeeded() {
            return Err(ClusterError::AlreadyInitialised(self.name.clone()));
        }
        Ok(config)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&mut self, key: &str) -> ClusterResult<Option<(T, i64)>> {
        let resp = self.client.get(key, None).await?;
        let Some(kv) = resp.kvs().first() else { return Ok(None) };
        let v = serde_json::from_slice(kv.value())
            .map_err(|e| ClusterError::Corrupt { key: key.to_string(), why: e.to_string() })?;
        Ok(Some((v, kv.mod_revision())))
    }

    async fn list_json<T: serde::de::DeserializeOwned>(&mut self, prefix: &str) -> ClusterResult<Vec<T>> {
        let resp = self.client.get(prefix, Some(GetOptions::new().with_prefix())).await?;
        resp.kvs()
            .iter()
            .map(|kv| {
                serde_json::from_slice(kv.value()).map_err(|e| ClusterError::Corrupt {
                    key: String::from_utf8_lossy(kv.key()).into_owned(),
                    why: e.to_string(),
                })
            })
            .collect()
    }

    pub async fn config(&mut self) -> ClusterResult<ClusterConfig> {
        let key = self.key("config");
        match self.get_json(&key).await? {
            Some((c, _)) => Ok(c),
            None => Err(ClusterError::NotInitialised(self.name.clone())),
        }
    }

    pub async fn members(&mut self) -> ClusterResult<Vec<Member>> {
        let prefix = self.key("members/");
        self.list_json(&prefix).await
    }

    /// The stored placement, if the cluster has enough members for one.
    pub async fn placement(&mut self) -> ClusterResult<Option<Placement>> {
        let key = self.key("placement");
        Ok(self.get_json::<StoredPlacement>(&key).await?.map(|(p, _)| p.into()))
    }

    /// Adds a member. The first time there are `k + m`, the first placement is
    /// stored; later, a move to the placement recomputed from the current one
    /// begins (or, when a move is on, the next one once it ends). Atomic against
    /// other admins: the member and the placement are written together only if
    /// neither changed meanwhile.
    pub async fn add_node(&mut self, member: Member) -> ClusterResult<Joined> {
        check_member(&member)?;
        let config = self.config().await?;
        let member_key = self.key(&format!("members/{}", member.id));
        let placement_key = self.key("placement");
        // Every membership change rewrites `membership`: a transaction that checks
        // it unchanged knows the member list it computed from is still current
        // (nodes joining at once would otherwise each miss the others).
        let membership_key = self.key("membership");
        for _ in 0..UPDATE_ATTEMPTS_MAX {
            let membership_rev =
                self.client.get(membership_key.clone(), None).await?.kvs().first().map_or(0, |kv| kv.mod_revision());
            let mut members = self.members().await?;
            if members.iter().any(|m| m.id == member.id) {
                return Err(ClusterError::DuplicateMember(member.id));
            }
            if self.client.get(self.key(&format!("retired/{}", member.id)), None).await?.count() > 0 {
                return Err(ClusterError::Retired(member.id));
            }
            let prev = self.get_json::<StoredPlacement>(&placement_key).await?;
            let prev_rev = prev.as_ref().map_or(0, |(_, r)| *r);
            members.push(member.clone());
            let n = (config.k + config.m) as usize;
            let (next, joined) = match prev {
                None if members.len() >= n => {
                    let nodes: Vec<NodeSpec> = members
                        .iter()
                        .map(|m| NodeSpec { id: m.id.clone(), zone: m.zone.clone(), drives: m.drives })
                        .collect();
                    let p = placement::compute(None, &nodes, config.partitions, config.k, config.m)?;
                    (Some(StoredPlacement::from(&p)), Joined::Placed(p.version))
                }
                None => (None, Joined::Unplaced),
                Some((sp, _)) => begin_move(sp, &members, config.partitions)?,
            };
            let mut ops = vec![
                TxnOp::put(member_key.clone(), serde_json::to_vec(&member).expect("serialises"), None),
                TxnOp::put(membership_key.clone(), members.len().to_string(), None),
            ];
            if let Some(p) = &next {
                ops.push(TxnOp::put(placement_key.clone(), serde_json::to_vec(p).expect("serialises"), None));
            }
            let txn = Txn::new()
                .when([
                    Compare::create_revision(member_key.clone(), CompareOp::Equal, 0),
                    Compare::mod_revision(placement_key.clone(), CompareOp::Equal, prev_rev),
                    Compare::mod_revision(membership_key.clone(), CompareOp::Equal, membership_rev),
                ])
                .and_then(ops);
            if self.client.txn(txn).await?.succeeded() {
                return Ok(joined);
            }
        }
        Err(ClusterError::Contended(UPDATE_ATTEMPTS_MAX))
    }

    /// Marks a member as leaving and, when no move is on, begins the move that
    /// gives its slots to the others (else the coordinator begins it after the
    /// move in progress). Refused when the others are too few for the code.
    pub async fn remove_node(&mut self, id: &str) -> ClusterResult<Joined> {
        let config = self.config().await?;
        let member_key = self.key(&format!("members/{id}"));
        let placement_key = self.key("placement");
        let membership_key = self.key("membership");
        for _ in 0..UPDATE_ATTEMPTS_MAX {
            let membership_rev =
                self.client.get(membership_key.clone(), None).await?.kvs().first().map_or(0, |kv| kv.mod_revision());
            let mut members = self.members().await?;
            let Some(m) = members.iter_mut().find(|m| m.id == id) else {
                return Err(ClusterError::NotMember(id.to_string()));
            };
            m.leaving = true;
            let member = m.clone();
            let staying = members.iter().filter(|m| !m.leaving).count();
            let n = (config.k + config.m) as usize;
            if staying < n {
                return Err(ClusterError::Invalid(format!(
                    "removing {id:?} would leave {staying} members; RS {}+{} needs {n}",
                    config.k, config.m
                )));
            }
            let prev = self.get_json::<StoredPlacement>(&placement_key).await?;
            let prev_rev = prev.as_ref().map_or(0, |(_, r)| *r);
            let (next, change) = match prev {
                Some((sp, _)) => begin_move(sp, &members, config.partitions)?,
                None => (None, Joined::Unplaced),
            };
            let mut ops = vec![
                TxnOp::put(member_key.clone(), serde_json::to_vec(&member).expect("serialises"), None),
                TxnOp::put(membership_key.clone(), members.len().to_string(), None),
            ];
            if let Some(p) = &next {
                ops.push(TxnOp::put(placement_key.clone(), serde_json::to_vec(p).expect("serialises"), None));
            }
            let txn = Txn::new()
                .when([
                    Compare::mod_revision(placement_key.clone(), CompareOp::Equal, prev_rev),
                    Compare::mod_revision(membership_key.clone(), CompareOp::Equal, membership_rev),
                ])
                .and_then(ops);
            if self.client.txn(txn).await?.succeeded() {
                return Ok(change);
            }
        }
        Err(ClusterError::Contended(UPDATE_ATTEMPTS_MAX))
    }

    /// Members that left and hold no slot of `current` stop being members; their
    /// ids are retired so a stale process cannot join again under them.
    async fn retire_drained(&mut self, current: &Placement) -> ClusterResult<Vec<String>> {
        let placed: std::collections::BTreeSet<&str> = current.sets.iter().flatten().map(|s| s.node.as_str()).collect();
        let membership_key = self.key("membership");
        let mut retired = Vec::new();
        for m in self.members().await?.into_iter().filter(|m| m.leaving && !placed.contains(m.id.as_str())) {
            let left = self.members().await?.len() - 1;
            let txn = Txn::new().and_then([
                TxnOp::delete(self.key(&format!("members/{}", m.id)), None),
                TxnOp::put(self.key(&format!("retired/{}", m.id)), now_ms().to_string(), None),
                TxnOp::put(membership_key.clone(), left.to_string(), None),
            ]);
            self.client.txn(txn).await?;
            retired.push(m.id);
        }
        Ok(retired)
    }

    /// The current placement and the move in progress, with the key's revision.
    pub async fn layout(&mut self) -> ClusterResult<Option<(Placement, Option<Move>, i64)>> {
        let key = self.key("placement");
        Ok(self.get_json::<StoredPlacement>(&key).await?.map(|(p, rev)| {
            let (current, moving) = p.layout();
            (current, moving, rev)
        }))
    }

    /// Records that `node` holds everything a move to placement `version` gives it.
    pub async fn mark_synced(&mut self, version: u64, node: &str) -> ClusterResult<()> {
        let key = self.key(&format!("synced/{version}/{node}"));
        self.client.put(key, now_ms().to_string(), None).await?;
        Ok(())
    }

    /// The nodes that hold everything a move to placement `version` gives them.
    pub async fn synced(&mut self, version: u64) -> ClusterResult<std::collections::BTreeSet<String>> {
        let prefix = self.key(&format!("synced/{version}/"));
        let resp = self.client.get(prefix.clone(), Some(GetOptions::new().with_prefix().with_keys_only())).await?;
        Ok(resp
            .kvs()
            .iter()
            .filter_map(|kv| kv.key_str().ok().and_then(|k| k.strip_prefix(&prefix)).map(str::to_string))
            .collect())
    }

    /// One step of the placement coordinator (every node runs it; the etcd
    /// transactions make them agree). A phase is left only after [`MOVE_FENCE`]
    /// has passed since this caller first saw it (`seen`), so every gateway
    /// decision taken on the phase before has finished:
    /// * no move, and the members call for another placement: a move begins;
    /// * syncing, and every node taking slots has caught up: switch reads over;
    /// * switched: the target becomes the current placement.
    ///
    /// Returns what it changed, if anything.
    pub async fn advance_move(
        &mut self,
        seen: &mut Option<((u64, MovePhase), std::time::Instant)>,
    ) -> ClusterResult<Option<String>> {
        let config = self.config().await?;
        let placement_key = self.key("placement");
        let Some((current, moving, rev)) = self.layout().await? else { return Ok(None) };
        let (next, what) = match moving {
            None => {
                *seen = None;
                let members = self.members().await?;
                let Some(target) = planned(&current, &members, config.partitions)? else {
                    let retired = self.retire_drained(&current).await?;
                    return Ok((!retired.is_empty()).then(|| format!("drained and removed: {}", retired.join(" "))));
                };
                let what = format!("move to placement {} begun", target.version);
                (StoredPlacement::new(&current, Some(&Move { target, phase: MovePhase::Syncing })), what)
            }
            Some(mv) => {
                let id = (mv.target.version, mv.phase);
                match seen {
                    Some((s, at)) if *s == id => {
                        if at.elapsed() < MOVE_FENCE {
                            return Ok(None);
                        }
                    }
                    _ => {
                        *seen = Some((id, std::time::Instant::now()));
                        return Ok(None);
                    }
                }
                match mv.phase {
                    MovePhase::Syncing => {
                        let synced = self.synced(mv.target.version).await?;
                        if !incoming(&current, &mv.target).keys().all(|n| synced.contains(n)) {
                            return Ok(None);
                        }
                        let what = format!("move to placement {}: reads switched", mv.target.version);
                        (StoredPlacement::new(&current, Some(&Move { phase: MovePhase::Switched, ..mv })), what)
                    }
                    MovePhase::Switched => {
                        let what = format!("move to placement {} done", mv.target.version);
                        (StoredPlacement::new(&mv.target, None), what)
                    }
                }
            }
        };
        let txn = Txn::new()
            .when([Compare::mod_revision(placement_key.clone(), CompareOp::Equal, rev)])
            .and_then([TxnOp::put(placement_key, serde_json::to_vec(&next).expect("serialises"), None)]);
        if !self.client.txn(txn).await?.succeeded() {
            return Ok(None);
        }
        let mut what = what;
        if next.moving.is_none() {
            let prefix = self.key(&format!("synced/{}/", next.version));
            self.client.delete(prefix, Some(etcd_client::DeleteOptions::new().with_prefix())).await?;
            // A drained member stops being one with the move that drained it, not a
            // step later (a crash in between is caught by the next step's check).
            let (now, _) = next.layout();
            let retired = self.retire_drained(&now).await?;
            if !retired.is_empty() {
                what = format!("{what}; drained and removed: {}", retired.join(" "));
            }
        }
        Ok(Some(what))
    }

    /// Ids of the members whose liveness key exists.
    pub async fn alive(&mut self) -> ClusterResult<Vec<Alive>> {
        let prefix = self.key("alive/");
        self.list_json(&prefix).await
    }

    /// Registers `id` as alive under a lease of `ttl` and keeps it alive from a
    /// task until the returned guard is dropped (then the lease is revoked: a
    /// clean stop is seen at once, a crash after `ttl`).
    pub async fn register_alive(&mut self, id: &str, addr: &str, ttl: Duration) -> ClusterResult<AliveGuard> {
        let ttl_s = ttl.as_secs().max(1) as i64;
        let lease = self.client.lease_grant(ttl_s, None).await?.id();
        let alive = Alive { id: id.to_string(), addr: addr.to_string(), since_ms: now_ms() };
        let key = self.key(&format!("alive/{id}"));
        self.client
            .put(key, serde_json::to_vec(&alive).expect("serialises"), Some(PutOptions::new().with_lease(lease)))
            .await?;
        let (mut keeper, mut responses) = self.client.lease_keep_alive(lease).await?;
        let every = Duration::from_millis((ttl_s as u64 * 1000 / 3).max(100));
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if keeper.keep_alive().await.is_err() {
                    break;
                }
                match responses.message().await {
                    Ok(Some(r)) if r.ttl() > 0 => {}
                    _ => break, // the lease is gone: the node must register again
                }
            }
        });
        Ok(AliveGuard { client: self.client.clone(), lease, task })
    }

    /// What a gateway needs to place and find pieces: the keyspace, the code, the
    /// placement, the members' addresses and who is alive.
    pub async fn topology(&mut self) -> ClusterResult<crate::cluster_client::Topology> {
        let config = self.config().await?;
        let hash_key = u128::from_str_radix(&config.hash_key, 16)
            .map_err(|_| ClusterError::Invalid(format!("hash key {:?} is not 32 hex digits", config.hash_key)))?;
        let mut addrs = std::collections::HashMap::new();
        for m in self.members().await? {
            let addr =
                m.addr.parse().map_err(|_| ClusterError::Invalid(format!("member {} address {:?}", m.id, m.addr)))?;
            addrs.insert(m.id, addr);
        }
        let (placement, moving) = match self.layout().await? {
            Some((p, mv, _)) => (Some(p), mv),
            None => (None, None),
        };
        Ok(crate::cluster_client::Topology {
            keyspace: tessera_engine::object::Keyspace { hash_key, partitions: config.partitions },
            k: config.k as usize,
            m: config.m as usize,
            placement,
            moving,
            addrs,
            alive: self.alive().await?.into_iter().map(|a| a.id).collect(),
        })
    }

    /// Creates a bucket in the catalogue; `Some(created_ms)` when this call created
    /// it, `None` when it existed.
    pub async fn create_bucket(&mut self, name: &str) -> ClusterResult<Option<i64>> {
        let key = self.key(&format!("buckets/{name}"));
        let created_ms = now_ms();
        let value = serde_json::to_vec(&StoredBucket { created_ms }).expect("serialises");
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value, None)]);
        Ok(self.client.txn(txn).await?.succeeded().then_some(created_ms))
    }

    /// Removes a bucket from the catalogue; false when it was not there.
    pub async fn delete_bucket(&mut self, name: &str) -> ClusterResult<bool> {
        let key = self.key(&format!("buckets/{name}"));
        Ok(self.client.delete(key, None).await?.deleted() > 0)
    }

    /// The bucket's creation time, if it exists.
    pub async fn bucket(&mut self, name: &str) -> ClusterResult<Option<i64>> {
        let key = self.key(&format!("buckets/{name}"));
        Ok(self.get_json::<StoredBucket>(&key).await?.map(|(b, _)| b.created_ms))
    }

    /// Every bucket with its creation time, by name.
    pub async fn buckets(&mut self) -> ClusterResult<Vec<(String, i64)>> {
        let prefix = self.key("buckets/");
        let resp = self.client.get(prefix.clone(), Some(GetOptions::new().with_prefix())).await?;
        resp.kvs()
            .iter()
            .map(|kv| {
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                let b: StoredBucket = serde_json::from_slice(kv.value())
                    .map_err(|e| ClusterError::Corrupt { key: key.clone(), why: e.to_string() })?;
                Ok((key[prefix.len()..].to_string(), b.created_ms))
            })
            .collect()
    }

    pub async fn status(&mut self) -> ClusterResult<Status> {
        let config = self.config().await?;
        let members = self.members().await?;
        let alive: std::collections::BTreeSet<String> = self.alive().await?.into_iter().map(|a| a.id).collect();
        let (placement, moving) = match self.layout().await? {
            Some((p, mv, _)) => (Some(p), mv),
            None => (None, None),
        };
        let mut target_slots: BTreeMap<String, usize> = BTreeMap::new();
        let move_status = match &moving {
            Some(mv) => {
                for s in mv.target.sets.iter().flatten() {
                    *target_slots.entry(s.node.clone()).or_default() += 1;
                }
                let synced = self.synced(mv.target.version).await?;
                let takers = placement.as_ref().map(|p| incoming(p, &mv.target)).unwrap_or_default();
                Some(MoveStatus {
                    version: mv.target.version,
                    phase: mv.phase,
                    slots_moving: takers.values().map(Vec::len).sum(),
                    synced: takers.keys().filter(|n| synced.contains(*n)).cloned().collect(),
                    waiting: takers.keys().filter(|n| !synced.contains(*n)).cloned().collect(),
                })
            }
            None => None,
        };
        let mut slots: BTreeMap<&str, usize> = BTreeMap::new();
        let (mut degraded, mut unavailable) = (0, 0);
        if let Some(p) = &placement {
            for set in &p.sets {
                let live = set.iter().filter(|s| alive.contains(&s.node)).count();
                if live < set.len() {
                    degraded += 1;
                }
                if live < p.k as usize {
                    unavailable += 1;
                }
                for s in set {
                    *slots.entry(s.node.as_str()).or_default() += 1;
                }
            }
        }
        let member_status = members
            .iter()
            .map(|m| MemberStatus {
                id: m.id.clone(),
                addr: m.addr.clone(),
                zone: m.zone.clone(),
                drives: m.drives,
                alive: alive.contains(&m.id),
                leaving: m.leaving,
                slots: slots.get(m.id.as_str()).copied().unwrap_or(0),
                target_slots: match &moving {
                    Some(_) => target_slots.get(&m.id).copied().unwrap_or(0),
                    None => slots.get(m.id.as_str()).copied().unwrap_or(0),
                },
            })
            .collect();
        Ok(Status {
            cluster: self.name.clone(),
            ready: placement.is_some() && unavailable == 0,
            placement_version: placement.as_ref().map(|p| p.version),
            moving: move_status,
            config,
            members: member_status,
            degraded_partitions: degraded,
            unavailable_partitions: unavailable,
        })
    }
}

/// Keeps a liveness lease alive; dropping it revokes the lease.
pub struct AliveGuard {
    client: Client,
    lease: i64,
    task: tokio::task::JoinHandle<()>,
}

impl AliveGuard {
    /// Whether the keep-alive has stopped (etcd unreachable past the TTL, or the
    /// lease revoked): the node must register again.
    pub fn lost(&self) -> bool {
        self.task.is_finished()
    }

    /// Revokes the lease now (a clean stop: the node is down at once).
    pub async fn revoke(mut self) -> ClusterResult<()> {
        self.task.abort();
        self.client.lease_revoke(self.lease).await?;
        Ok(())
    }
}

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Human-readable status, as `tessera cluster status` prints it.
pub fn render_status(s: &Status) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let c = &s.config;
    let _ = writeln!(out, "cluster     {}", s.cluster);
    let _ = writeln!(out, "code        RS {}+{}, {} partitions", c.k, c.m, c.partitions);
    let alive = s.members.iter().filter(|m| m.alive).count();
    let _ = writeln!(out, "members     {} ({} alive)", s.members.len(), alive);
    for m in &s.members {
        let _ = writeln!(
            out,
            "  {:<16} {:<21} zone {:<8} drives {:<3} slots {:<11} {}",
            m.id,
            m.addr,
            m.zone,
            m.drives,
            if m.slots == m.target_slots { m.slots.to_string() } else { format!("{} -> {}", m.slots, m.target_slots) },
            match (m.alive, m.leaving) {
                (true, false) => "alive",
                (true, true) => "alive, leaving",
                (false, false) => "DOWN",
                (false, true) => "DOWN, leaving",
            }
        );
    }
    match s.placement_version {
        Some(v) => {
            let _ = writeln!(out, "placement   version {v}");
        }
        None => {
            let _ = writeln!(out, "placement   none yet: needs at least {} members", c.k + c.m);
        }
    }
    if let Some(mv) = &s.moving {
        let phase = match mv.phase {
            MovePhase::Syncing => "new holders catching up",
            MovePhase::Switched => "reads switched to the new holders",
        };
        let _ = writeln!(
            out,
            "moving      to version {}: {} slots, {phase}; caught up: [{}], catching up: [{}]",
            mv.version,
            mv.slots_moving,
            mv.synced.join(" "),
            mv.waiting.join(" ")
        );
    }
    let _ = writeln!(out, "degraded    {} partitions (a slot on a member that is down)", s.degraded_partitions);
    let _ = writeln!(out, "unavailable {} partitions (fewer than {} live slots)", s.unavailable_partitions, c.k);
    let _ = writeln!(out, "ready       {}", if s.ready { "yes" } else { "no" });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_members_are_checked() {
        assert!(check_name("prod-1").is_ok());
        for bad in ["", "Prod", "a/b", &"x".repeat(64)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        let good =
            Member { id: "n1".into(), addr: "127.0.0.1:7000".into(), zone: "z1".into(), drives: 4, leaving: false };
        assert!(check_member(&good).is_ok());
        for bad in [
            Member { id: "".into(), ..good.clone() },
            Member { id: "a/b".into(), ..good.clone() },
            Member { addr: "localhost".into(), ..good.clone() },
            Member { drives: 0, ..good.clone() },
            Member { zone: "".into(), ..good.clone() },
        ] {
            assert!(check_member(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn only_a_change_of_members_plans_a_move() {
        let member = |i: usize| Member {
            id: format!("n{i}"),
            addr: format!("127.0.0.1:{}", 7000 + i),
            zone: "z".into(),
            leaving: false,
            drives: 1,
        };
        let nine: Vec<Member> = (1..=9).map(member).collect();
        let specs = |ms: &[Member]| -> Vec<NodeSpec> {
            ms.iter().map(|m| NodeSpec { id: m.id.clone(), zone: m.zone.clone(), drives: m.drives }).collect()
        };
        let p = placement::compute(None, &specs(&nine), 16, 6, 3).unwrap();
        assert!(planned(&p, &nine, 16).unwrap().is_none(), "the same members: no move");
        let mut ten = nine.clone();
        ten.push(member(10));
        let q = planned(&p, &ten, 16).unwrap().expect("a new member: a move");
        assert_eq!(q.version, p.version + 1);
        let taken = incoming(&p, &q);
        assert_eq!(taken.keys().collect::<Vec<_>>(), ["n10"], "only the newcomer takes slots");
        assert!((14..=15).contains(&taken["n10"].len()), "its share of 16 x 9 / 10: {:?}", taken["n10"]);
        assert!(planned(&q, &ten, 16).unwrap().is_none(), "after the move: no other");
        let mut drained = ten.clone();
        drained[0].leaving = true;
        let r = planned(&q, &drained, 16).unwrap().expect("a member leaving: a move");
        let taken = incoming(&q, &r);
        assert!(!taken.contains_key("n1"), "the leaving member takes nothing");
        let given: usize = q.sets.iter().flatten().filter(|s| s.node == "n1").count();
        assert_eq!(taken.values().map(Vec::len).sum::<usize>(), given, "only its slots move");
        assert!(r.sets.iter().flatten().all(|s| s.node != "n1"), "it holds nothing after");
        let (cur, mv) =
            StoredPlacement::new(&p, Some(&Move { target: q.clone(), phase: MovePhase::Switched })).layout();
        assert_eq!((cur, mv), (p, Some(Move { target: q, phase: MovePhase::Switched })), "a move round-trips");
    }

    #[test]
    fn placement_round_trips_through_its_stored_form() {
        let nodes: Vec<NodeSpec> =
            (0..9).map(|i| NodeSpec { id: format!("n{i}"), zone: "z".into(), drives: 2 }).collect();
        let p = placement::compute(None, &nodes, 16, 6, 3).unwrap();
        let json = serde_json::to_vec(&StoredPlacement::from(&p)).unwrap();
        let back: Placement = serde_json::from_slice::<StoredPlacement>(&json).unwrap().into();
        assert_eq!(back, p);
    }
}
