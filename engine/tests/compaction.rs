//! Compaction keeps every live record, removes sparse segments, and keeps the
//! tombstones that a full rebuild needs so deleted keys stay deleted.
mod common;

use std::path::Path;

use common::{key, open, run, small_cfg, value};
use tessera_engine::io::memory::MemIo;
use tessera_engine::store::StoreError;
use tessera_engine::ShardKey;

const LEN: usize = 40_000;

fn segment_of(store: &tessera_engine::ShardStore<MemIo>, k: ShardKey) -> u64 {
    let (path, _, _) = store.locate(k).expect("present");
    let name = path.file_name().unwrap().to_str().unwrap();
    u64::from_str_radix(&name[4..20], 16).unwrap()
}

async fn check(store: &tessera_engine::ShardStore<MemIo>, live: &[(ShardKey, u64)], gone: &[ShardKey]) {
    for (k, v) in live {
        assert_eq!(&store.get(*k).await.unwrap()[..], &value(*k, *v, LEN)[..], "live key {k:?}");
    }
    for k in gone {
        assert!(matches!(store.get(*k).await, Err(StoreError::NotFound(_))), "deleted key {k:?} came back");
    }
}

#[test]
fn compaction_keeps_live_records_and_needed_tombstones() {
    run(|sp| async move {
        let io = MemIo::new(5);
        let dir = Path::new("/d0");
        let store = open(&io, dir, small_cfg(), &sp).await.unwrap();
        // Segment 1: `doomed` and anchors that stay live, so it is never compacted.
        let doomed = key(0, 999);
        store.put(doomed, &value(doomed, 1, LEN)).await.unwrap();
        let mut anchors = Vec::new();
        for i in 0.. {
            let k = key(0, i);
            store.put(k, &value(k, 1, LEN)).await.unwrap();
            if segment_of(&store, k) != 1 {
                break; // the first segment is full; this one rolled over
            }
            anchors.push(k);
        }
        // Later segments: doomed's tombstone, then fillers, most deleted -> sparse.
        store.delete(doomed).await.unwrap();
        let mut live: Vec<(ShardKey, u64)> = anchors.iter().map(|k| (*k, 1)).collect();
        live.push((key(0, anchors.len() as u128), 1));
        let mut gone = vec![doomed];
        let mut fillers = Vec::new();
        for i in 1000.. {
            let k = key(1, i);
            store.put(k, &value(k, 1, LEN)).await.unwrap();
            fillers.push(k);
            if segment_of(&store, k) >= 4 {
                break;
            }
        }
        for (i, k) in fillers.iter().enumerate() {
            match i % 10 {
                0 => {
                    store.put(*k, &value(*k, 2, LEN)).await.unwrap();
                    live.push((*k, 2));
                }
                1 => live.push((*k, 1)),
                _ => {
                    store.delete(*k).await.unwrap();
                    gone.push(*k);
                }
            }
        }
        let before = store.stats();
        let segments_before = before.segments;
        let c = store.compact().await.unwrap();
        let after = store.stats();
        assert!(c.segments_removed >= 2, "{c:?} {before:?}");
        assert!(c.records_moved > 0 && c.tombstones_kept > 0, "{c:?}");
        assert!(after.used_bytes < before.used_bytes, "{before:?} -> {after:?}");
        assert_eq!(after.live_bytes, before.live_bytes, "live bytes are only moved");
        assert_eq!(after.keys, live.len());
        check(&store, &live, &gone).await;
        // Writes keep working during and after compaction.
        let late = key(2, 5);
        store.put(late, &value(late, 1, LEN)).await.unwrap();
        live.push((late, 1));
        store.close().await.unwrap();

        // Reopen from the checkpoint compaction wrote ...
        let store = open(&io, dir, small_cfg(), &sp).await.unwrap();
        assert!(store.recovery().from_checkpoint);
        assert!(store.stats().segments < segments_before + 2);
        check(&store, &live, &gone).await;
        store.close().await.unwrap();
        // ... and from a full scan: the first segment still holds `doomed`'s put, so
        // its tombstone must have survived compaction.
        io.corrupt(&dir.join("checkpoint.tck"), 0, 8);
        let store = open(&io, dir, small_cfg(), &sp).await.unwrap();
        assert!(!store.recovery().from_checkpoint);
        check(&store, &live, &gone).await;
        // Compacting again (the previous head is now sparse) keeps everything.
        store.compact().await.unwrap();
        check(&store, &live, &gone).await;
        store.close().await.unwrap();
    });
}
