//! Repair on a storage node: the pieces of this node's slots that it does not
//! hold are rebuilt and stored here. Every record a node applies, live or while
//! catching up after a restart or after a placement move gave it a slot, is
//! checked against the node's stores: a write that could not place a piece (the
//! node was down or failed it; the record names the slot in `missing_slots`), or
//! any piece of a slot a move gives this node, is queued. A moved slot's piece is
//! copied from its previous holder when that one can give it (one piece read);
//! otherwise it is rebuilt from `k` other slots.
//!
//! One worker per core, one job at a time, paced to a byte rate
//! (`--repair-mib-per-sec`): repair and moves never compete with client traffic for
//! more than one group's worth of reads at a time. A job that cannot run now
//! (fewer than `k` other pieces readable) is retried with backoff.
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::Duration;

use tessera_engine::object::meta::{self, DataLayout, Extent, MetaEntry};
use tessera_engine::runtime::CoreCx;

use tessera_engine::applied::MetaId;

use crate::cluster_client::{group_bytes, piece_key, ClusterClient, Topology};
use crate::wire::{Reply, Request};

/// Pause of the worker when it has nothing to do.
const IDLE: Duration = Duration::from_millis(100);
/// First and longest wait before a failed job is tried again.
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// Jobs a core keeps queued; past this, the oldest are dropped (logged), to be
/// found again by a scrub.
const QUEUE_MAX: usize = 100_000;

/// Pieces of one extent to rebuild on this node.
#[derive(Debug, Clone)]
pub struct Job {
    pub partition: u32,
    pub extent: Extent,
    /// (slot, drive) of this node's slots the write missed.
    pub slots: Vec<(usize, u16)>,
    attempts: u32,
}

