//! The shard store and the runtime on the real backend: O_DIRECT files through
//! glommio's io_uring, in a temporary directory.
use std::path::Path;

use glommio::LocalExecutorBuilder;
use tessera_engine::io::glommio_io::GlommioIo;
use tessera_engine::runtime::{Request, Response, Runtime, RuntimeConfig, RuntimeError};
use tessera_engine::store::{Applied, StoreError};
use tessera_engine::{ShardKey, ShardStore, StoreConfig};

fn key(p: u32, o: u128) -> ShardKey {
    ShardKey { partition: p, object: o, piece: 1 }
}

fn value(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn cfg() -> StoreConfig {
    StoreConfig { segment_bytes: 4 << 20, ..StoreConfig::default() }
}

async fn open(dir: &Path) -> ShardStore<GlommioIo> {
    let (store, committer) = ShardStore::open(GlommioIo, dir, cfg()).await.expect("open");
    glommio::spawn_local(committer).detach();
    store
}

#[test]
fn store_cycle_on_real_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("drive0/core-0");
    LocalExecutorBuilder::default()
        .io_memory(1 << 20)
        .spawn(move || async move {
            let store = open(&dir).await;
            let sizes = [0usize, 1, 4095, 4096, 65_536, 65_537, 1 << 20, 3 << 20];
            let futs = sizes.iter().enumerate().map(|(i, &n)| {
                let store = &store;
                async move { store.put(key(i as u32, i as u128), &value(i as u64, n)).await }
            });
            for r in futures::future::join_all(futs).await {
                assert!(matches!(r.unwrap(), Applied::Written { .. }));
            }
            for (i, &n) in sizes.iter().enumerate() {
                let v = value(i as u64, n);
                assert_eq!(&store.get(key(i as u32, i as u128)).await.unwrap()[..], &v[..], "size {n}");
                if n > 70_000 {
                    let got = store.get_range(key(i as u32, i as u128), 65_530, 70_000).await.unwrap();
                    assert_eq!(&got[..], &v[65_530..135_530]);
                }
            }
            assert!(matches!(store.get_range(key(2, 2), 4000, 100).await, Err(StoreError::RangeOutOfBounds { .. })));
            assert!(matches!(store.get(key(99, 99)).await, Err(StoreError::NotFound(_))));
            assert!(matches!(store.delete(key(1, 1)).await.unwrap(), Applied::Written { .. }));
            store.checkpoint().await.unwrap();
            store.put(key(50, 50), &value(50, 10_000)).await.unwrap();
            store.close().await.unwrap();

            // Restart: checkpoint + replay.
            let store = open(&dir).await;
            assert!(store.recovery().from_checkpoint);
            assert_eq!(store.recovery().records_replayed, 1);
            assert!(matches!(store.get(key(1, 1)).await, Err(StoreError::NotFound(_))));
            assert_eq!(&store.get(key(50, 50)).await.unwrap()[..], &value(50, 10_000)[..]);
            for (i, &n) in sizes.iter().enumerate().filter(|(i, _)| *i != 1) {
                assert_eq!(&store.get(key(i as u32, i as u128)).await.unwrap()[..], &value(i as u64, n)[..]);
            }

            // Bitrot on the real file: flip a payload byte behind the store's back.
            let (path, rec_off, poff) = store.locate(key(6, 6)).unwrap();
            {
                use std::os::unix::fs::FileExt;
                let f = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
                let at = rec_off + poff + 300_000;
                let mut b = [0u8; 1];
                f.read_exact_at(&mut b, at).unwrap();
                f.write_all_at(&[!b[0]], at).unwrap();
                f.sync_all().unwrap();
            }
            assert!(matches!(store.get(key(6, 6)).await, Err(StoreError::Corrupt { .. })));
            // Blocks before the flipped one are still served.
            assert_eq!(&store.get_range(key(6, 6), 0, 65_536).await.unwrap()[..], &value(6, 1 << 20)[..65_536]);
            store.close().await.unwrap();
        })
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn runtime_routes_by_partition_and_survives_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let drives = vec![tmp.path().join("d0"), tmp.path().join("d1")];
    let rcfg = RuntimeConfig {
        cores: 2,
        drives: drives.clone(),
        store: cfg(),
        pin: false,
        io_memory_bytes: 1 << 20,
        inbox_max: 64,
        in_flight_max: 32,
        objects: None,
    };
    let rt = Runtime::start(rcfg.clone()).unwrap();
    assert_eq!(rt.report().recovered.len(), 4, "2 cores x 2 drives");
    let h = rt.handle();
    // Many writers from plain threads, each to its own keys.
    std::thread::scope(|s| {
        for t in 0..4u32 {
            let h = h.clone();
            s.spawn(move || {
                for i in 0..25u32 {
                    let p = t * 100 + i;
                    let data = value(p as u64, 1000 + (p as usize * 37) % 200_000);
                    let r = h.call_blocking(Request::Put { drive: (p % 2) as usize, key: key(p, p as u128), data });
                    assert!(matches!(r, Ok(Response::Applied(Applied::Written { .. }))), "{r:?}");
                }
            });
        }
    });
    // Each core stored exactly the partitions the routing function gives it.
    for core in 0..2 {
        let Ok(Response::Stats(stats)) = h.call_core_blocking(core, Request::Stats) else { panic!("stats") };
        let keys: usize = stats.iter().map(|s| s.keys).sum();
        let expect =
            (0..4u32).flat_map(|t| (0..25u32).map(move |i| t * 100 + i)).filter(|p| h.route(*p) == core).count();
        assert_eq!(keys, expect, "core {core}");
    }
    assert!(matches!(
        h.call_blocking(Request::Get { drive: 7, key: key(1, 1), offset: 0, len: None }),
        Err(RuntimeError::NoSuchDrive(7))
    ));
    drop(h);
    rt.stop().unwrap();

    // Fewer cores than the data was written with is refused, not silently wrong.
    let bad = RuntimeConfig { cores: 1, ..rcfg.clone() };
    assert!(matches!(Runtime::start(bad), Err(RuntimeError::Layout(_))));

    let rt = Runtime::start(rcfg).unwrap();
    assert!(rt.report().recovered.iter().all(|(_, _, r)| r.records_replayed > 0 || r.keys == 0));
    let h = rt.handle();
    for p in (0..4u32).flat_map(|t| (0..25u32).map(move |i| t * 100 + i)) {
        let r = h.call_blocking(Request::Get { drive: (p % 2) as usize, key: key(p, p as u128), offset: 0, len: None });
        let Ok(Response::Data(d)) = r else { panic!("get {p}: {r:?}") };
        assert_eq!(d, value(p as u64, 1000 + (p as usize * 37) % 200_000));
    }
    drop(h);
    rt.stop().unwrap();
}
