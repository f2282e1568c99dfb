mod common;

use std::path::Path;

use common::{key, open, run, small_cfg, value};
use tessera_engine::io::memory::MemIo;
use tessera_engine::store::Applied;

/// R1: damage in a record that is not the last of its group commit. The first
/// valid record after it belongs to the same batch (batch_seq == failed_seq), so
/// recovery calls it a torn tail and drops every later record of the segment,
/// although a later, durable batch follows.
#[test]
fn damage_in_multi_record_batch_keeps_later_acked_batches() {
    run(|sp| async move {
        let io = MemIo::new(1);
        let dir = Path::new("/d");
        let cfg = small_cfg();
        let store = open(&io, dir, cfg.clone(), &sp).await.unwrap();
        let ks: Vec<_> = (0..4u128).map(|i| key(0, i)).collect();
        // One group commit of 4 records (queued before the committer runs).
        let vals: Vec<_> = ks.iter().map(|k| value(*k, 1, 9000)).collect();
        let puts = ks.iter().zip(&vals).map(|(k, v)| store.put(*k, v));
        let rs = futures::future::join_all(puts).await;
        let seqs: Vec<_> = rs.into_iter().map(|r| r.unwrap()).collect();
        println!("first batch seqs: {seqs:?}, batches: {}", store.stats().batches);
        // A later, separate, acknowledged batch.
        let later = key(1, 99);
        store.put(later, b"later batch").await.unwrap();
        assert_eq!(store.stats().batches, 2, "four puts in one batch, then one");
        let (path, rec_off, poff) = store.locate(ks[0]).unwrap();
        drop(store);
        // Bitrot in the payload of the first record of the first batch.
        io.corrupt(&path, rec_off + poff + 10, 1);
        let store = open(&io, dir, cfg, &sp).await.unwrap();
        println!("recovery: {:?}", store.recovery());
        for k in &ks[1..] {
            assert!(store.get(*k).await.is_ok(), "acked, intact record {k:?} lost after damage to another record");
        }
        assert_eq!(&store.get(later).await.expect("later acked batch lost")[..], b"later batch");
    });
}

/// R2: a batch spans a roll-over (A -> B); a later batch follows in B. Damage to
/// the last record in A: first_batch_seq_after looks only at B's *first* record,
/// which is of the same batch, so the damage is taken for a torn tail.
#[test]
fn damage_before_roll_over_in_spanning_batch_is_not_a_torn_tail() {
    run(|sp| async move {
        let io = MemIo::new(2);
        let dir = Path::new("/d");
        let cfg = small_cfg(); // 2 MiB segments
        let store = open(&io, dir, cfg.clone(), &sp).await.unwrap();
        let old = key(0, 1);
        store.put(old, b"old version").await.unwrap();
        // Fill the head close to its end with one-record batches.
        for i in 0..3u128 {
            store.put(key(2, i), &vec![i as u8; 600_000]).await.unwrap();
        }
        // One batch: a new version of `old` (fits in A), then a record that does not fit (rolls to B).
        let big = vec![7u8; 500_000];
        let (a, b) = futures::join!(store.put(old, b"new version"), store.put(key(3, 0), &big));
        a.unwrap();
        b.unwrap();
        assert_eq!(store.stats().segments, 2);
        store.put(key(4, 0), b"a later batch in B").await.unwrap();
        let (path, rec_off, _) = store.locate(old).unwrap();
        let (path_b, _, _) = store.locate(key(4, 0)).unwrap();
        assert_ne!(path, path_b, "setup: `old`'s new version is in A, the later batch in B");
        drop(store);
        io.corrupt(&path, rec_off + 70, 1); // damage the crc table/header
        let store = open(&io, dir, cfg, &sp).await.unwrap();
        println!("recovery: {:?}", store.recovery());
        match store.get(old).await {
            Ok(b) => assert_ne!(&b[..], b"old version", "acked overwrite dropped: stale version served"),
            Err(e) => println!("read error (acceptable): {e}"),
        }
    });
}

