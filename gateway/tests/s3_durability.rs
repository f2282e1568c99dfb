//! Durability through the S3 front end (Tessera only; skipped on an external
//! endpoint): kill -9 during concurrent uploads, loss of two drives (tolerated) and
//! of a third (refused with 503, never partial data), a corrupted shard (repaired
//! on read), and the `/metrics` endpoint.
mod common;

use std::collections::BTreeMap;
use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use common::*;

/// Writers uploading at once while the server is killed.
const WRITERS: usize = 4;
/// Acknowledged PUTs to wait for before the kill (so there is something to check).
const ACKS_BEFORE_KILL_MIN: usize = 6;
/// Upper bound on waiting for those acknowledgements.
const ACK_WAIT_SECS_MAX: u64 = 120;
/// Upper bound on uploads per writer, so a never-dying server cannot loop forever.
const UPLOADS_PER_WRITER_MAX: usize = 50;
/// Drive count and parity of the default layout (RS 4+2).
const DRIVES: usize = 6;
/// Block size of the simulated bad sector.
const SECTOR_BYTES: usize = 4096;
/// Bytes compared to locate an object's bytes inside a segment file.
const NEEDLE_BYTES: usize = 64;
/// The pieces in which an erasure-coded object's bytes are laid out.
const PIECE_BYTES: usize = 256 * KIB;

#[derive(Clone, Debug)]
struct Attempt {
    len: usize,
    seed: u64,
    acked: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_during_concurrent_uploads_loses_no_acknowledged_object() {
    let mut server = Server::start_default().await;
    skip_if_external!(server, "kills the server");
    let bucket = server.new_bucket().await;
    let base_seed = fresh_seed();
    eprintln!("seed {base_seed}");
    let attempts: Arc<Mutex<BTreeMap<String, Attempt>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));

    let mut writers = tokio::task::JoinSet::new();
    for w in 0..WRITERS {
        let (s3, bucket, attempts, stop) = (server.client(), bucket.clone(), attempts.clone(), stop.clone());
        writers.spawn(async move {
            for i in 0..UPLOADS_PER_WRITER_MAX {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let seed = base_seed.wrapping_add((w * 1000 + i) as u64);
                // 1..=8 MiB, not a multiple of anything in particular.
                let len = MIB + (seed % (7 * MIB as u64)) as usize + 1;
                let key = format!("w{w}/{i:03}");
                attempts.lock().expect("lock").insert(key.clone(), Attempt { len, seed, acked: false });
                let body = ByteStream::from(random_bytes(len, seed));
                match s3.put_object().bucket(&bucket).key(&key).body(body).send().await {
                    Ok(_) => attempts.lock().expect("lock").get_mut(&key).expect("recorded").acked = true,
                    // The server died under this upload: no further ones.
                    Err(_) => break,
                }
            }
        });
    }

    let deadline = Instant::now() + Duration::from_secs(ACK_WAIT_SECS_MAX);
    loop {
        let acked = attempts.lock().expect("lock").values().filter(|a| a.acked).count();
        if acked >= ACKS_BEFORE_KILL_MIN {
            break;
        }
        assert!(Instant::now() < deadline, "only {acked} PUTs acknowledged in {ACK_WAIT_SECS_MAX} s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Land the kill at a varying point of the uploads in flight.
    tokio::time::sleep(Duration::from_millis(base_seed % 400)).await;
    server.kill9().await;
    stop.store(true, Ordering::Relaxed);
    while let Some(r) = writers.join_next().await {
        r.expect("writer task");
    }
    let attempts = attempts.lock().expect("lock").clone();
    let acked = attempts.values().filter(|a| a.acked).count();
    eprintln!("{} uploads attempted, {acked} acknowledged before kill -9", attempts.len());

    server.start_again().await;
    let s3 = server.client();
    let mut survived_unacked = 0;
    for (key, a) in &attempts {
        let want = random_bytes(a.len, a.seed);
        match s3.get_object().bucket(&bucket).key(key).send().await {
            Ok(out) => {
                assert_bytes_eq(&body_bytes(out).await, &want, &format!("{key} (acked: {})", a.acked));
                survived_unacked += usize::from(!a.acked);
            }
            Err(e) => {
                assert!(!a.acked, "acknowledged object {key} lost after kill -9: {e:?}");
                let (status, code) = sdk_status_code(&e);
                assert_eq!(
                    (status, code.as_deref()),
                    (Some(404), Some("NoSuchKey")),
                    "unacknowledged {key} is either whole or absent: {e:?}"
                );
            }
        }
    }
    eprintln!("{survived_unacked} unacknowledged uploads survived whole");
    // The listing agrees: only attempted keys, each with its full size.
    let listed = s3.list_objects_v2().bucket(&bucket).send().await.expect("list after restart");
    for o in listed.contents() {
        let key = o.key().unwrap_or_default();
        let a = attempts.get(key).unwrap_or_else(|| panic!("listed key {key:?} was never written"));
        assert_eq!(o.size(), Some(a.len as i64), "listed size of {key}");
    }
    assert!(listed.contents().len() >= acked);
    // And the server takes writes again.
    let data = random_bytes(3 * MIB, base_seed ^ 1);
    s3.put_object().bucket(&bucket).key("after").body(ByteStream::from(data.clone())).send().await.expect("put");
    let got = body_bytes(s3.get_object().bucket(&bucket).key("after").send().await.expect("get")).await;
    assert_bytes_eq(&got, &data, "write after recovery");
}

/// Objects of every layout: inline, one stripe, several stripes.
fn layout_objects(seed: u64) -> Vec<(String, Vec<u8>)> {
    [("inline", 1000usize), ("one-stripe", 300 * KIB), ("multi-stripe", 4 * MIB + 5)]
        .into_iter()
        .enumerate()
        .map(|(i, (k, len))| (k.to_string(), random_bytes(len, seed.wrapping_add(i as u64))))
        .collect()
}

async fn put_all(s3: &Client, bucket: &str, objects: &[(String, Vec<u8>)]) {
    for (key, data) in objects {
        s3.put_object().bucket(bucket).key(key).body(ByteStream::from(data.clone())).send().await.expect("put");
    }
}

async fn check_all(s3: &Client, bucket: &str, objects: &[(String, Vec<u8>)], when: &str) {
    for (key, data) in objects {
        let out =
            s3.get_object().bucket(bucket).key(key).send().await.unwrap_or_else(|e| panic!("{when}: {key}: {e:?}"));
        assert_bytes_eq(&body_bytes(out).await, data, &format!("{when}: {key}"));
    }
}

/// `rm -rf` of drive directories; one the server did not recreate is already gone.
fn remove_drives(server: &Server, drives: &[usize]) {
    for &d in drives {
        let dir = server.drive_dir(d);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("rm -rf {}: {e}", dir.display()));
        }
    }
}

