//! The object layer under crashes: four clients put and delete objects (inline
//! and erasure-coded) on six simulated drives that die at a random operation and
//! come back with torn, unsynced writes. After recovery every key holds what its
//! last acknowledged operation left, or what its one unacknowledged operation would
//! have: never a mix, never a missing piece of a visible object, and the start-up
//! sweep leaves no unreferenced pieces behind.
//!
//! `TESSERA_SEED=n` reruns one seed; `TESSERA_OBJECT_CRASH_ITERS=n` sets how many.
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;

use futures::executor::{LocalPool, LocalSpawner};
use futures::task::LocalSpawnExt;
use tessera_engine::io::memory::{MemIo, SimRng};
use tessera_engine::object::{DataLayout, Deployment, ObjectConfig, ObjectError, ObjectInfo, ObjectLayer};
use tessera_engine::{ShardStore, StoreConfig};

const DRIVES: usize = 6;
const CLIENTS: usize = 4;
const KEYS_PER_CLIENT: usize = 3;
const OPS_PER_CLIENT: usize = 12;

fn dep() -> Deployment {
    Deployment {
        set_id: 1,
        drives: DRIVES,
        k: 4,
        m: 2,
        codec: tessera_engine::erasure::default_kind(),
        partitions: 8,
        hash_key: 0xfeed_beef,
        chunk_bytes: 4096,
        group_stripes: 2,
        cores: 1,
    }
}

fn store_cfg() -> StoreConfig {
    StoreConfig {
        segment_bytes: 2 << 20,
        preallocate_step_bytes: 256 << 10,
        block_log2: 12,
        submit_queue_max: 16,
        batch_records_max: 8,
        batch_bytes_max: 1 << 20,
        ..StoreConfig::default()
    }
}

async fn open(io: &MemIo, sp: &LocalSpawner) -> Result<Rc<ObjectLayer<MemIo>>, String> {
    let mut stores = Vec::new();
    for d in 0..DRIVES {
        let dir = PathBuf::from(format!("/d{d}/core-0"));
        let (s, c) = ShardStore::open(io.clone(), &dir, store_cfg()).await.map_err(|e| e.to_string())?;
        sp.spawn_local(c).map_err(|e| e.to_string())?;
        stores.push(Some(s));
    }
    let (layer, deleter) =
        ObjectLayer::open(0, dep(), ObjectConfig { inline_bytes_max: 1000, ..Default::default() }, Rc::new(stores))
            .await
            .map_err(|e| e.to_string())?;
    sp.spawn_local(deleter).map_err(|e| e.to_string())?;
    Ok(layer)
}

/// What a key may hold after the crash.
#[derive(Default, Clone)]
struct KeyState {
    /// `None`: absent (never written, or deleted).
    acked: Option<Vec<u8>>,
    /// The operation running when the crash came, if any: `Some(None)` a delete.
    in_flight: Option<Option<Vec<u8>>>,
}

fn value(rng: &mut SimRng) -> Vec<u8> {
    // Inline (<= 1000), one short stripe, several groups.
    let len = match rng.below(4) {
        0 => rng.below(1001),
        1 => 1001 + rng.below(15_000),
        _ => 16_000 + rng.below(60_000),
    } as usize;
    (0..len).map(|_| rng.next_u64() as u8).collect()
}

async fn put(l: &Rc<ObjectLayer<MemIo>>, key: &str, data: &[u8]) -> Result<(), ObjectError> {
    let mut w = l.writer("b", key, true)?;
    for c in data.chunks(5000) {
        w.write(c).await?;
    }
    let layout = w.finish().await?;
    let info = ObjectInfo {
        size: data.len() as u64,
        etag: String::new(),
        modified_ms: 0,
        headers: vec![],
        data: layout,
        parts: vec![],
    };
    l.commit_object("b", key, info, None).await.map(|_| ())
}

async fn read(l: &Rc<ObjectLayer<MemIo>>, key: &str) -> Result<Option<Vec<u8>>, ObjectError> {
    let m = match l.head("b", key) {
        Ok(m) => m,
        Err(ObjectError::NoSuchKey) => return Ok(None),
        Err(e) => return Err(e),
    };
    let r = l.reader("b", key, &m);
    let mut out = Vec::new();
    while (out.len() as u64) < m.info.size {
        let c = r.read(out.len() as u64, 1 << 20).await?;
        if c.is_empty() {
            return Err(ObjectError::Internal("short read".into()));
        }
        out.extend_from_slice(&c);
    }
    if let DataLayout::Inline(_) = m.info.data {
        assert!(m.info.size <= 1000, "only small objects are inline");
    }
    Ok(Some(out))
}

