//! Put / get / range / delete / restart on the in-memory backend, bad input, and
//! the checkpoint + replay cycle.
mod common;

use std::path::Path;

use common::{key, open, run, small_cfg, value};
use tessera_engine::format::FormatError;
use tessera_engine::io::memory::MemIo;
use tessera_engine::store::StoreError;
use tessera_engine::{Applied, StoreConfig};

const DIR: &str = "/d0/core0";

#[test]
fn put_get_range_delete_restart() {
    run(|sp| async move {
        let io = MemIo::new(1);
        let dir = Path::new(DIR);
        let store = open(&io, dir, small_cfg(), &sp).await.unwrap();
        let mut expect = Vec::new();
        for i in 0..40u128 {
            let k = key(i as u32 % 4, i);
            let v = value(k, 1, 50_000);
            assert!(matches!(store.put(k, &v).await.unwrap(), Applied::Written { .. }));
            expect.push((k, v));
        }
        for (k, v) in &expect {
            assert_eq!(&store.get(*k).await.unwrap()[..], &v[..]);
            // Ranges that start and end inside, across and on block boundaries.
            for (off, len) in [(0u64, 1u64), (4095, 2), (4096, 4096), (100, 9000), (v.len() as u64, 0)] {
                if off + len <= v.len() as u64 {
                    let got = store.get_range(*k, off, len).await.unwrap();
                    assert_eq!(&got[..], &v[off as usize..(off + len) as usize], "range {off}+{len}");
                }
            }
        }
        // Overwrite some, delete some.
        for (i, (k, v)) in expect.iter_mut().enumerate() {
            if i % 3 == 0 {
                *v = value(*k, 2, 30_000);
                store.put(*k, v).await.unwrap();
            }
        }
        for (k, _) in expect.iter().skip(1).step_by(5) {
            assert!(matches!(store.delete(*k).await.unwrap(), Applied::Written { .. }));
            assert_eq!(store.delete(*k).await.unwrap(), Applied::Skipped, "second delete is a no-op");
        }
        let deleted: Vec<_> = expect.iter().skip(1).step_by(5).map(|(k, _)| *k).collect();
        store.close().await.unwrap();

        let store = open(&io, dir, small_cfg(), &sp).await.unwrap();
        assert!(!store.recovery().from_checkpoint);
        for (k, v) in &expect {
            if deleted.contains(k) {
                assert!(matches!(store.get(*k).await, Err(StoreError::NotFound(_))));
            } else {
                assert_eq!(&store.get(*k).await.unwrap()[..], &v[..]);
            }
        }
        let listed = store.list_partition(1);
        assert!(listed.windows(2).all(|w| w[0].0 < w[1].0), "partition listing is ordered");
        assert_eq!(listed.len(), expect.iter().filter(|(k, _)| k.partition == 1 && !deleted.contains(k)).count());
        store.close().await.unwrap();
    });
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    run(|sp| async move {
        let io = MemIo::new(2);
        let store = open(&io, Path::new(DIR), small_cfg(), &sp).await.unwrap();
        let k = key(0, 1);
        assert!(matches!(store.get(k).await, Err(StoreError::NotFound(_))));
        assert!(matches!(store.get_range(k, 0, 1).await, Err(StoreError::NotFound(_))));
        store.put(k, &[7u8; 1000]).await.unwrap();
        for (off, len) in [(0u64, 1001u64), (1000, 1), (u64::MAX, 2), (5, u64::MAX)] {
            assert!(
                matches!(store.get_range(k, off, len).await, Err(StoreError::RangeOutOfBounds { size: 1000, .. })),
                "range {off}+{len}"
            );
        }
        let too_big = vec![0u8; store.config().payload_bytes_max() as usize + 1];
        assert!(matches!(store.put(k, &too_big).await, Err(StoreError::TooLarge { .. })));
        // The store is unharmed.
        assert_eq!(&store.get(k).await.unwrap()[..], &[7u8; 1000][..]);
        store.close().await.unwrap();

        let bad = StoreConfig { segment_bytes: 5000, ..small_cfg() };
        assert!(matches!(open(&io, Path::new("/d1"), bad, &sp).await, Err(StoreError::Config(_))));
        let bad = StoreConfig { block_log2: 3, ..small_cfg() };
        assert!(matches!(open(&io, Path::new("/d1"), bad, &sp).await, Err(StoreError::Config(_))));
    });
}

#[test]
fn corrupt_header_on_disk_is_reported() {
    run(|sp| async move {
        let io = MemIo::new(3);
        let dir = Path::new(DIR);
        let store = open(&io, dir, small_cfg(), &sp).await.unwrap();
        let (a, b) = (key(0, 1), key(0, 2));
        store.put(a, &value(a, 1, 9000)).await.unwrap();
        store.put(b, &value(b, 1, 9000)).await.unwrap();
        let (path, off, _) = store.locate(a).unwrap();
        io.corrupt(&path, off + 9, 1); // inside the seq field
        match store.get(a).await {
            Err(StoreError::Corrupt { reason: FormatError::HeaderChecksum, .. }) => {}
            other => panic!("expected a header checksum error, got {:?}", other.map(|r| r.len())),
        }
        assert_eq!(&store.get(b).await.unwrap()[..], &value(b, 1, 9000)[..]);
        store.close().await.unwrap();
    });
}

