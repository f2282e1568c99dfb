//! `tessera-fsck` on real store directories: clean, with a torn tail (reported,
//! not a problem: never acknowledged), and with bitrot in a live piece (a problem,
//! exit status 1).
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use tessera_engine::io::glommio_io::GlommioIo;
use tessera_engine::{ShardKey, ShardStore, StoreConfig};

const BIN: &str = env!("CARGO_BIN_EXE_tessera-fsck");

/// Writes 20 pieces, checkpoints after 10; returns where piece 15 lives.
fn populate(dir: PathBuf) -> (PathBuf, u64, u64) {
    glommio::LocalExecutorBuilder::default()
        .io_memory(1 << 20)
        .spawn(move || async move {
            let cfg = StoreConfig { segment_bytes: 8 << 20, ..StoreConfig::default() };
            let (store, committer) = ShardStore::open(GlommioIo, &dir, cfg).await.unwrap();
            glommio::spawn_local(committer).detach();
            for i in 0..20u128 {
                let k = ShardKey { partition: 3, object: i, piece: 0 };
                store.put(k, &vec![i as u8; 100_000]).await.unwrap();
                if i == 9 {
                    store.checkpoint().await.unwrap();
                }
            }
            let at = store.locate(ShardKey { partition: 3, object: 15, piece: 0 }).unwrap();
            store.close().await.unwrap();
            at
        })
        .unwrap()
        .join()
        .unwrap()
}

fn fsck(dir: &Path) -> (i32, String) {
    let out = Command::new(BIN).arg(dir).output().unwrap();
    (out.status.code().unwrap(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn fsck_reports_clean_torn_and_damaged() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("d0/core-0");
    let (seg, rec_off, poff) = populate(store.clone());

    let (code, out) = fsck(tmp.path());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("20 records, 20 live pieces (2000000 bytes), checkpoint 10 entries"), "{out}");

    // A torn record right after the last one, as a crash mid-write leaves: reported,
    // harmless. Find the last record by its magic.
    let f = std::fs::OpenOptions::new().read(true).write(true).open(&seg).unwrap();
    let len = f.metadata().unwrap().len();
    let mut tail = None;
    let mut hdr = [0u8; 4];
    for page in (1..len / 4096).rev() {
        f.read_exact_at(&mut hdr, page * 4096).unwrap();
        if &hdr == b"TREC" {
            tail = Some(page * 4096);
            break;
        }
    }
    let last = tail.expect("a record header");
    let garbage_at = last + 25 * 4096; // right after the last record (100 KB + header = 25 pages)
    let mut torn = vec![0u8; 4096];
    torn[..4].copy_from_slice(b"TREC");
    torn[4] = 1;
    torn[100] = 0xEE;
    f.write_all_at(&torn, garbage_at).unwrap();
    f.sync_all().unwrap();
    let (code, out) = fsck(tmp.path());
    assert_eq!(code, 0, "a torn tail is not a problem: {out}");
    assert!(out.contains("1 segments end in a torn or damaged record"), "{out}");

    // Bitrot inside a live piece: a problem.
    let at = rec_off + poff + 50_000;
    f.write_all_at(&[0x55], at).unwrap();
    f.sync_all().unwrap();
    let (code, out) = fsck(tmp.path());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("PROBLEM: piece (partition 3, object 0000000000000000000000000000000f, piece 0)"), "{out}");
    assert!(out.contains("checksum"), "{out}");

    // Nothing to check is its own error.
    let (code, _) = fsck(&tmp.path().join("d0/core-0/../../nothing-here-x"));
    assert_eq!(code, 2);
}
