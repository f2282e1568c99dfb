//! Cluster mode end to end, as a user runs it: a real etcd, a real Kafka-compatible
//! broker (tansu), 9 `tessera node` processes and 3 `tessera gateway` processes,
//! driven with aws-sdk-s3 through the gateways.
//!
//! * a 15 MB object written through gateway 1 reads back byte-identical through
//!   gateways 2 and 3, and every gateway lists it;
//! * 3 nodes killed (SIGKILL, m = 3 of 6+3): reads decode around them, writes
//!   still succeed;
//! * a 4th killed: requests fail fast with 503, nothing partial is returned;
//! * the 4 restarted: they catch up from Kafka and rebuild the pieces written
//!   while they were down; then 3 *other* nodes killed, and every object still
//!   reads back correctly through every gateway;
//! * concurrent writers of one key through different gateways end with one winner
//!   every gateway agrees on;
//! * a multipart upload whose steps go through different gateways;
//! * a gateway killed mid-upload leaves no object, and its pieces are collected.
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use aws_smithy_types::body::SdkBody;
use bytes::Bytes;
use tessera_engine::object::meta::{self, DataLayout, MetaEntry};
use tessera_gateway::cluster::Cluster;
use tessera_gateway::cluster_client::{group_bytes, piece_key};
use tessera_gateway::wire::{self, Reply, Request};

#[path = "common/etcd.rs"]
mod etcd;
#[path = "common/proc.rs"]
mod proc;
#[path = "common/tansu.rs"]
mod tansu;
use etcd::{free_port, Etcd};
use proc::Proc;
use tansu::Tansu;

const SECRET: &str = "cluster-s3-test-secret-0123456789";
const ACCESS_KEY: &str = "TSCLUSTERTEST0001";
const SECRET_KEY: &str = "cluster-test-secret-key-0123456789";
const CLUSTER: &str = "s3test";
const NODES: usize = 9;
const GATEWAYS: usize = 3;

struct ClusterUnderTest {
    etcd: Etcd,
    kafka: Tansu,
    dir: tempfile::TempDir,
    node_addrs: Vec<SocketAddr>,
    nodes: Vec<Option<Proc>>,
    gateways: Vec<Proc>,
    gateway_urls: Vec<String>,
}