#[test]
fn checkpoint_then_replay() {
    run(|sp| async move {
        let io = MemIo::new(4);
        let dir = Path::new(DIR);
        let store = open(&io, dir, small_cfg(), &sp).await.unwrap();
        let keys: Vec<_> = (0..60u128).map(|i| key(i as u32 % 5, i)).collect();
        for k in &keys {
            store.put(*k, &value(*k, 1, 20_000)).await.unwrap();
        }
        store.checkpoint().await.unwrap();
        // After the checkpoint: overwrites, deletes and new keys, across segments.
        for k in keys.iter().step_by(2) {
            store.put(*k, &value(*k, 2, 20_000)).await.unwrap();
        }
        for k in keys.iter().step_by(7) {
            store.delete(*k).await.unwrap();
        }
        let extra: Vec<_> = (100..130u128).map(|i| key(9, i)).collect();
        for k in &extra {
            store.put(*k, &value(*k, 1, 20_000)).await.unwrap();
        }
        let before = store.stats();
        drop(store); // no close: the image below is what a power cut leaves

        let io2 = io.crash_image(44);
        let store = open(&io2, dir, small_cfg(), &sp).await.unwrap();
        let rec = store.recovery();
        assert!(rec.from_checkpoint, "{rec:?}");
        let after_cp = 30 + 9 + 30;
        assert_eq!(rec.records_replayed, after_cp, "only records after the checkpoint are replayed");
        assert_eq!(store.stats().keys, before.keys);
        for (i, k) in keys.iter().enumerate() {
            let got = store.get(*k).await;
            if i % 7 == 0 {
                assert!(matches!(got, Err(StoreError::NotFound(_))));
            } else {
                let ver = if i % 2 == 0 { 2 } else { 1 };
                assert_eq!(&got.unwrap()[..], &value(*k, ver, 20_000)[..], "key {i}");
            }
        }
        for k in &extra {
            assert_eq!(&store.get(*k).await.unwrap()[..], &value(*k, 1, 20_000)[..]);
        }
        store.close().await.unwrap();

        // A corrupt checkpoint is ignored and the index rebuilt from every record.
        io2.corrupt(&dir.join("checkpoint.tck"), 70, 4);
        let store = open(&io2, dir, small_cfg(), &sp).await.unwrap();
        assert!(!store.recovery().from_checkpoint);
        assert_eq!(store.stats().keys, before.keys);
        for k in &extra {
            assert_eq!(&store.get(*k).await.unwrap()[..], &value(*k, 1, 20_000)[..]);
        }
        store.close().await.unwrap();
    });
}

#[test]
fn damaged_segment_header_over_records_is_refused_not_deleted() {
    run(|sp| async move {
        let k = key(0, 1);
        let segs = |io: &MemIo| -> Vec<std::path::PathBuf> {
            let mut v: Vec<_> =
                io.files_in(Path::new(DIR)).into_iter().filter(|p| p.to_string_lossy().ends_with(".tsg")).collect();
            v.sort();
            v
        };
        // A: the newest segment holds k's record and its header is damaged: refused,
        // and the file is kept.
        let io = MemIo::new(6);
        let store = open(&io, Path::new(DIR), small_cfg(), &sp).await.unwrap();
        store.put(k, &value(k, 1, 5000)).await.unwrap();
        store.close().await.unwrap();
        let seg1 = segs(&io)[0].clone();
        let io_a = io.crash_image(1);
        io_a.corrupt(&seg1, 10, 1);
        match open(&io_a, Path::new(DIR), small_cfg(), &sp).await {
            Err(StoreError::Layout { reason, .. }) => assert!(reason.contains("records follow"), "{reason}"),
            other => panic!("expected a refusal, got {:?}", other.map(|s| s.stats())),
        }
        assert_eq!(segs(&io_a), vec![seg1.clone()], "nothing deleted");

        // B: an empty newest segment (another open, no writes) with a torn header
        // is a cut-short creation: cleaned up, and k is still there.
        let store = open(&io, Path::new(DIR), small_cfg(), &sp).await.unwrap();
        store.close().await.unwrap();
        let both = segs(&io);
        assert_eq!(both.len(), 2);
        let io_b = io.crash_image(2);
        io_b.corrupt(&both[1], 10, 1);
        let store = open(&io_b, Path::new(DIR), small_cfg(), &sp).await.unwrap();
        assert_eq!(&store.get(k).await.unwrap()[..], &value(k, 1, 5000)[..]);
        store.close().await.unwrap();

        // C: a damaged header on an older segment is refused too.
        let io_c = io.crash_image(3);
        io_c.corrupt(&seg1, 10, 1);
        assert!(matches!(open(&io_c, Path::new(DIR), small_cfg(), &sp).await, Err(StoreError::Corrupt { .. })));
        assert!(segs(&io_c).contains(&seg1));
    });
}
