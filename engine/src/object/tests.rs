//! Object layer tests on the in-memory backend: coding, ranges, degraded reads,
//! corruption, recovery and garbage, listing, multipart.
use std::path::PathBuf;
use std::rc::Rc;

use futures::executor::LocalPool;
use futures::task::LocalSpawnExt;

use super::*;
use crate::io::memory::{MemIo, SimRng};
use crate::store::StoreConfig;

const DRIVES: usize = 6;

fn dep() -> Deployment {
    Deployment {
        set_id: 1,
        drives: DRIVES,
        k: 4,
        m: 2,
        codec: crate::erasure::default_kind(),
        partitions: 16,
        hash_key: 0x1234_5678_9abc_def0_1122_3344_5566_7788,
        chunk_bytes: 4096,
        group_stripes: 2,
        cores: 1,
    }
}

fn store_cfg() -> StoreConfig {
    StoreConfig { segment_bytes: 4 << 20, preallocate_step_bytes: 256 << 10, block_log2: 12, ..StoreConfig::default() }
}

fn dir(d: usize) -> PathBuf {
    PathBuf::from(format!("/d{d}/core-0"))
}

struct World {
    io: MemIo,
    offline: Vec<usize>,
}

impl World {
    async fn open(&self, spawner: &futures::executor::LocalSpawner) -> Rc<ObjectLayer<MemIo>> {
        let mut stores = Vec::new();
        for d in 0..DRIVES {
            if self.offline.contains(&d) {
                stores.push(None);
                continue;
            }
            let (s, c) = ShardStore::open(self.io.clone(), &dir(d), store_cfg()).await.unwrap();
            spawner.spawn_local(c).unwrap();
            stores.push(Some(s));
        }
        let (layer, deleter) =
            ObjectLayer::open(0, dep(), ObjectConfig { inline_bytes_max: 1000, ..Default::default() }, Rc::new(stores))
                .await
                .unwrap();
        spawner.spawn_local(deleter).unwrap();
        layer
    }
}

fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut r = SimRng::new(seed);
    (0..len).map(|_| r.next_u64() as u8).collect()
}

async fn put(l: &Rc<ObjectLayer<MemIo>>, key: &str, data: &[u8]) -> ObjectMeta {
    let mut w = l.writer("b", key, true).unwrap();
    for c in data.chunks(7000) {
        w.write(c).await.unwrap();
    }
    let layout = w.finish().await.unwrap();
    let info = ObjectInfo {
        size: data.len() as u64,
        etag: format!("\"{key}\""),
        modified_ms: 0,
        headers: vec![],
        data: layout,
        parts: vec![],
    };
    l.commit_object("b", key, info, None).await.unwrap()
}

async fn read_all(l: &Rc<ObjectLayer<MemIo>>, key: &str) -> ObjectResult<Vec<u8>> {
    let m = l.head("b", key)?;
    read_range(l, key, &m, 0, m.info.size).await
}

async fn read_range(l: &Rc<ObjectLayer<MemIo>>, key: &str, m: &ObjectMeta, a: u64, b: u64) -> ObjectResult<Vec<u8>> {
    let r = l.reader("b", key, m);
    let mut out = Vec::new();
    let mut pos = a;
    while pos < b {
        let c = r.read(pos, b - pos).await?;
        assert!(!c.is_empty(), "read made no progress at {pos}");
        pos += c.len() as u64;
        out.extend_from_slice(&c);
    }
    // The planned chunks cover the same bytes, each one read exactly.
    let mut planned = Vec::new();
    let mut expect = a;
    for (p, len) in r.chunks(a, b, 5000) {
        assert_eq!(p, expect, "chunks are contiguous");
        let c = r.read(p, len).await?;
        assert_eq!(c.len() as u64, len, "a planned chunk is one read");
        planned.extend_from_slice(&c);
        expect += len;
    }
    assert_eq!(expect, b.max(a));
    assert_eq!(planned, out);
    Ok(out)
}

fn run<T>(
    f: impl FnOnce(futures::executor::LocalSpawner) -> std::pin::Pin<Box<dyn std::future::Future<Output = T>>>,
) -> T {
    let mut pool = LocalPool::new();
    let sp = pool.spawner();
    pool.run_until(f(sp))
}

const SIZES: [usize; 9] = [0, 1, 1000, 1001, 4095, 16384, 16385, 40000, 100_003];