fn run_seed(seed: u64) -> Result<(u64, bool), String> {
    let mut rng = SimRng::new(seed);
    let io = MemIo::new(seed);
    let mut pool = LocalPool::new();
    let sp = pool.spawner();
    let state: Rc<RefCell<HashMap<String, KeyState>>> = Rc::default();
    pool.run_until(async {
        let l = open(&io, &sp).await?;
        l.create_bucket("b").await.map_err(|e| e.to_string())?;
        io.set_yield_percent(30);
        io.crash_at_op(1 + rng.below(700));
        let mut tasks = Vec::new();
        for c in 0..CLIENTS {
            let l = l.clone();
            let state = state.clone();
            let mut rng = SimRng::new(rng.next_u64());
            tasks.push(async move {
                for _ in 0..OPS_PER_CLIENT {
                    let key = format!("c{c}-k{}", rng.below(KEYS_PER_CLIENT as u64));
                    let op = if rng.chance(20) { None } else { Some(value(&mut rng)) };
                    state.borrow_mut().entry(key.clone()).or_default().in_flight = Some(op.clone());
                    let r = match &op {
                        Some(v) => put(&l, &key, v).await,
                        None => l.delete_object("b", &key).await.map(|_| ()),
                    };
                    if r.is_err() {
                        return; // the disk died under us: this op stays in flight
                    }
                    let mut st = state.borrow_mut();
                    let k = st.get_mut(&key).expect("inserted above");
                    k.acked = op;
                    k.in_flight = None;
                }
            });
        }
        futures::future::join_all(tasks).await;
        l.shutdown();
        Ok::<(), String>(())
    })?;
    let crashed = io.crashed();
    drop(pool);
    let image = io.crash_image(rng.next_u64());
    let mut pool = LocalPool::new();
    let sp = pool.spawner();
    pool.run_until(async {
        let l = open(&image, &sp).await?;
        let orphans = l.stats().orphans_removed;
        let expected: Vec<(String, KeyState)> = state.borrow().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        for (key, k) in &expected {
            let got = read(&l, key).await.map_err(|e| format!("{key}: read failed after recovery: {e}"))?;
            let ok = got == k.acked || k.in_flight.as_ref().is_some_and(|f| *f == got);
            if !ok {
                return Err(format!(
                    "{key}: holds {:?} bytes; acknowledged {:?}, in flight {:?}",
                    got.as_ref().map(|v| v.len()),
                    k.acked.as_ref().map(|v| v.len()),
                    k.in_flight.as_ref().map(|f| f.as_ref().map(|v| v.len()))
                ));
            }
        }
        l.shutdown();
        drop(l);
        // The first open swept every unreferenced piece: a second finds none.
        let l = open(&image, &sp).await?;
        if l.stats().orphans_removed != 0 {
            return Err(format!("{} orphan pieces left after the first sweep", l.stats().orphans_removed));
        }
        Ok((orphans, crashed))
    })
}

#[test]
fn objects_survive_crashes_whole_or_not_at_all() {
    let seeds: Vec<u64> = match std::env::var("TESSERA_SEED") {
        Ok(s) => vec![s.parse().expect("TESSERA_SEED is a number")],
        Err(_) => {
            let n = std::env::var("TESSERA_OBJECT_CRASH_ITERS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
            (1..=n).collect()
        }
    };
    let (mut crashes, mut swept) = (0, 0);
    for seed in seeds.iter().copied() {
        match run_seed(seed) {
            Ok((orphans, crashed)) => {
                crashes += crashed as u64;
                swept += orphans;
            }
            Err(e) => panic!(
                "seed {seed}: {e}\nreproduce with TESSERA_SEED={seed} cargo test -p tessera-engine --test object_crash"
            ),
        }
    }
    eprintln!("{} seeds, {crashes} crashed mid-workload, {swept} orphan pieces swept", seeds.len());
    if seeds.len() > 10 {
        assert!(crashes * 2 > seeds.len() as u64, "most seeds must crash mid-workload to test anything");
        assert!(swept > 0, "some crash must have left pieces without metadata");
    }
}
