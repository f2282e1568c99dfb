//! Bitrot: bytes flipped on disk are caught by the checksums. A read returns either
//! the right bytes (the flip hit padding, or a block the range does not touch) or a
//! `Corrupt` error, never wrong bytes. Seeded; the seed is in every failure message.
mod common;

use std::path::Path;

use common::{key, open, run, value};
use tessera_engine::format::FormatError;
use tessera_engine::io::memory::{MemIo, SimRng};
use tessera_engine::store::StoreError;
use tessera_engine::StoreConfig;

#[test]
fn flipped_bytes_are_detected_never_served() {
    let cfg = StoreConfig { block_log2: 12, ..common::small_cfg() };
    let mut corrupt_reads = 0;
    for seed in 0..300u64 {
        corrupt_reads += run(|sp| {
            let cfg = cfg.clone();
            async move {
                let mut rng = SimRng::new(seed);
                let io = MemIo::new(seed);
                let dir = Path::new("/d");
                let store = open(&io, dir, cfg, &sp).await.unwrap();
                let keys: Vec<_> = (0..8u128).map(|i| key(0, i)).collect();
                for k in &keys {
                    store.put(*k, &value(*k, 1, 40_000)).await.unwrap();
                }
                // Flip one byte somewhere in one record: header, crc table or payload.
                let victim = keys[rng.below(keys.len() as u64) as usize];
                let (path, rec_off, poff) = store.locate(victim).unwrap();
                let plen = store.len_of(victim).unwrap();
                let at = rec_off + rng.below(poff + plen);
                io.corrupt(&path, at, 1);
                let mut corrupt_reads = 0;
                for k in &keys {
                    let want = value(*k, 1, 40_000);
                    let off = rng.below(want.len() as u64 + 1);
                    let len = rng.below(want.len() as u64 - off + 1);
                    for (o, l) in [(0, want.len() as u64), (off, len)] {
                        match store.get_range(*k, o, l).await {
                            Ok(got) => assert_eq!(
                                &got[..],
                                &want[o as usize..(o + l) as usize],
                                "seed {seed}: wrong bytes served"
                            ),
                            Err(StoreError::Corrupt { .. }) => {
                                assert_eq!(*k, victim, "seed {seed}: an intact record reported corrupt");
                                corrupt_reads += 1;
                            }
                            Err(e) => panic!("seed {seed}: unexpected error {e}"),
                        }
                    }
                }
                // A whole read of the victim always touches the flipped byte.
                assert!(
                    matches!(store.get(victim).await, Err(StoreError::Corrupt { .. })),
                    "seed {seed}: flip at {at} (record {rec_off}, payload offset {poff}) not detected"
                );
                store.close().await.unwrap();
                corrupt_reads
            }
        });
    }
    assert!(corrupt_reads >= 300, "every seed reports at least its whole-record read");
}

#[test]
fn payload_flip_names_the_block() {
    run(|sp| async move {
        let cfg = StoreConfig { block_log2: 12, ..common::small_cfg() };
        let io = MemIo::new(9);
        let store = open(&io, Path::new("/d"), cfg, &sp).await.unwrap();
        let k = key(1, 1);
        let v = vec![0x5a; 5 * 4096];
        store.put(k, &v).await.unwrap();
        let (path, rec_off, poff) = store.locate(k).unwrap();
        io.corrupt(&path, rec_off + poff + 2 * 4096 + 17, 1);
        match store.get(k).await {
            Err(StoreError::Corrupt { reason: FormatError::BlockChecksum { block: 2 }, .. }) => {}
            other => panic!("expected block 2 checksum error, got {:?}", other.map(|b| b.len())),
        }
        // Blocks 0-1 and 3-4 are intact and still served.
        assert_eq!(&store.get_range(k, 0, 2 * 4096).await.unwrap()[..], &v[..2 * 4096]);
        assert_eq!(&store.get_range(k, 3 * 4096, 2 * 4096).await.unwrap()[..], &v[3 * 4096..]);
        store.close().await.unwrap();
    });
}

/// Damage in the middle of the log is not a torn tail: a restart must keep every
/// record after it. A damaged put with an intact header stays indexed so its reads
/// fail (never older data); one whose header is damaged is unknown and skipped.
#[test]
fn restart_skips_damage_and_keeps_later_records() {
    for (case, flip_header, checkpoint) in [(0, false, false), (1, true, false), (2, false, true), (3, true, true)] {
        run(|sp| async move {
            let io = MemIo::new(100 + case);
            let dir = Path::new("/d");
            let store = open(&io, dir, common::small_cfg(), &sp).await.unwrap();
            let keys: Vec<_> = (0..30u128).map(|i| key(0, i)).collect();
            if checkpoint {
                store.put(key(5, 5), b"before the checkpoint").await.unwrap();
                store.checkpoint().await.unwrap();
            }
            for k in &keys {
                // One at a time: each record is its own group commit.
                store.put(*k, &value(*k, 1, 9000)).await.unwrap();
            }
            let victim = keys[12];
            let (path, rec_off, poff) = store.locate(victim).unwrap();
            let at = if flip_header { rec_off + 20 } else { rec_off + poff + 10 };
            drop(store);
            let io = io.crash_image(7);
            io.corrupt(&path, at, 1);
            let store = open(&io, dir, common::small_cfg(), &sp).await.unwrap();
            let rec = store.recovery();
            assert_eq!(rec.damaged_records, 1, "case {case}: {rec:?}");
            assert_eq!(rec.from_checkpoint, checkpoint, "case {case}");
            for k in keys.iter().filter(|k| **k != victim) {
                assert_eq!(&store.get(*k).await.unwrap()[..], &value(*k, 1, 9000)[..], "case {case}: {k:?} lost");
            }
            match store.get(victim).await {
                Err(StoreError::Corrupt { .. }) if !flip_header => {}
                Err(StoreError::NotFound(_)) if flip_header => {}
                other => panic!("case {case}: victim read gave {:?}", other.map(|b| b.len())),
            }
            // The store keeps working and a second restart sees the same.
            let k = key(1, 1);
            store.put(k, b"after").await.unwrap();
            store.close().await.unwrap();
            let store = open(&io, dir, common::small_cfg(), &sp).await.unwrap();
            assert_eq!(&store.get(k).await.unwrap()[..], b"after");
            assert_eq!(&store.get(keys[29]).await.unwrap()[..], &value(keys[29], 1, 9000)[..]);
            store.close().await.unwrap();
        });
    }
}
