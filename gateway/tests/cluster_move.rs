//! Placement moves end to end, as an operator runs them: a real etcd, tansu, 9
//! `tessera node` processes and 2 gateways, aws-sdk-s3 (no retries).
//!
//! * objects written (coded, inline, multipart), then a 10th node started: it joins,
//!   a move to a placement giving it its share begins, and while it goes on writes
//!   through one gateway read back byte-identical through the other, none failing;
//! * the move ends with the 10th node holding its share and every piece of its
//!   slots (copied or rebuilt), and the previous holders free what they gave up;
//! * then a node is drained (`cluster remove-node`): its slots move to the others,
//!   every member then holds every piece of its slots, and it stops being a member;
//! * with 3 nodes killed, every object reads back through both gateways.
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use tessera_engine::object::meta::{self, DataLayout, MetaEntry};
use tessera_engine::placement::Placement;
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

const SECRET: &str = "cluster-move-test-secret-0123456789";
const ACCESS_KEY: &str = "TSCLUSTERMOVE0001";
const SECRET_KEY: &str = "cluster-move-secret-key-0123456789";
const CLUSTER: &str = "movetest";
const PARTITIONS: u32 = 16;

struct Cl {
    etcd: Etcd,
    kafka: Tansu,
    dir: tempfile::TempDir,
    addrs: Vec<SocketAddr>,
    nodes: Vec<Option<Proc>>,
    gateways: Vec<Proc>,
    urls: Vec<String>,
}

impl Cl {
    fn node_cmd(&self, i: usize) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_tessera"));
        c.args(["node", "--etcd", &self.etcd.url, "--cluster", CLUSTER, "--kafka", &self.kafka.brokers])
            .args(["--id", &format!("node{}", i + 1), "--drives", "1", "--cores", "1", "--no-pin"])
            .args(["--segment-mib", "16", "--io-memory", "4194304", "--lease-secs", "2"])
            .args(["--gc-grace-secs", "10", "--gc-every-secs", "1"])
            .arg("--data")
            .arg(self.dir.path().join(format!("node{}", i + 1)))
            .args(["--listen", &self.addrs[i].to_string()])
            .env("TESSERA_CLUSTER_SECRET", SECRET)
            .env("TESSERA_LOG", "info");
        c
    }

    /// Starts node `i` (a new one when `i` is past the known ones) and waits for it.
    fn start_node(&mut self, i: usize) {
        if i == self.addrs.len() {
            self.addrs.push(SocketAddr::from(([127, 0, 0, 1], free_port())));
            self.nodes.push(None);
        }
        let log = self.dir.path().join(format!("node{}.log", i + 1));
        self.nodes[i] = Some(Proc::start_ready(self.node_cmd(i), log, &format!("node{}", i + 1)));
    }

    fn up(nodes: usize, gateways: usize) -> Cl {
        let etcd = Etcd::start();
        let kafka = Tansu::start();
        let mut dir = tempfile::tempdir().unwrap();
        // TESSERA_TEST_KEEP=1: the nodes' data and logs stay for a post-mortem.
        if std::env::var_os("TESSERA_TEST_KEEP").is_some() {
            dir.disable_cleanup(true);
            eprintln!("KEEPDIR {}", dir.path().display());
        }
        let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args(["cluster", "init", "--etcd", &etcd.url, "--cluster", CLUSTER, "--code", "6+3"])
            .args(["--partitions", &PARTITIONS.to_string()])
            .output()
            .unwrap();
        assert!(out.status.success(), "cluster init: {}", String::from_utf8_lossy(&out.stderr));
        let addrs = (0..nodes).map(|_| SocketAddr::from(([127, 0, 0, 1], free_port()))).collect();
        let mut c =
            Cl { etcd, kafka, dir, addrs, nodes: (0..nodes).map(|_| None).collect(), gateways: vec![], urls: vec![] };
        let started: Vec<(usize, Proc)> = (0..nodes)
            .map(|i| (i, Proc::start(c.node_cmd(i), c.dir.path().join(format!("node{}.log", i + 1)))))
            .collect();
        for (i, mut p) in started {
            p.wait_ready(&format!("node{}", i + 1));
            c.nodes[i] = Some(p);
        }
        for g in 0..gateways {
            let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_tessera"));
            cmd.args(["gateway", "--etcd", &c.etcd.url, "--cluster", CLUSTER, "--kafka", &c.kafka.brokers])
                .args(["--listen", &addr.to_string(), "--cores", "1", "--no-pin"])
                .env("TESSERA_CLUSTER_SECRET", SECRET)
                .env("TESSERA_ACCESS_KEY", ACCESS_KEY)
                .env("TESSERA_SECRET_KEY", SECRET_KEY);
            let log = c.dir.path().join(format!("gateway{}.log", g + 1));
            c.gateways.push(Proc::start_ready(cmd, log, &format!("gateway{}", g + 1)));
            c.urls.push(format!("http://{addr}"));
        }
        c
    }

    fn s3(&self, g: usize) -> Client {
        let creds = Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "cluster-move-test");
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&self.urls[g])
            .force_path_style(true)
            .credentials_provider(creds)
            .retry_config(RetryConfig::disabled())
            .timeout_config(TimeoutConfig::builder().operation_timeout(Duration::from_secs(60)).build())
            .build();
        Client::from_conf(conf)
    }

    fn status(&self) -> serde_json::Value {
        let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args(["cluster", "status", "--json", "--etcd", &self.etcd.url, "--cluster", CLUSTER])
            .output()
            .unwrap();
        assert!(out.status.success(), "status: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
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

    async fn placement(&self) -> Placement {
        let mut etcd = Cluster::connect(&self.etcd.url, CLUSTER).await.unwrap();
        etcd.placement().await.unwrap().unwrap()
    }
}

fn member<'a>(s: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    s["members"].as_array().unwrap().iter().find(|m| m["id"] == id).unwrap_or_else(|| panic!("{id} in {s}"))
}

