//! Read-after-write, read-after-delete and list-after-write under concurrency:
//! many clients at once, keys spread over every core, sizes on both sides of the
//! inline threshold, overwrites racing reads of the same key.
mod common;

use aws_sdk_s3::primitives::ByteStream;
use common::*;

const CLIENTS: u64 = 8;
const ROUNDS: u64 = 12;
const KIB: usize = 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_client_reads_its_own_writes_and_deletes() {
    let server = Server::start_default().await;
    let bucket = server.new_bucket().await;
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let s3 = server.client();
        let bucket = bucket.clone();
        tasks.push(tokio::spawn(async move {
            for r in 0..ROUNDS {
                let key = format!("c{c}/k{}", r % 3);
                // Alternate small (inline, replicated) and large (erasure-coded) values.
                let len = if (c + r) % 2 == 0 { 3 * KIB } else { 300 * KIB + (r as usize) * 7 };
                let data = random_bytes(len, c * 1000 + r);
                s3.put_object()
                    .bucket(&bucket)
                    .key(&key)
                    .body(ByteStream::from(data.clone()))
                    .send()
                    .await
                    .expect("put");
                let got = body_bytes(s3.get_object().bucket(&bucket).key(&key).send().await.expect("get")).await;
                assert_bytes_eq(&got, &data, &format!("read after write of {key}"));
                let listed = s3.list_objects_v2().bucket(&bucket).prefix(format!("c{c}/")).send().await.expect("list");
                let found = listed.contents().iter().find(|o| o.key() == Some(key.as_str())).map(|o| o.size());
                assert_eq!(found, Some(Some(len as i64)), "list after write of {key}");
                if r % 4 == 3 {
                    s3.delete_object().bucket(&bucket).key(&key).send().await.expect("delete");
                    expect_s3_error(s3.get_object().bucket(&bucket).key(&key).send().await, 404, Some("NoSuchKey"));
                    let listed =
                        s3.list_objects_v2().bucket(&bucket).prefix(format!("c{c}/")).send().await.expect("list");
                    assert!(
                        listed.contents().iter().all(|o| o.key() != Some(key.as_str())),
                        "list after delete of {key}"
                    );
                }
            }
        }));
    }
    // Readers racing the writers on a shared key: every read succeeds and is one
    // whole version, for erasure-coded and for inline (metadata-borne) objects.
    for (key, len) in [("shared", 200 * KIB), ("shared-small", 3 * KIB)] {
        race_on_one_key(&server, &bucket, key, len).await;
    }
    for t in tasks {
        t.await.expect("client task");
    }
}

async fn race_on_one_key(server: &Server, bucket: &str, key: &str, len: usize) {
    let s3 = server.client();
    let versions: Vec<Vec<u8>> = (0..4).map(|v| random_bytes(len, 90 + v)).collect();
    s3.put_object().bucket(bucket).key(key).body(ByteStream::from(versions[0].clone())).send().await.expect("put");
    let writer = {
        let s3 = server.client();
        let (bucket, key) = (bucket.to_string(), key.to_string());
        let versions = versions.clone();
        tokio::spawn(async move {
            for i in 0..40 {
                let v = versions[i % versions.len()].clone();
                s3.put_object().bucket(&bucket).key(&key).body(ByteStream::from(v)).send().await.expect("put shared");
            }
        })
    };
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let s3 = server.client();
            let (bucket, key) = (bucket.to_string(), key.to_string());
            let versions = versions.clone();
            tokio::spawn(async move {
                for _ in 0..25 {
                    let out =
                        s3.get_object().bucket(&bucket).key(&key).send().await.expect("get of a key being overwritten");
                    let got = body_bytes(out).await;
                    assert!(versions.contains(&got), "a read of {key} returned a mix of versions");
                }
            })
        })
        .collect();
    for r in readers {
        r.await.expect("reader");
    }
    writer.await.expect("writer");
}

/// The sum of one metric over every core, from /metrics.
fn metric_sum(server: &Server, name: &str) -> f64 {
    let r = server.raw_request("GET", "/metrics", &[], &[], b"");
    let text = String::from_utf8_lossy(&r.body).into_owned();
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The read cache serves repeated reads from memory, and never serves bytes of a
/// version that was overwritten or deleted, whole or by range, inline or coded.
#[tokio::test]
async fn the_read_cache_serves_repeats_and_never_stale_bytes() {
    let server = Server::start_default().await;
    skip_if_external!(server, "reads the server's /metrics");
    let s3 = server.client();
    let bucket = server.new_bucket().await;
    assert!(metric_sum(&server, "tessera_cache_capacity_bytes") > 0.0, "the cache is on by default");
    for (key, len) in [("small", 4 * KIB), ("coded", 3 * 1024 * KIB + 17)] {
        let mut want = Vec::new();
        for version in 0..3u64 {
            let data = random_bytes(len, 9000 + version);
            s3.put_object().bucket(&bucket).key(key).body(ByteStream::from(data.clone())).send().await.expect("put");
            for read in 0..2 {
                let got = body_bytes(s3.get_object().bucket(&bucket).key(key).send().await.expect("get")).await;
                assert_bytes_eq(&got, &data, &format!("{key} version {version} read {read}"));
                let (lo, hi) = (len / 3, len / 3 + 1000);
                let out = s3
                    .get_object()
                    .bucket(&bucket)
                    .key(key)
                    .range(format!("bytes={lo}-{hi}"))
                    .send()
                    .await
                    .expect("range");
                assert_bytes_eq(&body_bytes(out).await, &data[lo..=hi], &format!("{key} version {version} range"));
            }
            want = data;
        }
        assert_eq!(want.len(), len);
        s3.delete_object().bucket(&bucket).key(key).send().await.expect("delete");
        let gone = s3.get_object().bucket(&bucket).key(key).send().await;
        assert!(gone.is_err(), "{key}: a deleted object is not served from the cache");
    }
    assert!(metric_sum(&server, "tessera_cache_hits_total") >= 8.0, "repeated reads were cache hits");
}

/// With `--cache-mib 0` nothing is cached and reads still work.
#[tokio::test]
async fn the_read_cache_can_be_turned_off() {
    let opts = ServerOpts { extra_args: vec!["--cache-mib".into(), "0".into()], ..ServerOpts::default() };
    let server = Server::start(opts).await;
    skip_if_external!(server, "starts its own server with options");
    let s3 = server.client();
    let bucket = server.new_bucket().await;
    let data = random_bytes(2 * 1024 * KIB, 77);
    s3.put_object().bucket(&bucket).key("k").body(ByteStream::from(data.clone())).send().await.expect("put");
    for _ in 0..2 {
        let got = body_bytes(s3.get_object().bucket(&bucket).key("k").send().await.expect("get")).await;
        assert_bytes_eq(&got, &data, "read with the cache off");
    }
    assert_eq!(metric_sum(&server, "tessera_cache_capacity_bytes"), 0.0);
    assert_eq!(metric_sum(&server, "tessera_cache_hits_total"), 0.0);
}
