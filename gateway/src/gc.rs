//! Collection of orphaned pieces on a storage node: pieces that no current commit
//! record names. They come from writes that never committed (a gateway killed
//! mid-upload, a write that lost its quorum, a failed precondition) and from
//! versions replaced or deleted since ("the loser's shards are garbage").
//!
//! A pass walks each partition of this core: a piece whose data id no live
//! record of the partition names is noted with the time it was first seen so;
//! once it has stayed unnamed for the grace period it is deleted. The grace covers
//! the writes in flight (pieces land before their commit record) and the reads of
//! a version just replaced; the default (a day) outlasts any upload. A piece named
//! again meanwhile (its commit arrived) is forgotten. In a partition this node no
//! longer holds a slot of (a placement move took it elsewhere), every piece is
//! orphaned: the grace then covers the gateways still reading it here.
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tessera_engine::format::ShardKey;
use tessera_engine::object::meta::META_PIECE;
use tessera_engine::runtime::CoreCx;

#[derive(Debug, Clone, Copy)]
pub struct GcConfig {
    /// Time between passes.
    pub every: Duration,
    /// How long a piece stays unnamed before it is deleted.
    pub grace: Duration,
}

thread_local! {
    /// Orphans seen on this core: (drive, piece) → first seen unnamed.
    static SEEN: RefCell<HashMap<(usize, ShardKey), Instant>> = RefCell::new(HashMap::new());
    static COLLECTED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Pieces this core has collected since start.
pub fn collected() -> u64 {
    COLLECTED.with(|c| c.get())
}

/// Runs passes over this core's partitions (of the cluster's `total`) until the
/// runtime stops.
pub async fn run(cx: Rc<CoreCx>, total: u32, cfg: GcConfig) {
    let stop = cx.clone();
    let cores = cx.handle.cores();
    let partitions: Vec<u32> =
        (0..total).filter(|p| tessera_engine::runtime::core_for_partition(*p, cores) == cx.core).collect();
    futures_lite::future::race(
        async move {
            loop {
                glommio::timer::sleep(cfg.every).await;
                pass(&cx, &partitions, cfg.grace).await;
            }
        },
        async move { stop.stopping().await },
    )
    .await
}

async fn pass(cx: &Rc<CoreCx>, partitions: &[u32], grace: Duration) {
    let now = Instant::now();
    let mut orphans: HashMap<(usize, ShardKey), Instant> = HashMap::new();
    let mut due = Vec::new();
    for &p in partitions {
        let named = match crate::repair::holds(p) {
            Some(true) => crate::node::referenced(p),
            Some(false) => Default::default(),
            None => return, // no topology yet
        };
        for (drive, store) in cx.stores.iter().enumerate() {
            let Some(store) = store else { continue };
            for (key, _) in store.list_partition(p) {
                if key.piece == META_PIECE || named.contains(&key.object) {
                    continue;
                }
                let first = SEEN.with(|s| s.borrow().get(&(drive, key)).copied()).unwrap_or(now);
                if now.duration_since(first) >= grace {
                    due.push((drive, key));
                } else {
                    orphans.insert((drive, key), first);
                }
            }
        }
        glommio::yield_if_needed().await;
    }
    // Only the orphans still there are remembered: the map stays bounded.
    SEEN.with(|s| *s.borrow_mut() = orphans);
    let mut named_now: HashMap<u32, std::collections::HashSet<u128>> = HashMap::new();
    for (drive, key) in due {
        // Named since the walk? (its commit was applied meanwhile)
        let named = named_now.entry(key.partition).or_insert_with(|| match crate::repair::holds(key.partition) {
            Some(false) => Default::default(),
            _ => crate::node::referenced(key.partition),
        });
        if named.contains(&key.object) {
            continue;
        }
        let Some(store) = cx.stores.get(drive).and_then(Option::as_ref) else { continue };
        match store.delete(key).await {
            Ok(_) => {
                COLLECTED.with(|c| c.set(c.get() + 1));
                tracing::info!(drive, partition = key.partition, data = %format!("{:032x}", key.object), piece = key.piece, "collected an orphaned piece");
            }
            Err(e) => tracing::warn!(drive, ?key, error = %e, "collecting an orphaned piece failed"),
        }
    }
}