#[test]
fn sizes_ranges_and_restart() {
    let w = World { io: MemIo::new(1), offline: vec![] };
    run(|sp| {
        Box::pin(async move {
            let l = w.open(&sp).await;
            assert!(l.create_bucket("b").await.unwrap().is_some());
            assert!(l.create_bucket("b").await.unwrap().is_none());
            for (i, &n) in SIZES.iter().enumerate() {
                let data = bytes(i as u64, n);
                put(&l, &format!("k{i}"), &data).await;
                assert_eq!(read_all(&l, &format!("k{i}")).await.unwrap(), data, "size {n}");
                let m = l.head("b", &format!("k{i}")).unwrap();
                let mut r = SimRng::new(n as u64);
                for _ in 0..20 {
                    if n == 0 {
                        break;
                    }
                    let a = r.below(n as u64);
                    let b = a + 1 + r.below(n as u64 - a);
                    assert_eq!(
                        read_range(&l, &format!("k{i}"), &m, a, b).await.unwrap(),
                        &data[a as usize..b as usize]
                    );
                }
            }
            l.shutdown();
            drop(l);
            // Reopen from the same disks: everything is found again.
            let l = w.open(&sp).await;
            assert!(l.bucket_exists("b"));
            for (i, &n) in SIZES.iter().enumerate() {
                assert_eq!(read_all(&l, &format!("k{i}")).await.unwrap(), bytes(i as u64, n));
            }
        })
    });
}

/// Bodies arrive in runs of any size; each group's bytes are placed straight in
/// its data slots' pieces, a short last group is gathered back. Sizes around the
/// inline limit (1000) and the group (4 x 4096 x 2 = 32 KiB), each written in
/// runs of 1, 333, 7000 and 40000 bytes, and a first run below the inline limit
/// followed by big ones, read back whole and in ranges crossing the groups.
#[test]
fn any_run_sizes_around_inline_and_group_bounds() {
    let w = World { io: MemIo::new(3), offline: vec![] };
    run(|sp| {
        Box::pin(async move {
            let l = w.open(&sp).await;
            l.create_bucket("b").await.unwrap();
            let group = 4 * 4096 * 2;
            for (i, n) in
                [999, 1000, 1001, group - 1, group, group + 1, 2 * group, 2 * group + 4097].into_iter().enumerate()
            {
                let data = bytes(100 + i as u64, n);
                for runs in [vec![1], vec![333], vec![7000], vec![40000], vec![500, 40000, 1, 9000]] {
                    let key = format!("r{i}-{}", runs[0]);
                    let mut wr = l.writer("b", &key, true).unwrap();
                    let (mut at, mut r) = (0, 0);
                    while at < n {
                        let len = runs[r % runs.len()].min(n - at);
                        wr.write(&data[at..at + len]).await.unwrap();
                        at += len;
                        r += 1;
                    }
                    assert_eq!(wr.size(), n as u64);
                    let layout = wr.finish().await.unwrap();
                    assert_eq!(matches!(layout, DataLayout::Inline(_)), n <= 1000, "size {n}");
                    let info = ObjectInfo {
                        size: n as u64,
                        etag: "\"e\"".into(),
                        modified_ms: 0,
                        headers: vec![],
                        data: layout,
                        parts: vec![],
                    };
                    let m = l.commit_object("b", &key, info, None).await.unwrap();
                    assert_eq!(read_all(&l, &key).await.unwrap(), data, "size {n} runs {runs:?}");
                    let (a, b) = (n / 3, (n - n / 5).max(n / 3));
                    assert_eq!(read_range(&l, &key, &m, a as u64, b as u64).await.unwrap(), &data[a..b]);
                }
            }
        })
    });
}

#[test]
fn degraded_reads_and_too_many_drives_lost() {
    let io = MemIo::new(2);
    let data = bytes(9, 100_000);
    let small = bytes(10, 500);
    run(|sp| {
        let io = io.clone();
        let (data, small) = (data.clone(), small.clone());
        Box::pin(async move {
            let w = World { io: io.clone(), offline: vec![] };
            let l = w.open(&sp).await;
            l.create_bucket("b").await.unwrap();
            put(&l, "big", &data).await;
            put(&l, "small", &small).await;
            l.shutdown();
            drop(l);
            for lost in [vec![0, 3], vec![1, 2], vec![4, 5]] {
                let w = World { io: io.clone(), offline: lost.clone() };
                let l = w.open(&sp).await;
                assert_eq!(read_all(&l, "big").await.unwrap(), data, "lost {lost:?}");
                assert_eq!(read_all(&l, "small").await.unwrap(), small, "lost {lost:?}");
                l.shutdown();
            }
            // Writes with m drives down still work, and read back with them still down.
            let w = World { io: io.clone(), offline: vec![0, 5] };
            let l = w.open(&sp).await;
            let fresh = bytes(11, 50_000);
            put(&l, "fresh", &fresh).await;
            assert_eq!(read_all(&l, "fresh").await.unwrap(), fresh);
            l.shutdown();
            drop(l);
            let w = World { io: io.clone(), offline: vec![0, 1, 5] };
            let l = w.open(&sp).await;
            assert!(matches!(read_all(&l, "big").await, Err(ObjectError::Unavailable(_))));
            let mut wr = l.writer("b", "x", true).unwrap();
            assert!(matches!(wr.write(&data).await, Err(ObjectError::Unavailable(_))));
        })
    });
}