/// R3: two deletes of the same key in one batch: the second is answered
/// `Ok(Skipped)` before the first is durable. Here the first one's write dies
/// with the process; after the restart the key is still there although a delete
/// of it returned Ok.
#[test]
fn skipped_reply_waits_for_the_batch_to_be_durable() {
    let mut violations = 0;
    for seed in 0..20u64 {
        violations += run(|sp| async move {
            let io = MemIo::new(3);
            let dir = Path::new("/d");
            let store = open(&io, dir, small_cfg(), &sp).await.unwrap();
            let k = key(0, 1);
            store.put(k, b"v1").await.unwrap();
            io.crash_at_op(1); // the next IO (the tombstone's write) fails: the process dies
            let (d1, d2) = futures::join!(store.delete(k), store.delete(k));
            assert!(d1.is_err());
            drop(store);
            let io = io.crash_image(seed);
            let store = open(&io, dir, small_cfg(), &sp).await.unwrap();
            let present = store.get(k).await.is_ok();
            (matches!(d2, Ok(Applied::Skipped)) && present) as u32
        });
    }
    assert_eq!(violations, 0, "delete acknowledged Ok(Skipped) but the key is present after restart");
}

/// R4: compaction removes a non-head segment that a batch spanning a roll-over is
/// still writing into; the committer then panics on `st.segments[id]` (sync) or
/// `expect("placed in a live segment")` (apply). Without the panic, an acked
/// record would point into a deleted file.
#[test]
fn compaction_during_spanning_batch_keeps_the_segment() {
    let mut panics = Vec::new();
    for seed in 0..50u64 {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run(|sp| async move {
                let io = MemIo::new(seed);
                let dir = Path::new("/d");
                let cfg = small_cfg();
                let max = cfg.payload_bytes_max() as usize;
                let store = open(&io, dir, cfg.clone(), &sp).await.unwrap();
                io.set_yield_percent(20 + seed % 80);
                let a = key(1, 1);
                let b = key(1, 2);
                let big = vec![0xBB; max];
                let compactor = async {
                    while store.stats().segments < 2 {
                        futures_lite::future::yield_now().await;
                    }
                    store.compact().await
                };
                // One batch: `a` goes into segment 1, `b` does not fit behind it and rolls to segment 2.
                let (ra, rb, _rc) = futures::join!(store.put(a, &[0xAA; 1000]), store.put(b, &big), compactor);
                ra.unwrap();
                rb.unwrap();
                assert_eq!(&store.get(a).await.unwrap()[..], &[0xAA; 1000][..]);
            })
        }));
        if r.is_err() {
            panics.push(seed);
        }
    }
    assert!(panics.is_empty(), "panicked for seeds {panics:?}");
}

/// R5: a record found by probing after a failed record may lie inside a payload.
/// A payload carrying a well-formed record (here a tombstone for another key,
/// with a large seq/batch_seq) is taken as "a later batch", the failure is
/// classified as damage, and the scan resumes at the forged record.
#[test]
fn forged_record_inside_payload_is_never_replayed() {
    for knows_salt in [false, true] {
        forged_record_case(knows_salt);
    }
}

