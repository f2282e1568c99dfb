//! Repair on a storage node: the pieces of this node's slots that a write could
//! not place (the node was down or failed it; the commit record names those slots
//! in `missing_slots`) are rebuilt from the other slots and stored here. Every
//! record a node applies, live or while catching up after a restart, is checked,
//! so a node that was away repairs what it missed as it replays the log.
//!
//! One worker per core, one job at a time (a group's rebuild reads `k` pieces of
//! the set, decodes and re-encodes): repair never competes with client traffic
//! for more than one group's worth of reads. A job that cannot run now (fewer than
//! `k` other pieces readable) is retried with backoff.
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::Duration;

use tessera_engine::object::meta::{self, DataLayout, Extent, MetaEntry};
use tessera_engine::runtime::CoreCx;

use crate::cluster_client::{group_bytes, piece_key, ClusterClient, Topology};

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
    /// This node's (slot, drive) in each partition's set.
    pub mine: RefCell<HashMap<u32, Vec<(usize, u16)>>>,
    queue: RefCell<VecDeque<(std::time::Instant, Job)>>,
    pub stats: RefCell<RepairStats>,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct RepairStats {
    pub queued: u64,
    pub pieces_rebuilt: u64,
    pub jobs_done: u64,
    pub retries: u64,
}

thread_local! {
    static REPAIRS: RefCell<Option<Rc<Repairs>>> = const { RefCell::new(None) };
}

/// This node's slots in every set of `t`'s placement.
pub fn my_slots(t: &Topology, node: &str) -> HashMap<u32, Vec<(usize, u16)>> {
    let mut out: HashMap<u32, Vec<(usize, u16)>> = HashMap::new();
    if let Some(p) = &t.placement {
        for (part, set) in p.sets.iter().enumerate() {
            for (slot, s) in set.iter().enumerate() {
                if s.node == node {
                    out.entry(part as u32).or_default().push((slot, s.drive as u16));
                }
            }
        }
    }
    out
}

/// Sets up (or updates) this core's repair state and starts its worker once.
pub fn configure(cx: &Rc<CoreCx>, t: Topology, node: &str, secret: Vec<u8>) {
    let mine = my_slots(&t, node);
    let existing = REPAIRS.with(|r| r.borrow().clone());
    match existing {
        Some(r) => {
            r.client.set_topology(t);
            *r.mine.borrow_mut() = mine;
        }
        None => {
            let r = Rc::new(Repairs {
                client: ClusterClient::reader(t, secret),
                mine: RefCell::new(mine),
                queue: Default::default(),
                stats: Default::default(),
            });
            REPAIRS.with(|slot| *slot.borrow_mut() = Some(r.clone()));
            glommio::spawn_local(worker(cx.clone(), r)).detach();
        }
    }
}

/// Looks at an applied record: queues the rebuild of this node's slots it missed.
pub fn consider(partition: u32, record: &[u8]) {
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
        let missed: Vec<(usize, u16)> =
            slots.iter().copied().filter(|(s, _)| e.missing_slots & (1 << s) != 0).collect();
        if missed.is_empty() {
            continue;
        }
        let mut q = r.queue.borrow_mut();
        if q.len() >= QUEUE_MAX {
            let (_, dropped) = q.pop_front().expect("full");
            tracing::warn!(partition = dropped.partition, "repair queue full: dropped the oldest job");
        }
        q.push_back((std::time::Instant::now(), Job { partition, extent: e, slots: missed, attempts: 0 }));
        r.stats.borrow_mut().queued += 1;
    }
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
        match run(&cx, &r, &job).await {
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
            let piece = r.client.rebuild_piece(job.partition, e, group, slot).await.map_err(|e| e.to_string())?;
            store.put(key, &piece).await.map_err(|e| e.to_string())?;
            rebuilt += 1;
        }
    }
    Ok(rebuilt)
}