#[test]
fn corrupt_piece_is_rebuilt() {
    let io = MemIo::new(3);
    let data = bytes(5, 60_000);
    run(|sp| {
        let io = io.clone();
        let data = data.clone();
        Box::pin(async move {
            let w = World { io: io.clone(), offline: vec![] };
            let l = w.open(&sp).await;
            l.create_bucket("b").await.unwrap();
            put(&l, "obj", &data).await;
            // Flip bytes inside a data piece: find its record through the store.
            let m = l.head("b", "obj").unwrap();
            let DataLayout::Extents(e) = &m.info.data else { panic!() };
            let e = e[0];
            let slot = 1;
            let d = e.geometry.drive_of(slot);
            let key = piece_key(l.dep.partition_of("b", "obj"), e.data_id, 0, slot);
            let (path, off, _len) = l.stores[d].as_ref().unwrap().locate(key).unwrap();
            io.corrupt(&path, off + 4096 + 100, 8);
            assert_eq!(read_all(&l, "obj").await.unwrap(), data);
            assert!(l.stats().degraded_reads > 0);
        })
    });
}

#[test]
fn overwrite_delete_and_orphans_free_space() {
    let io = MemIo::new(4);
    run(|sp| {
        let io = io.clone();
        Box::pin(async move {
            let w = World { io: io.clone(), offline: vec![] };
            let l = w.open(&sp).await;
            l.create_bucket("b").await.unwrap();
            let keys_on_disk = |l: &Rc<ObjectLayer<MemIo>>| -> usize {
                l.stores.iter().map(|s| s.as_ref().unwrap().stats().keys).sum()
            };
            put(&l, "a", &bytes(1, 50_000)).await;
            let after_one = keys_on_disk(&l);
            put(&l, "a", &bytes(2, 50_000)).await;
            futures_lite::future::yield_now().await;
            for _ in 0..50 {
                futures_lite::future::yield_now().await;
            }
            assert_eq!(keys_on_disk(&l), after_one, "the replaced version's pieces are deleted");
            assert_eq!(read_all(&l, "a").await.unwrap(), bytes(2, 50_000));
            // A reader holds its version's data against deletion.
            let m = l.head("b", "a").unwrap();
            let r = l.reader("b", "a", &m);
            assert!(l.delete_object("b", "a").await.unwrap());
            assert!(matches!(l.head("b", "a"), Err(ObjectError::NoSuchKey)));
            for _ in 0..50 {
                futures_lite::future::yield_now().await;
            }
            assert_eq!(r.read(0, 50_000).await.unwrap().len(), 16384);
            drop(r);
            for _ in 0..50 {
                futures_lite::future::yield_now().await;
            }
            // Data written but never committed (a crash) is swept on open.
            let mut wr = l.writer("b", "orphan", true).unwrap();
            wr.write(&bytes(3, 40_000)).await.unwrap();
            std::mem::forget(wr);
            l.shutdown();
            drop(l);
            let l = w.open(&sp).await;
            assert!(l.stats().orphans_removed > 0);
            assert!(matches!(l.head("b", "a"), Err(ObjectError::NoSuchKey)));
        })
    });
}

