//! Helpers shared by the engine's integration tests: a single-threaded executor,
//! deterministic values, and opening a store on the in-memory backend.
#![allow(dead_code)]
use std::future::Future;
use std::path::Path;

use futures::executor::LocalPool;
use futures::task::LocalSpawnExt;
use tessera_engine::io::memory::{MemIo, SimRng};
use tessera_engine::{ShardKey, ShardStore, StoreConfig, StoreError};

/// Runs `f` on a fresh single-threaded pool; `f` gets a spawner for the committer.
pub fn run<T, F, Fut>(f: F) -> T
where
    F: FnOnce(futures::executor::LocalSpawner) -> Fut,
    Fut: Future<Output = T>,
{
    let mut pool = LocalPool::new();
    let spawner = pool.spawner();
    pool.run_until(f(spawner))
}

/// Opens a store and spawns its committer.
pub async fn open(
    io: &MemIo,
    dir: &Path,
    cfg: StoreConfig,
    spawner: &futures::executor::LocalSpawner,
) -> Result<ShardStore<MemIo>, StoreError> {
    let (store, committer) = ShardStore::open(io.clone(), dir, cfg).await?;
    spawner.spawn_local(committer).expect("spawn committer");
    Ok(store)
}

/// A small configuration so tests cross segment boundaries and compact often.
pub fn small_cfg() -> StoreConfig {
    StoreConfig {
        segment_bytes: 2 << 20,
        preallocate_step_bytes: 256 << 10,
        block_log2: 12,
        submit_queue_max: 16,
        batch_records_max: 8,
        batch_bytes_max: 1 << 20,
        compaction_live_percent_max: 60,
        compaction_bytes_max: 4 << 20,
    }
}

pub fn key(partition: u32, object: u128) -> ShardKey {
    ShardKey { partition, object, piece: (object % 3) as u32 }
}

/// The bytes of version `version` of `key`: length and content derived from both,
/// so any mix-up of versions or keys is caught byte for byte.
pub fn value(key: ShardKey, version: u64, len_max: usize) -> Vec<u8> {
    let mut rng = SimRng::new((key.object as u64) ^ ((key.partition as u64) << 40) ^ version.wrapping_mul(0x9E37));
    let len = rng.below(len_max as u64 + 1) as usize;
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        v.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    v.truncate(len);
    v
}