fn forged_record_case(knows_salt: bool) {
    use tessera_engine::format::{build_record, record_len, seal_record, RecordKind, RECORD_HEADER_BYTES};
    run(|sp| async move {
        let io = MemIo::new(5);
        let dir = Path::new("/d");
        let cfg = small_cfg(); // block_log2 = 12
        let store = open(&io, dir, cfg.clone(), &sp).await.unwrap();
        let victim = key(9, 9);
        store.put(victim, b"someone else's data").await.unwrap();
        // The attacker's payload: n blocks of 4 KiB; the payload starts at
        // 64 + 4*n in the record, so put the forged record at payload offset
        // 4096 - (64 + 4*n) + 4096 (the record's second page).
        let plen = 64 * 4096usize;
        let n = plen / 4096;
        let poff = RECORD_HEADER_BYTES + 4 * n;
        let mut payload = vec![0x11u8; plen];
        // The segment's salt is random; an insider who read it off the disk is the
        // worst case (then only "never probe inside an intact record" protects).
        let (seg_path, _, _) = store.locate(victim).unwrap();
        let salt = if knows_salt { segment_salt(&io, &seg_path).await } else { 0 };
        let mut fake = vec![0u8; record_len(0, 12) as usize];
        build_record(&mut fake, RecordKind::Tombstone, victim, &[], 12);
        seal_record(&mut fake, 1 << 40, 1 << 40, salt);
        let at = 2 * 4096 - poff;
        payload[at..at + 4096].copy_from_slice(&fake);
        let attacker = key(1, 1);
        store.put(attacker, &payload).await.unwrap();
        let (path, rec_off, p) = store.locate(attacker).unwrap();
        assert_eq!(p as usize, poff);
        drop(store);
        // Any failure of the attacker's record (a torn write in a crash, or bitrot) triggers the probe.
        io.corrupt(&path, rec_off + p + 40 * 4096, 1);
        let store = open(&io, dir, cfg, &sp).await.unwrap();
        println!("recovery: {:?}", store.recovery());
        assert!(store.get(victim).await.is_ok(), "victim deleted by a tombstone forged inside another key's payload");
    });
}

async fn segment_salt(io: &MemIo, path: &Path) -> u64 {
    use tessera_engine::io::{Io, IoFile, OpenMode};
    let f = io.open(path, OpenMode::ReadOnly).await.unwrap();
    let page = f.read_at(0, 4096).await.unwrap();
    u64::from_le_bytes(page[48..56].try_into().unwrap())
}

#[test]
fn get_range_edges_exhaustive() {
    run(|sp| async move {
        for block_log2 in [12u8, 13] {
            let io = MemIo::new(6);
            let cfg = tessera_engine::StoreConfig { block_log2, ..small_cfg() };
            let store = open(&io, Path::new("/d"), cfg, &sp).await.unwrap();
            let b = 1u64 << block_log2;
            let n = |s: u64| s.div_ceil(b);
            let mut sizes = vec![0u64, 1, 63, 64, b - 1, b, b + 1, 2 * b, 3 * b + 5];
            // sizes where header+table+payload ends exactly on a page
            for s in 1..5 * b {
                if (64 + 4 * n(s) + s) % 4096 == 0 && sizes.len() < 14 {
                    sizes.push(s);
                }
            }
            for (i, &size) in sizes.iter().enumerate() {
                let k = key(7, i as u128);
                let v: Vec<u8> = (0..size).map(|x| (x * 7 + i as u64) as u8).collect();
                store.put(k, &v).await.unwrap();
                let mut points: Vec<u64> = vec![0, 1.min(size), size.saturating_sub(1), size];
                for m in 1..=4 {
                    for d in [0i64, -1, 1] {
                        let p = (m * b) as i64 + d;
                        if p >= 0 && (p as u64) <= size {
                            points.push(p as u64);
                        }
                    }
                }
                for &o in &points {
                    for &e in &points {
                        if e <= o {
                            continue;
                        }
                        let got = store
                            .get_range(k, o, e - o)
                            .await
                            .unwrap_or_else(|er| panic!("size {size} {o}..{e}: {er}"));
                        assert_eq!(&got[..], &v[o as usize..e as usize], "size {size} {o}..{e}");
                    }
                }
                assert!(store.get_range(k, size, 1).await.is_err());
                assert!(store.get_range(k, u64::MAX, 2).await.is_err());
            }
        }
    });
}

/// R6: an empty range at the end of a piece (or anywhere the in-block offset
/// reaches past the first page read) panics in `ReadBuf::slice`.
#[test]
fn get_range_empty_at_end_is_empty() {
    run(|sp| async move {
        let io = MemIo::new(7);
        let store = open(&io, Path::new("/d"), small_cfg(), &sp).await.unwrap(); // block_log2 = 12
        let k = key(0, 1);
        store.put(k, &vec![1u8; 4095]).await.unwrap();
        // What runtime's Request::Get { offset: 4095, len: None } computes: len = size - offset = 0.
        let r = store.get_range(k, 4095, 0).await;
        assert_eq!(r.unwrap().len(), 0);
    });
}