fn bytes(len: usize, seed: u64) -> Vec<u8> {
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

async fn put(s3: &Client, key: &str, body: &[u8]) {
    s3.put_object()
        .bucket("media")
        .key(key)
        .body(ByteStream::from(body.to_vec()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
}

async fn check(s3: &Client, key: &str, want: &[u8], what: &str) {
    if let Err(e) = try_check(s3, key, want, what).await {
        panic!("{e}");
    }
}

async fn try_check(s3: &Client, key: &str, want: &[u8], what: &str) -> Result<(), String> {
    let out = s3.get_object().bucket("media").key(key).send().await.map_err(|e| format!("{what}: get {key}: {e:?}"))?;
    let got = out.body.collect().await.map_err(|e| format!("{what}: {key} body: {e}"))?.into_bytes();
    if got.len() != want.len() {
        return Err(format!("{what}: {key}: {} bytes, {} expected", got.len(), want.len()));
    }
    if got != want {
        return Err(format!("{what}: {key} bytes differ"));
    }
    Ok(())
}

fn call(addr: SocketAddr, req: Request) -> Result<Reply, wire::WireError> {
    wire::Client::connect(addr, SECRET.as_bytes(), Duration::from_secs(5)).and_then(|mut c| c.call(&req))
}

/// Data pieces (no metadata records) node `n` lists for `partition` on drive 0.
fn pieces(c: &Cl, n: usize, partition: u32) -> Vec<tessera_engine::format::ShardKey> {
    match call(c.addrs[n], Request::List { drive: 0, partition }) {
        Ok(Reply::Keys(keys)) => keys.into_iter().map(|(k, _)| k).filter(|k| k.piece != meta::META_PIECE).collect(),
        other => panic!("list on node{}: {other:?}", n + 1),
    }
}

/// Waits until no move is in progress; returns how long that took.
fn wait_moved(c: &Cl, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let s = c.status();
        if s["moving"].is_null() {
            return started.elapsed();
        }
        assert!(started.elapsed() < within, "the move did not end: {s}\n{}", c.logs());
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Asserts node `n` holds every piece of its slots of every object in `keys`.
async fn holds_its_slots(c: &Cl, n: usize, keys: &[String]) {
    let mut etcd = Cluster::connect(&c.etcd.url, CLUSTER).await.unwrap();
    let t = etcd.topology().await.unwrap();
    let p = t.placement.as_ref().unwrap();
    let id = format!("node{}", n + 1);
    let mut checked = 0;
    for key in keys {
        let partition = t.keyspace.partition_of("media", key);
        let Some(slot) = p.sets[partition as usize].iter().position(|s| s.node == id) else { continue };
        // The record from a node of the set (node n itself has applied it too).
        let req = Request::MetaGet {
            partition,
            id: tessera_engine::applied::MetaId::Object { bucket: "media".into(), key: key.clone() },
        };
        let rec = match call(c.addrs[n], req).unwrap() {
            Reply::Meta { record: Some(r), .. } => meta::decode(&r).unwrap(),
            other => panic!("{id} has no record of {key}: {other:?}"),
        };
        let MetaEntry::Object { object: Some(info), .. } = rec.entry else { panic!("{key} is not an object") };
        let DataLayout::Extents(extents) = info.data else { continue };
        let held = pieces(c, n, partition);
        for e in &extents {
            for g in 0..(e.size as usize).div_ceil(group_bytes(&e.geometry)) {
                let want = piece_key(partition, e.data_id, g, slot);
                assert!(
                    held.contains(&want),
                    "{id} lacks group {g} of slot {slot} of {key} (partition {partition})\n{}",
                    c.logs()
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 0, "{id} holds a slot of some coded object");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_added_and_drained_move_the_least_data_while_reads_and_writes_go_on() {
    let started = Instant::now();
    let mut c = Cl::up(9, 2);
    let (s1, s2) = (c.s3(0), c.s3(1));
    s1.create_bucket().bucket("media").send().await.expect("create bucket");

    // Before: coded objects, inline ones and a multipart object.
    let mut objects: Vec<(String, Vec<u8>)> = Vec::new();
    for i in 0..6u64 {
        let (key, body) = (format!("big-{i}"), bytes(7_000_000, i));
        put(&s1, &key, &body).await;
        objects.push((key, body));
    }
    for i in 0..8u64 {
        let (key, body) = (format!("small-{i}"), bytes(10_000, 100 + i));
        put(&s2, &key, &body).await;
        objects.push((key, body));
    }
    let mp = s1.create_multipart_upload().bucket("media").key("multi").send().await.unwrap();
    let upload = mp.upload_id().unwrap().to_string();
    let mut whole = Vec::new();
    let mut done = Vec::new();
    for (n, len) in [(1, 5 << 20), (2, 5 << 20), (3, 1 << 20)] {
        let part = bytes(len, 200 + n as u64);
        let r = s2
            .upload_part()
            .bucket("media")
            .key("multi")
            .upload_id(&upload)
            .part_number(n)
            .body(ByteStream::from(part.clone()))
            .send()
            .await
            .unwrap();
        done.push(CompletedPart::builder().part_number(n).e_tag(r.e_tag().unwrap()).build());
        whole.extend(part);
    }
    s1.complete_multipart_upload()
        .bucket("media")
        .key("multi")
        .upload_id(&upload)
        .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(done)).build())
        .send()
        .await
        .unwrap();
    objects.push(("multi".into(), whole));
    let before = c.placement().await;
    assert_eq!(c.status()["placement_version"], 1);

    // A 10th node joins: a move to a placement giving it its share begins.
    c.start_node(9);
    let s = c.status();
    assert_eq!(s["moving"]["version"], 2, "{s}");
    let share = member(&s, "node10")["target_slots"].as_u64().unwrap();
    assert!((14..=15).contains(&share), "16 x 9 / 10 = 14.4 slots, got {share}: {s}");
    assert_eq!(s["moving"]["slots_moving"].as_u64(), Some(share), "only the newcomer takes slots: {s}");

    // While it moves: every write reads back through the other gateway, nothing fails.
    let move_started = Instant::now();
    let (mut during, mut phases) = (0u64, std::collections::BTreeSet::new());
    loop {
        let s = c.status();
        if s["moving"].is_null() {
            break;
        }
        phases.insert(s["moving"]["phase"].as_str().unwrap().to_string());
        assert!(move_started.elapsed() < Duration::from_secs(120), "the move did not end: {s}\n{}", c.logs());
        let (key, body) =
            (format!("during-{during}"), bytes(if during % 2 == 0 { 7_000_000 } else { 10_000 }, 1000 + during));
        let (w, r) = if during % 2 == 0 { (&s1, &s2) } else { (&s2, &s1) };
        put(w, &key, &body).await;
        check(r, &key, &body, "during the move").await;
        let (old, old_body) = &objects[(during as usize * 7) % objects.len()];
        check(w, old, old_body, "during the move").await;
        objects.push((key, body));
        during += 1;
    }
    let moved_in = move_started.elapsed();
    assert!(phases.contains("syncing") && during >= 3, "phases seen {phases:?}, {during} objects written");
    let s = c.status();
    assert_eq!(s["placement_version"], 2, "{s}");
    let slots: u64 = s["members"].as_array().unwrap().iter().map(|m| m["slots"].as_u64().unwrap()).sum();
    assert_eq!(slots, PARTITIONS as u64 * 9, "{s}");
    assert_eq!(member(&s, "node10")["slots"].as_u64(), Some(share), "{s}");

    // node10 holds every piece of its slots; the previous holders free theirs.
    let keys: Vec<String> = objects.iter().map(|(k, _)| k.clone()).collect();
    holds_its_slots(&c, 9, &keys).await;
    let after = c.placement().await;
    let gave: Vec<(usize, u32)> = (0..PARTITIONS)
        .filter_map(|p| {
            let slot = after.sets[p as usize].iter().position(|s| s.node == "node10")?;
            let from: usize = before.sets[p as usize][slot].node.trim_start_matches("node").parse().unwrap();
            Some((from - 1, p))
        })
        .collect();
    assert_eq!(gave.len() as u64, share);
    let deadline = Instant::now() + Duration::from_secs(40);
    for &(n, p) in &gave {
        while !pieces(&c, n, p).is_empty() {
            assert!(Instant::now() < deadline, "node{} still holds pieces of partition {p} it gave up", n + 1);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    // node9 is drained: its slots move to the others, and it stops being a member.
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["cluster", "remove-node", "--etcd", &c.etcd.url, "--cluster", CLUSTER, "--id", "node9"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && said.contains("moving to placement version 3"), "{said}");
    for i in 0..4u64 {
        let (key, body) = (format!("draining-{i}"), bytes(3_000_000, 2000 + i));
        put(&s2, &key, &body).await;
        check(&s1, &key, &body, "while node9 drains").await;
        objects.push((key, body));
    }
    let drained_in = wait_moved(&c, Duration::from_secs(120));
    // The move's last step retires node9; a coordinator that died between the two
    // transactions leaves it to the next step (1 s later), so allow a few.
    let deadline = Instant::now() + Duration::from_secs(10);
    let s = loop {
        let s = c.status();
        if s["members"].as_array().unwrap().iter().all(|m| m["id"] != "node9") {
            break s;
        }
        assert!(Instant::now() < deadline, "node9 is no member: {s}");
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(s["placement_version"], 3, "{s}");
    // Every member holds every piece of its slots (node9's went to the others).
    let keys: Vec<String> = objects.iter().map(|(k, _)| k.clone()).collect();
    for n in (0..10).filter(|&n| n != 8) {
        holds_its_slots(&c, n, &keys).await;
    }
    c.nodes[8].take().unwrap().kill9();

    // With 3 more nodes down, every object reads back through both gateways.
    for n in 0..3 {
        c.nodes[n].take().unwrap().kill9();
    }
    tokio::time::sleep(Duration::from_secs(3)).await; // leases of 2 s
    for (key, body) in &objects {
        for s3 in [&s1, &s2] {
            if let Err(e) = try_check(s3, key, body, "nodes 1-3 and 9 down").await {
                panic!("{e}\nplacement: {:?}\n{}", c.placement().await.sets, c.logs());
            }
        }
    }
    eprintln!(
        "placement moves: node added in {moved_in:?} ({during} objects written meanwhile, phases {phases:?}), \
         node drained in {drained_in:?}; test took {:?}",
        started.elapsed()
    );
}