/// One core's repair state.
pub struct Repairs {
    /// Reads pieces of the other slots; its topology follows etcd's.
    pub client: ClusterClient,
    /// This node's id.
    node: String,
    /// This node's (slot, drive) in each partition's set, current or moved to.
    pub mine: RefCell<HashMap<u32, Vec<(usize, u16)>>>,
    queue: RefCell<VecDeque<(std::time::Instant, Job)>>,
    /// Partitions whose applied records are to be checked again: this node was
    /// given a slot of them (at start, every partition it holds), so records it
    /// applied before may name pieces it lacks.
    rescan: RefCell<std::collections::BTreeSet<u32>>,
    /// The partition of the job (or rescan) being run.
    busy: std::cell::Cell<Option<u32>>,
    /// Bytes per second this core's worker stores at most (0: no limit).
    rate: u64,
    pub stats: RefCell<RepairStats>,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct RepairStats {
    pub queued: u64,
    /// Pieces copied whole from a slot's previous holder (a move).
    pub pieces_copied: u64,
    pub pieces_rebuilt: u64,
    pub jobs_done: u64,
    pub retries: u64,
}

thread_local! {
    static REPAIRS: RefCell<Option<Rc<Repairs>>> = const { RefCell::new(None) };
}

/// This node's slots in every set of `t`'s placements (the current one and the
/// one a move goes to).
pub fn my_slots(t: &Topology, node: &str) -> HashMap<u32, Vec<(usize, u16)>> {
    let mut out: HashMap<u32, Vec<(usize, u16)>> = HashMap::new();
    for p in t.placement.iter().chain(t.moving.as_ref().map(|m| &m.target)) {
        for (part, set) in p.sets.iter().enumerate() {
            for (slot, s) in set.iter().enumerate() {
                let mine = out.entry(part as u32).or_default();
                if s.node == node && !mine.iter().any(|(x, _)| *x == slot) {
                    mine.push((slot, s.drive as u16));
                }
            }
        }
    }
    out.retain(|_, v| !v.is_empty());
    out
}

/// Whether this core's node holds a slot of `partition` (`None` before the first
/// topology).
pub fn holds(partition: u32) -> Option<bool> {
    REPAIRS.with(|r| r.borrow().as_ref().map(|r| r.mine.borrow().contains_key(&partition)))
}

/// Sets up (or updates) this core's repair state and starts its worker once.
/// `rate`: bytes per second the worker stores at most (0: no limit).
pub fn configure(cx: &Rc<CoreCx>, t: Topology, node: &str, secret: Vec<u8>, rate: u64) {
    let mine = my_slots(&t, node);
    let existing = REPAIRS.with(|r| r.borrow().clone());
    match existing {
        Some(r) => {
            r.client.set_topology(t);
            let mut old = r.mine.borrow_mut();
            let given =
                mine.iter().filter(|(p, slots)| old.get(p).is_none_or(|o| slots.iter().any(|s| !o.contains(s))));
            r.rescan.borrow_mut().extend(given.map(|(p, _)| *p));
            *old = mine;
        }
        None => {
            let rescan = mine.keys().copied().collect();
            let r = Rc::new(Repairs {
                client: ClusterClient::reader(t, secret),
                node: node.to_string(),
                mine: RefCell::new(mine),
                queue: Default::default(),
                rescan: RefCell::new(rescan),
                busy: Default::default(),
                rate,
                stats: Default::default(),
            });
            REPAIRS.with(|slot| *slot.borrow_mut() = Some(r.clone()));
            glommio::spawn_local(worker(cx.clone(), r)).detach();
        }
    }
}

/// Looks at an applied record: queues the pieces of this node's slots it names
/// that this node's stores do not hold.
pub fn consider(cx: &CoreCx, partition: u32, record: &[u8]) {
    let Some(r) = REPAIRS.with(|r| r.borrow().clone()) else { return };
    let Ok(rec) = meta::decode(record) else { return };
    let extents = match rec.entry {
        MetaEntry::Object { object: Some(info), .. } => match info.data {
            DataLayout::Extents(e) => e,
            DataLayout::Inline(_) => return,
        },
        // A part written with slots down is repaired before its upload completes.
        MetaEntry::Part { part: Some(p), .. } => vec![p.extent],
        _ => return,
    };
    let mine = r.mine.borrow();
    let Some(slots) = mine.get(&partition) else { return };
    for e in extents {
        let groups = (e.size as usize).div_ceil(group_bytes(&e.geometry));
        let lacking: Vec<(usize, u16)> = slots
            .iter()
            .copied()
            .filter(|&(slot, drive)| match cx.stores.get(drive as usize).and_then(Option::as_ref) {
                Some(store) => (0..groups).any(|g| store.len_of(piece_key(partition, e.data_id, g, slot)).is_none()),
                None => false, // an offline drive is the drive's repair, not this record's
            })
            .collect();
        if lacking.is_empty() {
            continue;
        }
        let mut q = r.queue.borrow_mut();
        if q.len() >= QUEUE_MAX {
            let (_, dropped) = q.pop_front().expect("full");
            tracing::warn!(partition = dropped.partition, "repair queue full: dropped the oldest job");
        }
        q.push_back((std::time::Instant::now(), Job { partition, extent: e, slots: lacking, attempts: 0 }));
        r.stats.borrow_mut().queued += 1;
    }
}

/// Whether this core holds everything of `partitions` a move gives it: it has
/// applied each partition's log as far as any live node of the current set has
/// (asked now), and no piece of them waits in its repair queue.
pub async fn caught_up(partitions: &[u32]) -> bool {
    let Some(r) = REPAIRS.with(|r| r.borrow().clone()) else { return false };
    for &p in partitions {
        if r.busy.get() == Some(p)
            || r.rescan.borrow().contains(&p)
            || r.queue.borrow().iter().any(|(_, j)| j.partition == p)
        {
            return false;
        }
        let t = r.client.topology();
        let Some(cur) = t.placement.as_ref().and_then(|c| c.sets.get(p as usize)) else { return false };
        let req = Request::MetaGet { partition: p, id: MetaId::Object { bucket: String::new(), key: String::new() } };
        let mut furthest = None;
        for s in cur.iter().filter(|s| s.node != r.node && t.alive.contains(&s.node)) {
            let Some(addr) = t.addrs.get(&s.node) else { continue };
            if let Ok(Reply::Meta { applied, .. }) = r.client.call(*addr, &req).await {
                furthest = furthest.max(applied);
            }
        }
        if furthest > crate::node::applied(p) {
            return false;
        }
    }
    true
}

/// This core's repair counters and queue length.
pub fn stats() -> Option<(RepairStats, usize)> {
    REPAIRS.with(|r| r.borrow().as_ref().map(|r| (*r.stats.borrow(), r.queue.borrow().len())))
}

async fn worker(cx: Rc<CoreCx>, r: Rc<Repairs>) {
    let stop = cx.clone();
    futures_lite::future::race(work(cx, r), async move { stop.stopping().await }).await
}

async fn work(cx: Rc<CoreCx>, r: Rc<Repairs>) {
    loop {
        let scan = r.rescan.borrow_mut().pop_first();
        if let Some(p) = scan {
            r.busy.set(Some(p));
            match crate::node::live_records(&cx, p, cx.stores.len()).await {
                Ok(records) => {
                    for rec in &records {
                        consider(&cx, p, rec);
                    }
                }
                Err(e) => {
                    tracing::warn!(partition = p, error = %e, "cannot rescan a partition's records; later");
                    r.rescan.borrow_mut().insert(p);
                    glommio::timer::sleep(RETRY_FIRST).await;
                }
            }
            r.busy.set(None);
            continue;
        }
        let next = {
            let mut q = r.queue.borrow_mut();
            let now = std::time::Instant::now();
            q.iter().position(|(at, _)| *at <= now).and_then(|i| q.remove(i)).map(|(_, j)| j)
        };
        let Some(mut job) = next else {
            glommio::timer::sleep(IDLE).await;
            continue;
        };
        // Replaced, deleted or aborted since: nothing to rebuild (and nothing to retry).
        if !crate::node::referenced(job.partition).contains(&job.extent.data_id) {
            r.stats.borrow_mut().jobs_done += 1;
            continue;
        }
        r.busy.set(Some(job.partition));
        let ran = run(&cx, &r, &job).await;
        r.busy.set(None);
        match ran {
            Ok(rebuilt) => {
                let mut s = r.stats.borrow_mut();
                s.pieces_rebuilt += rebuilt;
                s.jobs_done += 1;
                if rebuilt > 0 {
                    tracing::info!(partition = job.partition, data = %format!("{:032x}", job.extent.data_id), pieces = rebuilt, "repaired");
                }
            }
            Err(e) => {
                job.attempts += 1;
                let wait = (RETRY_FIRST * 2u32.saturating_pow(job.attempts.min(16))).min(RETRY_MAX);
                tracing::warn!(partition = job.partition, attempts = job.attempts, error = %e, ?wait, "repair failed; retrying later");
                r.stats.borrow_mut().retries += 1;
                r.queue.borrow_mut().push_back((std::time::Instant::now() + wait, job));
            }
        }
    }
}

/// Rebuilds the job's missing pieces that this node does not hold yet.
async fn run(cx: &Rc<CoreCx>, r: &Repairs, job: &Job) -> Result<u64, String> {
    let e = &job.extent;
    let groups = (e.size as usize).div_ceil(group_bytes(&e.geometry));
    let mut rebuilt = 0;
    for &(slot, drive) in &job.slots {
        let store = cx
            .stores
            .get(drive as usize)
            .and_then(Option::as_ref)
            .ok_or_else(|| format!("drive {drive} is offline"))?;
        for group in 0..groups {
            let key = piece_key(job.partition, e.data_id, group, slot);
            if store.len_of(key).is_some() {
                continue;
            }
            let piece = match r.client.copy_piece(job.partition, e, group, slot, &r.node).await {
                Some(p) => {
                    r.stats.borrow_mut().pieces_copied += 1;
                    p
                }
                None => r.client.rebuild_piece(job.partition, e, group, slot).await.map_err(|e| e.to_string())?,
            };
            store.put(key, &piece).await.map_err(|e| e.to_string())?;
            rebuilt += 1;
            pace(r, piece.len() as u64).await;
        }
    }
    Ok(rebuilt)
}

thread_local! {
    /// When the worker may store its next byte (the pacing of [`pace`]).
    static NEXT_AT: std::cell::Cell<Option<std::time::Instant>> = const { std::cell::Cell::new(None) };
}

/// Holds the worker to `r.rate` bytes per second after it stored `bytes`.
async fn pace(r: &Repairs, bytes: u64) {
    if r.rate == 0 {
        return;
    }
    let now = std::time::Instant::now();
    // A worker idle for a while starts afresh: no burst credit beyond one piece.
    let from = NEXT_AT.with(|n| n.get()).filter(|at| *at > now).unwrap_or(now);
    let next = from + Duration::from_secs_f64(bytes as f64 / r.rate as f64);
    NEXT_AT.with(|n| n.set(Some(next)));
    if next > now {
        glommio::timer::sleep(next - now).await;
    }
}