#[tokio::test]
async fn two_lost_drives_are_tolerated_and_a_third_is_refused_with_503() {
    let mut server = Server::start_default().await;
    skip_if_external!(server, "removes drive directories");
    let bucket = server.new_bucket().await;
    let seed = fresh_seed();
    eprintln!("seed {seed}");
    let objects = layout_objects(seed);
    put_all(&server.client(), &bucket, &objects).await;
    for d in 0..DRIVES {
        assert!(server.drive_dir(d).is_dir(), "drive d{d} exists");
    }

    server.stop().await;
    remove_drives(&server, &[1, 4]);
    server.start_again().await;
    let s3 = server.client();
    check_all(&s3, &bucket, &objects, "with d1 and d4 lost").await;
    let fresh = random_bytes(2 * MIB + 1, seed ^ 7);
    s3.put_object().bucket(&bucket).key("fresh").body(ByteStream::from(fresh.clone())).send().await.expect("put");
    let got = body_bytes(s3.get_object().bucket(&bucket).key("fresh").send().await.expect("get")).await;
    assert_bytes_eq(&got, &fresh, "written with two drives lost");
    let listed = s3.list_objects_v2().bucket(&bucket).send().await.expect("list");
    assert_eq!(listed.contents().len(), objects.len() + 1);

    // Three drives gone (the two again, in case they were rebuilt, and one more):
    // erasure-coded data cannot be rebuilt, and the answer says so.
    server.stop().await;
    remove_drives(&server, &[1, 2, 4]);
    server.start_again().await;
    let s3 = server.client();
    for (key, data) in objects.iter().filter(|(_, d)| d.len() > INLINE_BYTES_MAX_DEFAULT) {
        let result = s3.get_object().bucket(&bucket).key(key).send().await;
        if let Ok(out) = result {
            // Headers went out as if the object were readable: say what the body did.
            let body = out.body.collect().await.map(|b| b.into_bytes().len());
            panic!("GET {key} with 3 drives lost answered 200 (body: {body:?}), want 503 before any byte");
        }
        expect_s3_error(result, 503, Some("ServiceUnavailable"));
        let r = server.raw_request("GET", &format!("/{bucket}/{key}"), &[], &[], b"");
        assert_eq!(r.status, 503, "raw GET {key}: {}", r.summary());
        assert!(find_subslice(&r.body, &data[..NEEDLE_BYTES]).is_none(), "no object bytes in the 503 for {key}");
        let r = server.raw_request("GET", &format!("/{bucket}/{key}"), &[], &[("range", "bytes=0-99")], b"");
        assert_eq!(r.status, 503, "ranged raw GET {key}: {}", r.summary());
    }
    expect_s3_error(
        s3.put_object().bucket(&bucket).key("refused").body(ByteStream::from(random_bytes(MIB, 9))).send().await,
        503,
        Some("ServiceUnavailable"),
    );
}

/// Where a sector of an object's bytes was overwritten.
struct Corruption {
    file: PathBuf,
    offset: usize,
    object_offset: usize,
}