/// Two damaged records in one batch: the second failure must not end the search
/// for a later batch, or acknowledged later writes roll back to older versions.
#[test]
fn two_damaged_records_in_one_batch_keep_later_acked_batches() {
    run(|sp| async move {
        let io = MemIo::new(11);
        let dir = Path::new("/d");
        let cfg = small_cfg();
        let store = open(&io, dir, cfg.clone(), &sp).await.unwrap();
        let k = key(5, 5);
        store.put(k, b"version 1").await.unwrap();
        let ks: Vec<_> = (0..3u128).map(|i| key(0, i)).collect();
        let vals: Vec<Vec<u8>> = ks.iter().map(|k| value(*k, 1, 9000).into_iter().chain([1u8]).collect()).collect();
        for r in futures::future::join_all(ks.iter().zip(&vals).map(|(k, v)| store.put(*k, v))).await {
            r.unwrap();
        }
        store.put(k, b"version 2").await.unwrap();
        assert_eq!(store.stats().batches, 3, "one, three in one batch, one");
        let (p0, o0, q0) = store.locate(ks[0]).unwrap();
        let (p2, o2, q2) = store.locate(ks[2]).unwrap();
        drop(store);
        io.corrupt(&p0, o0 + q0 + 1, 1);
        io.corrupt(&p2, o2 + q2 + 1, 1);
        let store = open(&io, dir, cfg, &sp).await.unwrap();
        assert_eq!(&store.get(k).await.expect("k lost")[..], b"version 2", "{:?}", store.recovery());
        assert_eq!(&store.get(ks[1]).await.unwrap()[..], &vals[1][..]);
        assert_eq!(store.recovery().damaged_records, 2);
    });
}

/// A store written in an older format (here: version-1 headers, crcs without the
/// salt) is refused loudly, never read as empty and compacted away.
#[test]
fn older_format_is_refused_not_deleted() {
    use tessera_engine::format::{decode_header, RECORD_HEADER_BYTES};
    use tessera_engine::io::{Io, IoFile, OpenMode};
    run(|sp| async move {
        let io = MemIo::new(12);
        let dir = Path::new("/d");
        let cfg = small_cfg();
        let store = open(&io, dir, cfg.clone(), &sp).await.unwrap();
        for i in 0..20u128 {
            store.put(key(0, i), &value(key(0, i), 1, 20_000)).await.unwrap();
        }
        store.close().await.unwrap();
        let segs: Vec<_> = io.files_in(dir).into_iter().filter(|p| p.to_string_lossy().ends_with(".tsg")).collect();
        for path in &segs {
            let f = io.open(path, OpenMode::ReadWrite).await.unwrap();
            let size = f.size().await.unwrap();
            let mut b: Vec<u8> = f.read_at(0, size as usize).await.unwrap()[..].to_vec();
            let mut at = 4096usize;
            while at + 4096 <= b.len() {
                let Ok(h) = decode_header(&b[at..]) else { break };
                let poff = h.payload_offset() as usize;
                b[at + 4..at + 6].copy_from_slice(&1u16.to_le_bytes());
                let c = crc32c::crc32c_append(crc32c::crc32c(&b[at..at + 60]), &b[at + RECORD_HEADER_BYTES..at + poff]);
                b[at + 60..at + 64].copy_from_slice(&c.to_le_bytes());
                at += h.record_len() as usize;
            }
            b[8..10].copy_from_slice(&1u16.to_le_bytes());
            b[48..56].fill(0);
            let c = crc32c::crc32c(&b[..60]);
            b[60..64].copy_from_slice(&c.to_le_bytes());
            let mut buf = io.alloc(b.len());
            buf.copy_from_slice(&b);
            f.write_at(buf, 0).await.unwrap();
            f.sync().await.unwrap();
        }
        let r = open(&io, dir, cfg, &sp).await;
        assert!(r.is_err(), "an older format must be refused, got {:?}", r.map(|s| s.recovery()));
        let after: Vec<_> = io.files_in(dir).into_iter().filter(|p| p.to_string_lossy().ends_with(".tsg")).collect();
        assert_eq!(after, segs, "no segment deleted");
    });
}