#[test]
fn listing_with_prefix_delimiter_and_after() {
    let io = MemIo::new(5);
    run(|sp| {
        let io = io.clone();
        Box::pin(async move {
            let l = World { io, offline: vec![] }.open(&sp).await;
            l.create_bucket("b").await.unwrap();
            for k in ["a/1", "a/2", "a/b/3", "b", "c/x", "c/y", "d"] {
                put(&l, k, b"x").await;
            }
            let names = |v: Vec<ListItem>| v.iter().map(|i| i.name().to_string()).collect::<Vec<_>>();
            assert_eq!(names(l.list("b", "", Some("/"), None, 100).unwrap()), ["a/", "b", "c/", "d"]);
            assert_eq!(names(l.list("b", "a/", Some("/"), None, 100).unwrap()), ["a/1", "a/2", "a/b/"]);
            assert_eq!(names(l.list("b", "", Some("/"), Some("a/"), 2).unwrap()), ["b", "c/"]);
            assert_eq!(names(l.list("b", "", None, Some("a/2"), 3).unwrap()), ["a/b/3", "b", "c/x"]);
            assert_eq!(names(l.list("b", "c", None, None, 100).unwrap()), ["c/x", "c/y"]);
            assert!(matches!(l.list("nope", "", None, None, 1), Err(ObjectError::NoSuchBucket)));
        })
    });
}

#[test]
fn multipart_complete_abort_and_restart() {
    let io = MemIo::new(6);
    run(|sp| {
        let io = io.clone();
        Box::pin(async move {
            let w = World { io: io.clone(), offline: vec![] };
            let l = w.open(&sp).await;
            l.create_bucket("b").await.unwrap();
            let id = l.create_upload("b", "mp", vec![("content-type".into(), "video/mp4".into())]).await.unwrap();
            let parts = [bytes(20, 30_000), bytes(21, 30_000), bytes(22, 777)];
            for (i, p) in parts.iter().enumerate() {
                let mut wr = l.writer("b", "mp", false).unwrap();
                wr.write(p).await.unwrap();
                let extent = wr.finish_part().await.unwrap();
                let info = PartInfo {
                    size: p.len() as u64,
                    etag: format!("\"p{i}\""),
                    modified_ms: 0,
                    checksums: vec![],
                    extent,
                };
                l.commit_part("b", "mp", &id, i as u32 + 1, info).await.unwrap();
            }
            l.shutdown();
            drop(l);
            // Upload state survives a restart.
            let l = w.open(&sp).await;
            assert_eq!(l.parts("b", "mp", &id).unwrap().len(), 3);
            assert_eq!(l.list_uploads("b", "", None, None, 10).unwrap().len(), 1);
            let meta = l
                .complete_upload(
                    "b",
                    "mp",
                    &id,
                    &[1, 2, 3],
                    |u, ps| {
                        assert_eq!(ps.len(), 3);
                        Ok(ObjectInfo {
                            size: 0,
                            etag: "\"x-3\"".into(),
                            modified_ms: 0,
                            headers: u.headers.clone(),
                            data: DataLayout::Inline(vec![]),
                            parts: vec![],
                        })
                    },
                    None,
                )
                .await
                .unwrap();
            assert_eq!(meta.info.size, 60_777);
            let want: Vec<u8> = parts.concat();
            assert_eq!(read_all(&l, "mp").await.unwrap(), want);
            assert!(matches!(l.parts("b", "mp", &id), Err(ObjectError::NoSuchUpload)));
            // Abort drops parts.
            let id2 = l.create_upload("b", "mp2", vec![]).await.unwrap();
            l.abort_upload("b", "mp2", &id2).await.unwrap();
            assert!(matches!(l.abort_upload("b", "mp2", &id2).await, Err(ObjectError::NoSuchUpload)));
            l.shutdown();
            drop(l);
            let l = w.open(&sp).await;
            assert_eq!(read_all(&l, "mp").await.unwrap(), want);
            assert!(l.list_uploads("b", "", None, None, 10).unwrap().is_empty());
        })
    });
}

#[test]
fn conditional_commit() {
    let io = MemIo::new(7);
    run(|sp| {
        let io = io.clone();
        Box::pin(async move {
            let l = World { io, offline: vec![] }.open(&sp).await;
            l.create_bucket("b").await.unwrap();
            let absent = |cur: Option<&ObjectInfo>| cur.is_none();
            let mk = || ObjectInfo {
                size: 0,
                etag: "\"e\"".into(),
                modified_ms: 0,
                headers: vec![],
                data: DataLayout::Inline(vec![]),
                parts: vec![],
            };
            l.commit_object("b", "c", mk(), Some(&absent)).await.unwrap();
            assert!(matches!(
                l.commit_object("b", "c", mk(), Some(&absent)).await,
                Err(ObjectError::PreconditionFailed)
            ));
            assert!(matches!(l.commit_object("nob", "c", mk(), None).await, Err(ObjectError::NoSuchBucket)));
        })
    });
}
