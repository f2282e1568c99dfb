//! Damaged disks, seeded: random bytes flipped anywhere in the store's files
//! (segment headers, record headers, crc tables, payloads, the checkpoint). Opening
//! must not panic: it either fails with an error or opens, and then every read
//! returns the right bytes, `NotFound`, or `Corrupt`, never wrong bytes.
mod common;

use std::panic::AssertUnwindSafe;
use std::path::Path;

use common::{key, open, run, small_cfg, value};
use tessera_engine::io::memory::{MemIo, SimRng};
use tessera_engine::store::StoreError;

fn one_seed(seed: u64) -> bool {
    run(|sp| async move {
        let mut rng = SimRng::new(seed);
        let io = MemIo::new(seed);
        let dir = Path::new("/d");
        let store = open(&io, dir, small_cfg(), &sp).await.unwrap();
        let keys: Vec<_> = (0..40u128).map(|i| key(i as u32 % 3, i)).collect();
        for (i, k) in keys.iter().enumerate() {
            store.put(*k, &value(*k, 1, 60_000)).await.unwrap();
            if i == 20 {
                store.checkpoint().await.unwrap();
            }
        }
        store.close().await.unwrap();
        let files = io.files_in(dir);
        for _ in 0..1 + rng.below(4) {
            let f = &files[rng.below(files.len() as u64) as usize];
            // Mostly near the starts of pages, where headers and tables live.
            let page = rng.below(600);
            let at = page * 4096 + if rng.chance(70) { rng.below(128) } else { rng.below(4096) };
            io.corrupt(f, at, 1 + rng.below(3) as usize);
        }
        let store = match open(&io, dir, small_cfg(), &sp).await {
            Ok(s) => s,
            Err(_) => return false, // refused: fine, as long as it did not panic
        };
        for k in &keys {
            match store.get(*k).await {
                Ok(got) => assert_eq!(&got[..], &value(*k, 1, 60_000)[..], "seed {seed}: wrong bytes for {k:?}"),
                Err(StoreError::NotFound(_)) | Err(StoreError::Corrupt { .. }) => {}
                Err(e) => panic!("seed {seed}: unexpected error {e}"),
            }
        }
        true
    })
}

#[test]
fn damaged_files_never_panic_or_serve_wrong_bytes() {
    let mut opened = 0;
    for seed in 0..400u64 {
        match std::panic::catch_unwind(AssertUnwindSafe(|| one_seed(seed))) {
            Ok(o) => opened += o as u32,
            Err(_) => panic!("fuzz_disk failed for seed {seed}"),
        }
    }
    assert!(opened > 300, "most damaged stores still open: {opened}/400");
}