impl ClusterUnderTest {
    fn node_cmd(&self, i: usize) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_tessera"));
        c.args(["node", "--etcd", &self.etcd.url, "--cluster", CLUSTER, "--kafka", &self.kafka.brokers])
            .args(["--id", &format!("node{}", i + 1), "--drives", "1", "--cores", "1", "--no-pin"])
            .args(["--segment-mib", "16", "--io-memory", "4194304", "--lease-secs", "2"])
            // Orphaned pieces collected after 10 s unnamed (a 15 MB upload here
            // takes well under a second from first piece to commit).
            .args(["--gc-grace-secs", "10", "--gc-every-secs", "1"])
            .arg("--data")
            .arg(self.dir.path().join(format!("node{}", i + 1)))
            .args(["--listen", &self.node_addrs[i].to_string()])
            .env("TESSERA_CLUSTER_SECRET", SECRET)
            .env("TESSERA_LOG", "info");
        c
    }

    fn start_node(&mut self, i: usize) {
        let log = self.dir.path().join(format!("node{}.log", i + 1));
        let mut p = Proc::start(self.node_cmd(i), log);
        p.wait_ready(&format!("node{}", i + 1));
        self.nodes[i] = Some(p);
    }

    fn start_nodes(&mut self, which: &[usize]) {
        // Started together (they join concurrently), then waited for.
        let mut started = Vec::new();
        for &i in which {
            let log = self.dir.path().join(format!("node{}.log", i + 1));
            started.push((i, Proc::start(self.node_cmd(i), log)));
        }
        for (i, mut p) in started {
            p.wait_ready(&format!("node{}", i + 1));
            self.nodes[i] = Some(p);
        }
    }

    fn kill_node(&mut self, i: usize) {
        self.nodes[i].take().expect("node running").kill9();
    }

    fn up() -> ClusterUnderTest {
        let etcd = Etcd::start();
        let kafka = Tansu::start();
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args(["cluster", "init", "--etcd", &etcd.url, "--cluster", CLUSTER, "--code", "6+3"])
            .args(["--partitions", "16"])
            .output()
            .unwrap();
        assert!(out.status.success(), "cluster init: {}", String::from_utf8_lossy(&out.stderr));
        let node_addrs = (0..NODES).map(|_| SocketAddr::from(([127, 0, 0, 1], free_port()))).collect();
        let mut c = ClusterUnderTest {
            etcd,
            kafka,
            dir,
            node_addrs,
            nodes: (0..NODES).map(|_| None).collect(),
            gateways: vec![],
            gateway_urls: vec![],
        };
        c.start_nodes(&(0..NODES).collect::<Vec<_>>());
        for g in 0..GATEWAYS {
            let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_tessera"));
            cmd.args(["gateway", "--etcd", &c.etcd.url, "--cluster", CLUSTER, "--kafka", &c.kafka.brokers])
                .args(["--listen", &addr.to_string(), "--cores", "1", "--no-pin"])
                .env("TESSERA_CLUSTER_SECRET", SECRET)
                .env("TESSERA_ACCESS_KEY", ACCESS_KEY)
                .env("TESSERA_SECRET_KEY", SECRET_KEY);
            let mut p = Proc::start(cmd, c.dir.path().join(format!("gateway{}.log", g + 1)));
            p.wait_ready(&format!("gateway{}", g + 1));
            c.gateways.push(p);
            c.gateway_urls.push(format!("http://{addr}"));
        }
        c
    }

    fn s3(&self, g: usize) -> Client {
        let creds = Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "cluster-test");
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&self.gateway_urls[g])
            .force_path_style(true)
            .credentials_provider(creds)
            // No retries: a 503 must be seen as one, and fast.
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_timeout(Duration::from_secs(60))
                    .build(),
            )
            .build();
        Client::from_conf(conf)
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if let Some(n) = n {
                out += &format!("--- node{}\n{}\n", i + 1, n.log_tail());
            }
        }
        for (i, g) in self.gateways.iter().enumerate() {
            out += &format!("--- gateway{}\n{}\n", i + 1, g.log_tail());
        }
        out
    }
}

fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
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

async fn put(s3: &Client, bucket: &str, key: &str, body: &[u8]) {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body.to_vec()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
}

async fn get(s3: &Client, bucket: &str, key: &str) -> Vec<u8> {
    let out = s3.get_object().bucket(bucket).key(key).send().await.unwrap_or_else(|e| panic!("get {key}: {e:?}"));
    out.body.collect().await.expect("body").into_bytes().to_vec()
}

fn same(got: &[u8], want: &[u8], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    assert!(got == want, "{what}: bytes differ");
}