/// Finds the first piece start of `data` in a data drive's segment file and flips
/// every bit of a 4 KiB-aligned sector of it.
fn corrupt_one_sector(server: &Server, data: &[u8]) -> Corruption {
    for piece_start in (0..data.len()).step_by(PIECE_BYTES) {
        let needle = &data[piece_start..piece_start + NEEDLE_BYTES];
        for d in 0..DRIVES {
            for file in segment_files(&server.drive_dir(d)) {
                let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
                let Some(found) = find_subslice(&bytes, needle) else { continue };
                // How far the object's bytes run on verbatim from there.
                let run = bytes[found..]
                    .iter()
                    .zip(&data[piece_start..])
                    .take(PIECE_BYTES)
                    .take_while(|(a, b)| a == b)
                    .count();
                let sector = found.div_ceil(SECTOR_BYTES) * SECTOR_BYTES;
                if sector + SECTOR_BYTES > found + run {
                    continue; // no whole aligned sector inside this run
                }
                let flipped: Vec<u8> = bytes[sector..sector + SECTOR_BYTES].iter().map(|b| !b).collect();
                let mut f = std::fs::OpenOptions::new().write(true).open(&file).expect("open segment for writing");
                f.seek(SeekFrom::Start(sector as u64)).expect("seek");
                f.write_all(&flipped).expect("write corrupted sector");
                f.sync_all().expect("sync");
                return Corruption { file, offset: sector, object_offset: piece_start + (sector - found) };
            }
        }
    }
    panic!("no 4 KiB-aligned run of the object's bytes found in any segment file");
}

#[tokio::test]
async fn corrupted_shard_is_detected_and_repaired_on_read() {
    // The read cache off: every read goes to the drives (with it, the first rebuilt
    // stripe would be served from memory afterwards).
    let opts = ServerOpts {
        segment_mib: Some(64),
        extra_args: vec!["--cache-mib".into(), "0".into()],
        ..ServerOpts::default()
    };
    let mut server = Server::start(opts).await;
    skip_if_external!(server, "edits segment files");
    let s3 = server.client();
    let bucket = server.new_bucket().await;
    let seed = fresh_seed();
    eprintln!("seed {seed}");
    let data = random_bytes(4 * MIB, seed);
    s3.put_object().bucket(&bucket).key("victim").body(ByteStream::from(data.clone())).send().await.expect("put");
    server.stop().await;

    let c = corrupt_one_sector(&server, &data);
    eprintln!(
        "flipped {SECTOR_BYTES} bytes at {} offset {} (object offset {})",
        c.file.display(),
        c.offset,
        c.object_offset
    );

    server.start_again().await;
    let s3 = server.client();
    for round in 0..2 {
        let got = body_bytes(s3.get_object().bucket(&bucket).key("victim").send().await.expect("get")).await;
        assert_bytes_eq(&got, &data, &format!("GET #{round} after corruption"));
    }
    // A range inside the bad sector alone.
    let (lo, hi) = (c.object_offset + 100, c.object_offset + 199);
    let out =
        s3.get_object().bucket(&bucket).key("victim").range(format!("bytes={lo}-{hi}")).send().await.expect("range");
    assert_bytes_eq(&body_bytes(out).await, &data[lo..=hi], "range within the corrupted sector");
    // And it was noticed, not silently read around: the reads were degraded.
    let r = server.raw_request("GET", "/metrics", &[], &[], b"");
    let text = String::from_utf8_lossy(&r.body).into_owned();
    let degraded: f64 = text
        .lines()
        .filter(|l| l.starts_with("tessera_degraded_reads_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(degraded >= 3.0, "each of the 3 reads rebuilt the bad stripe, metrics say {degraded}:\n{text}");
}

#[tokio::test]
async fn metrics_count_s3_requests() {
    let server = Server::start_default().await;
    skip_if_external!(server, "/metrics is a Tessera endpoint");
    let s3 = server.client();
    let bucket = server.new_bucket().await;
    s3.put_object().bucket(&bucket).key("k").body(ByteStream::from_static(b"x")).send().await.expect("put");
    body_bytes(s3.get_object().bucket(&bucket).key("k").send().await.expect("get")).await;
    expect_s3_error(s3.get_object().bucket(&bucket).key("missing").send().await, 404, Some("NoSuchKey"));

    let mut r = server.raw_unsigned("GET", "/metrics", &[], &[], b"");
    if r.status == 403 {
        r = server.raw_request("GET", "/metrics", &[], &[], b"");
    }
    assert_eq!(r.status, 200, "{}", r.summary());
    let text = r.text();
    let total: f64 = text
        .lines()
        .filter(|l| l.starts_with("tessera_s3_requests_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(text.contains("tessera_s3_requests_total"), "{text}");
    assert!(total >= 4.0, "at least the 4 requests above counted, got {total}:\n{text}");
}