/// Waits until each of `nodes` holds every piece of its slots of `bucket/key`.
async fn wait_repaired(c: &ClusterUnderTest, bucket: &str, key: &str, nodes: &[usize]) {
    let mut etcd = Cluster::connect(&c.etcd.url, CLUSTER).await.unwrap();
    let t = etcd.topology().await.unwrap();
    let partition = t.keyspace.partition_of(bucket, key);
    let set = t.placement.as_ref().unwrap().sets[partition as usize].clone();
    let ask = |addr: SocketAddr, req: Request| {
        tokio::task::spawn_blocking(move || {
            wire::Client::connect(addr, SECRET.as_bytes(), Duration::from_secs(5)).and_then(|mut cl| cl.call(&req))
        })
    };
    // A node that was never down has the record (node 9).
    let live = NODES - 1;
    let id = tessera_engine::applied::MetaId::Object { bucket: bucket.into(), key: key.into() };
    let rec = match ask(c.node_addrs[live], Request::MetaGet { partition, id }).await.unwrap().unwrap() {
        Reply::Meta { record: Some(r), .. } => meta::decode(&r).unwrap(),
        other => panic!("MetaGet {key}: {other:?}"),
    };
    let MetaEntry::Object { object: Some(info), .. } = rec.entry else { panic!("{key} is not an object") };
    let DataLayout::Extents(extents) = info.data else { panic!("{key} is inline") };
    let e = &extents[0];
    assert_ne!(e.missing_slots, 0, "{key} was written with nodes down: its record names missing slots");
    let groups = (e.size as usize).div_ceil(group_bytes(&e.geometry));
    let deadline = Instant::now() + Duration::from_secs(90);
    for &n in nodes {
        let node_id = format!("node{}", n + 1);
        for (slot, s) in set.iter().enumerate().filter(|(_, s)| s.node == node_id) {
            loop {
                let held = match ask(c.node_addrs[n], Request::List { drive: s.drive as u16, partition }).await.unwrap()
                {
                    Ok(Reply::Keys(keys)) => keys.into_iter().map(|(k, _)| k).collect::<Vec<_>>(),
                    _ => vec![],
                };
                let want: Vec<_> = (0..groups).map(|g| piece_key(partition, e.data_id, g, slot)).collect();
                if want.iter().all(|k| held.contains(k)) {
                    break;
                }
                assert!(Instant::now() < deadline, "{node_id} did not rebuild slot {slot} of {key}:\n{}", c.logs());
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nine_nodes_three_gateways_survive_three_failures_and_repair() {
    let started = Instant::now();
    let mut c = tokio::task::block_in_place(ClusterUnderTest::up);
    eprintln!("cluster up in {:?}", started.elapsed());
    let (g1, g2, g3) = (c.s3(0), c.s3(1), c.s3(2));
    let bucket = "media";
    g1.create_bucket().bucket(bucket).send().await.expect("create bucket through gateway 1");

    // Written through one gateway, read byte-identical through the others.
    let big = random_bytes(15_000_000, 1);
    put(&g1, bucket, "video/big.mp4", &big).await;
    same(&get(&g2, bucket, "video/big.mp4").await, &big, "big through gateway 2");
    same(&get(&g3, bucket, "video/big.mp4").await, &big, "big through gateway 3");
    let small = random_bytes(1000, 2);
    put(&g2, bucket, "small", &small).await;
    for (i, g) in [&g1, &g2, &g3].into_iter().enumerate() {
        let listed = g.list_objects_v2().bucket(bucket).send().await.expect("list");
        let keys: Vec<_> = listed.contents().iter().filter_map(|o| o.key()).collect();
        assert_eq!(keys, ["small", "video/big.mp4"], "listing through gateway {}", i + 1);
        let big_entry = &listed.contents()[1];
        assert_eq!(big_entry.size(), Some(15_000_000));
    }
    // A ranged read deep inside the object.
    let r = g3.get_object().bucket(bucket).key("video/big.mp4").range("bytes=9000000-9999999").send().await.unwrap();
    same(&r.body.collect().await.unwrap().into_bytes(), &big[9_000_000..10_000_000], "range");

    // A multipart upload spread over the gateways: created through 1, parts
    // through 2 and 3, listed through 1, completed through 2, read through 3.
    let (p1, p2) = (random_bytes(5 << 20, 20), random_bytes(3_000_000, 21));
    let mp_key = "video/multipart.mp4";
    let created = g1.create_multipart_upload().bucket(bucket).key(mp_key).send().await.expect("create upload");
    let upload_id = created.upload_id().unwrap().to_string();
    let mut completed = Vec::new();
    for (n, (g, body)) in [(&g2, &p1), (&g3, &p2)].into_iter().enumerate() {
        let part_number = n as i32 + 1;
        let out = g
            .upload_part()
            .bucket(bucket)
            .key(mp_key)
            .upload_id(&upload_id)
            .part_number(part_number)
            .body(ByteStream::from(body.clone()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("part {part_number}: {e:?}"));
        completed.push(
            aws_sdk_s3::types::CompletedPart::builder().part_number(part_number).e_tag(out.e_tag().unwrap()).build(),
        );
    }
    let uploads = g3.list_multipart_uploads().bucket(bucket).send().await.expect("list uploads");
    let open: Vec<_> = uploads.uploads().iter().map(|u| (u.key(), u.upload_id())).collect();
    assert_eq!(open, [(Some(mp_key), Some(upload_id.as_str()))], "the open upload, listed through gateway 3");
    let listed = g1.list_parts().bucket(bucket).key(mp_key).upload_id(&upload_id).send().await.expect("list parts");
    let sizes: Vec<_> = listed.parts().iter().map(|p| (p.part_number(), p.size())).collect();
    assert_eq!(sizes, [(Some(1), Some(5 << 20)), (Some(2), Some(3_000_000))]);
    g2.complete_multipart_upload()
        .bucket(bucket)
        .key(mp_key)
        .upload_id(&upload_id)
        .multipart_upload(aws_sdk_s3::types::CompletedMultipartUpload::builder().set_parts(Some(completed)).build())
        .send()
        .await
        .expect("complete");
    let whole: Vec<u8> = [p1.as_slice(), p2.as_slice()].concat();
    same(&get(&g3, bucket, mp_key).await, &whole, "multipart object through gateway 3");
    let part2 = g1.get_object().bucket(bucket).key(mp_key).part_number(2).send().await.expect("part 2");
    assert_eq!(part2.parts_count(), Some(2));
    same(&part2.body.collect().await.unwrap().into_bytes(), &p2, "partNumber=2");
    let err = g3.list_parts().bucket(bucket).key(mp_key).upload_id(&upload_id).send().await.expect_err("completed");
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(404), "a completed upload is gone");
    let uploads = g2.list_multipart_uploads().bucket(bucket).send().await.expect("list uploads");
    assert!(uploads.uploads().is_empty(), "no upload open after the completion");
    // An aborted upload is gone from every gateway.
    let aborted = g1.create_multipart_upload().bucket(bucket).key("aborted").send().await.unwrap();
    let aborted_id = aborted.upload_id().unwrap();
    g2.upload_part()
        .bucket(bucket)
        .key("aborted")
        .upload_id(aborted_id)
        .part_number(1)
        .body(ByteStream::from(random_bytes(1_000_000, 22)))
        .send()
        .await
        .expect("part of the aborted upload");
    g3.abort_multipart_upload().bucket(bucket).key("aborted").upload_id(aborted_id).send().await.expect("abort");
    let err = g1
        .upload_part()
        .bucket(bucket)
        .key("aborted")
        .upload_id(aborted_id)
        .part_number(2)
        .body(ByteStream::from(vec![1u8; 10]))
        .send()
        .await
        .expect_err("a part of an aborted upload");
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(404));
    assert!(g2.head_object().bucket(bucket).key("aborted").send().await.is_err(), "no object from an abort");

    // m = 3 nodes down: reads decode around them, writes still succeed.
    for i in 0..3 {
        c.kill_node(i);
    }
    same(&get(&g2, bucket, "video/big.mp4").await, &big, "big with 3 nodes down");
    let degraded = random_bytes(15_000_000, 3);
    put(&g3, bucket, "video/written-degraded.mp4", &degraded).await;
    same(&get(&g1, bucket, "video/written-degraded.mp4").await, &degraded, "written with 3 nodes down");
    let small2 = random_bytes(5000, 4);
    put(&g1, bucket, "small-degraded", &small2).await;

    // A 4th down: fewer than k = 6 live slots. Requests fail fast with 503 and
    // nothing partial comes back.
    c.kill_node(3);
    for (what, g) in [("gateway 1", &g1), ("gateway 2", &g2)] {
        let t = Instant::now();
        let err = g.get_object().bucket(bucket).key("video/big.mp4").send().await.expect_err("read with 4 down");
        assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(503), "{what} read: {err:?}");
        assert!(t.elapsed() < Duration::from_secs(10), "{what}: the read failed after {:?}", t.elapsed());
        let t = Instant::now();
        let err = g
            .put_object()
            .bucket(bucket)
            .key("refused")
            .body(ByteStream::from(random_bytes(2_000_000, 5)))
            .send()
            .await
            .expect_err("write with 4 down");
        assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(503), "{what} write: {err:?}");
        assert!(t.elapsed() < Duration::from_secs(10), "{what}: the write failed after {:?}", t.elapsed());
    }

    // The 4 come back: they catch up from Kafka and rebuild what they missed.
    tokio::task::block_in_place(|| c.start_nodes(&[0, 1, 2, 3]));
    wait_repaired(&c, bucket, "video/written-degraded.mp4", &[0, 1, 2]).await;
    let refused = g1.head_object().bucket(bucket).key("refused").send().await;
    assert!(refused.is_err(), "the refused write is not visible");

    // 3 *other* nodes down: every object still reads back, through every gateway.
    for i in 4..7 {
        c.kill_node(i);
    }
    for (i, g) in [&g1, &g2, &g3].into_iter().enumerate() {
        let what = format!("gateway {} with nodes 5-7 down", i + 1);
        same(&get(g, bucket, "video/big.mp4").await, &big, &what);
        same(&get(g, bucket, "video/written-degraded.mp4").await, &degraded, &what);
        same(&get(g, bucket, "small").await, &small, &what);
        same(&get(g, bucket, "small-degraded").await, &small2, &what);
        same(&get(g, bucket, "video/multipart.mp4").await, &whole, &what);
    }
    tokio::task::block_in_place(|| {
        for i in 4..7 {
            c.start_node(i);
        }
    });

    // Concurrent writers of one key through different gateways: one winner, and
    // every gateway agrees on it.
    for round in 0..3u64 {
        let bodies: Vec<Vec<u8>> =
            (0..3).map(|g| random_bytes(300_000 + g * 1000, 100 + round * 10 + g as u64)).collect();
        let key = format!("contended-{round}");
        let writes = [&g1, &g2, &g3].into_iter().zip(&bodies).map(|(g, b)| put(g, bucket, &key, b));
        futures::future::join_all(writes).await;
        let seen: Vec<Vec<u8>> =
            futures::future::join_all([&g1, &g2, &g3].into_iter().map(|g| get(g, bucket, &key))).await;
        assert!(bodies.contains(&seen[0]), "round {round}: the winner is one of the writes");
        assert!(seen.iter().all(|s| *s == seen[0]), "round {round}: every gateway sees the same winner");
    }

    // A gateway killed mid-upload: no object appears, and the pieces it wrote are
    // collected by the nodes; the pieces of committed objects stay.
    let key = "video/interrupted.mp4";
    let before = pieces_of_partition(&c, bucket, key).await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(2);
    let frames = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, std::io::Error>(http_body::Frame::data(b)), rx))
    });
    let body = ByteStream::new(SdkBody::from_body_1_x(http_body_util::StreamBody::new(frames)));
    let upload = tokio::spawn({
        let g3 = g3.clone();
        async move { g3.put_object().bucket(bucket).key(key).content_length(15_000_000).body(body).send().await }
    });
    for i in 0..10u64 {
        tx.send(Bytes::from(random_bytes(1_000_000, 1000 + i))).await.unwrap();
    }
    // Wait until the gateway has written pieces, then kill it mid-body.
    let deadline = Instant::now() + Duration::from_secs(30);
    let orphans = loop {
        let now = pieces_of_partition(&c, bucket, key).await;
        let new: Vec<_> = now.difference(&before).cloned().collect();
        if !new.is_empty() {
            break new;
        }
        assert!(Instant::now() < deadline, "the interrupted upload wrote no piece:\n{}", c.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    c.gateways[2].kill9();
    assert!(upload.await.unwrap().is_err(), "the upload through the killed gateway fails");
    drop(tx);
    let head = g1.head_object().bucket(bucket).key(key).send().await;
    assert_eq!(head.expect_err("no partial object").raw_response().map(|r| r.status().as_u16()), Some(404));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = pieces_of_partition(&c, bucket, key).await;
        if orphans.iter().all(|p| !now.contains(p)) {
            break;
        }
        assert!(Instant::now() < deadline, "orphaned pieces not collected:\n{}", c.logs());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // What is committed survived the collection (losers of the contended writes
    // were collected too: their pieces are garbage).
    same(&get(&g1, bucket, "video/big.mp4").await, &big, "big after the collection");
    same(&get(&g2, bucket, "video/written-degraded.mp4").await, &degraded, "degraded after the collection");
    for round in 0..3 {
        let key = format!("contended-{round}");
        let (a, b) = (get(&g1, bucket, &key).await, get(&g2, bucket, &key).await);
        assert!(a == b && !a.is_empty(), "{key} after the collection");
    }
    eprintln!("cluster test took {:?}", started.elapsed());
}

/// Every piece (node, drive, key) of `bucket/key`'s partition on the running nodes,
/// metadata records left out.
async fn pieces_of_partition(
    c: &ClusterUnderTest,
    bucket: &str,
    key: &str,
) -> std::collections::HashSet<(usize, u16, tessera_engine::format::ShardKey)> {
    let mut etcd = Cluster::connect(&c.etcd.url, CLUSTER).await.unwrap();
    let t = etcd.topology().await.unwrap();
    let partition = t.keyspace.partition_of(bucket, key);
    let set = t.placement.as_ref().unwrap().sets[partition as usize].clone();
    let mut out = std::collections::HashSet::new();
    for (n, addr) in c.node_addrs.iter().enumerate() {
        if c.nodes[n].is_none() {
            continue;
        }
        let node_id = format!("node{}", n + 1);
        for s in set.iter().filter(|s| s.node == node_id) {
            let (addr, drive) = (*addr, s.drive as u16);
            let keys = tokio::task::spawn_blocking(move || {
                wire::Client::connect(addr, SECRET.as_bytes(), Duration::from_secs(5))
                    .and_then(|mut cl| cl.call(&Request::List { drive, partition }))
            })
            .await
            .unwrap();
            if let Ok(Reply::Keys(keys)) = keys {
                out.extend(keys.into_iter().filter(|(k, _)| k.piece != meta::META_PIECE).map(|(k, _)| (n, drive, k)));
            }
        }
    }
    out
}

/// `tessera gateway` started wrongly exits with a message that says what to fix.
#[test]
fn a_gateway_refuses_bad_starts_with_clear_errors() {
    let etcd = Etcd::start();
    let run = |cluster: &str, env: &[(&str, &str)]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tessera"));
        cmd.args(["gateway", "--etcd", &etcd.url, "--cluster", cluster, "--kafka", "127.0.0.1:1"])
            .args(["--listen", &format!("127.0.0.1:{}", free_port()), "--cores", "1", "--no-pin"])
            .env_remove("TESSERA_ACCESS_KEY")
            .env_remove("TESSERA_SECRET_KEY")
            .env_remove("TESSERA_CLUSTER_SECRET");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run tessera gateway");
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let keys = [("TESSERA_ACCESS_KEY", ACCESS_KEY), ("TESSERA_SECRET_KEY", SECRET_KEY)];
    let all = [keys[0], keys[1], ("TESSERA_CLUSTER_SECRET", SECRET)];
    let (ok, err) = run(CLUSTER, &keys);
    assert!(!ok && err.contains("TESSERA_CLUSTER_SECRET"), "no cluster secret: {err}");
    let (ok, err) = run(CLUSTER, &[("TESSERA_CLUSTER_SECRET", SECRET)]);
    assert!(!ok && err.contains("TESSERA_ACCESS_KEY"), "no S3 keys: {err}");
    let (ok, err) = run(CLUSTER, &[all[0], ("TESSERA_SECRET_KEY", "short"), all[2]]);
    assert!(!ok && err.contains("secret key"), "a bad S3 secret key: {err}");
    let (ok, err) = run(CLUSTER, &all);
    assert!(!ok && err.contains("not initialised"), "no cluster in etcd: {err}");
    let (ok, err) = run("Bad Name!", &all);
    assert!(!ok && err.to_lowercase().contains("cluster"), "a bad cluster name: {err}");
}
