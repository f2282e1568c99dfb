//! The commit log end to end: commit records appended to Kafka (tansu) the way a
//! gateway appends them are applied, in log order, by every node of the partition's
//! erasure set (real `tessera node` processes), and read back over the piece
//! protocol. A node killed meanwhile catches up from its last applied position when
//! it comes back; a bad record is skipped without stalling its partition.
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use tessera_engine::applied::MetaId;
use tessera_engine::object::meta::{self, DataLayout, MetaEntry, MetaRecord, ObjectInfo};
use tessera_engine::object::Keyspace;
use tessera_gateway::kafka::KafkaLog;
use tessera_gateway::wire::{Client, ErrorCode, Reply, Request};

#[path = "common/etcd.rs"]
mod etcd;
#[path = "common/proc.rs"]
mod proc;
#[path = "common/tansu.rs"]
mod tansu;
use etcd::{free_port, Etcd};
use proc::Proc;
use tansu::Tansu;

const SECRET: &str = "commit-test-cluster-secret-42";
const PARTITIONS: u32 = 8;
const BUCKET: &str = "media";

/// A node process, SIGKILLed on drop (a crash, not a clean stop).
struct Node {
    _proc: Proc,
    addr: SocketAddr,
}

impl Node {
    fn start(etcd: &Etcd, kafka: &Tansu, id: &str, data: &Path, addr: SocketAddr) -> Node {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tessera"));
        cmd.args(["node", "--etcd", &etcd.url, "--kafka", &kafka.brokers, "--id", id, "--cores", "2", "--no-pin"])
            .arg("--data")
            .arg(data)
            .args(["--listen", &addr.to_string(), "--segment-mib", "16", "--io-memory", "4194304"])
            .args(["--lease-secs", "2"])
            .env("TESSERA_CLUSTER_SECRET", SECRET);
        let log = data.with_extension("log");
        Node { _proc: Proc::start_ready(cmd, log, &format!("node {id}")), addr }
    }

    fn client(&self) -> Client {
        Client::connect(self.addr, SECRET.as_bytes(), Duration::from_secs(40)).expect("connect")
    }
}

fn object_record(key: &str, body: Option<&[u8]>) -> Vec<u8> {
    let object = body.map(|b| ObjectInfo {
        size: b.len() as u64,
        etag: format!("\"{:x}\"", b.len()),
        modified_ms: 1_700_000_000_000,
        headers: vec![("content-type".into(), "video/mp4".into())],
        data: DataLayout::Inline(b.to_vec()),
        parts: vec![],
    });
    meta::encode(&MetaRecord {
        version: 0,
        entry: MetaEntry::Object { bucket: BUCKET.into(), key: key.into(), object },
    })
}

fn id(key: &str) -> MetaId {
    MetaId::Object { bucket: BUCKET.into(), key: key.into() }
}

/// Waits until `node` has applied `partition` to `position`.
fn wait_applied(c: &mut Client, partition: u32, position: u64) {
    match c.call(&Request::MetaWait { partition, position, timeout_ms: 30_000 }).unwrap() {
        Reply::Applied(a) => assert!(a >= position, "applied {a} < {position}"),
        other => panic!("MetaWait p{partition}@{position}: {other:?}"),
    }
}

/// The object record a node has applied for `key` (None: no record).
fn get(c: &mut Client, ks: &Keyspace, key: &str) -> Option<MetaRecord> {
    let p = ks.partition_of(BUCKET, key);
    match c.call(&Request::MetaGet { partition: p, id: id(key) }).unwrap() {
        Reply::Meta { record, .. } => record.map(|r| meta::decode(&r).expect("a stored record decodes")),
        other => panic!("MetaGet {key}: {other:?}"),
    }
}

fn body_of(rec: &MetaRecord) -> Option<Vec<u8>> {
    match &rec.entry {
        MetaEntry::Object { object: Some(o), .. } => match &o.data {
            DataLayout::Inline(d) => Some(d.clone()),
            DataLayout::Extents(_) => panic!("inline expected"),
        },
        MetaEntry::Object { object: None, .. } => None,
        other => panic!("object record expected: {other:?}"),
    }
}

fn listed(c: &mut Client) -> Vec<String> {
    let mut keys = Vec::new();
    for p in 0..PARTITIONS {
        match c
            .call(&Request::MetaList {
                partition: p,
                bucket: BUCKET.into(),
                prefix: String::new(),
                start_after: String::new(),
                limit: 1000,
            })
            .unwrap()
        {
            // Deletions are listed too (for readers merging nodes), marked not live.
            Reply::Listing { entries, .. } => keys.extend(entries.into_iter().filter(|e| e.live).map(|e| e.key)),
            other => panic!("{other:?}"),
        }
    }
    keys.sort();
    keys
}

#[test]
fn nodes_apply_the_commit_log_in_order_and_catch_up_after_a_crash() {
    let etcd = Etcd::start();
    let kafka = Tansu::start();
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["cluster", "init", "--code", "2+1", "--partitions", &PARTITIONS.to_string(), "--etcd", &etcd.url])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let status = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["cluster", "status", "--json", "--etcd", &etcd.url])
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let hash_key = u128::from_str_radix(status["config"]["hash_key"].as_str().unwrap(), 16).unwrap();
    let ks = Keyspace { hash_key, partitions: PARTITIONS };

    let dir = tempfile::tempdir().unwrap();
    let addrs: Vec<SocketAddr> = (0..3).map(|_| format!("127.0.0.1:{}", free_port()).parse().unwrap()).collect();
    let mut nodes: Vec<Option<Node>> = (0..3)
        .map(|i| {
            Some(Node::start(&etcd, &kafka, &format!("n{}", i + 1), &dir.path().join(format!("n{}", i + 1)), addrs[i]))
        })
        .collect();

    // The gateway's side: append commit records, keyed by partition.
    let log = KafkaLog::start(&kafka.brokers, "tessera.default.commits", PARTITIONS).expect("commit log");
    let appender = log.appender();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let append = |key: &str, body: Option<&[u8]>| -> (u32, u64) {
        let p = ks.partition_of(BUCKET, key);
        let pos = rt.block_on(appender.append(p, key.as_bytes().to_vec(), object_record(key, body))).expect("append");
        (p, pos)
    };

    let mut latest: Vec<(String, u32, u64, Option<Vec<u8>>)> = Vec::new();
    for i in 0..24 {
        let key = format!("seg/{i:03}.ts");
        let body = format!("segment {i}").into_bytes();
        let (p, pos) = append(&key, Some(&body));
        latest.push((key, p, pos, Some(body)));
    }
    // Two writers of one key: the later log position wins, on every node.
    let (p_a, pos_a) = append("seg/000.ts", Some(b"writer A"));
    let (_, pos_b) = append("seg/000.ts", Some(b"writer B"));
    assert!(pos_b > pos_a);
    latest[0] = ("seg/000.ts".into(), p_a, pos_b, Some(b"writer B".to_vec()));
    // A deletion is a record too.
    let (p_d, pos_d) = append("seg/001.ts", None);
    latest[1] = ("seg/001.ts".into(), p_d, pos_d, None);
    // A record that is not a commit record: skipped, and the partition goes on.
    let bad_p = latest[2].1;
    let bad_pos = rt.block_on(appender.append(bad_p, b"x".to_vec(), b"not a record".to_vec())).unwrap();
    let (_, after_bad) = append(&latest[2].0.clone(), Some(b"after the bad record"));
    latest[2].2 = after_bad;
    latest[2].3 = Some(b"after the bad record".to_vec());
    assert!(after_bad > bad_pos);

    let check_all = |nodes: &[Option<Node>], latest: &[(String, u32, u64, Option<Vec<u8>>)]| {
        for n in nodes.iter().flatten() {
            let mut c = n.client();
            for (key, p, pos, body) in latest {
                wait_applied(&mut c, *p, *pos);
                let rec = get(&mut c, &ks, key).unwrap_or_else(|| panic!("{key}: no record on {}", n.addr));
                assert_eq!(rec.version, *pos, "{key}: the record's version is its log position");
                assert_eq!(body_of(&rec), *body, "{key} on {}", n.addr);
            }
            let want: Vec<String> = {
                let mut v: Vec<String> =
                    latest.iter().filter(|(_, _, _, b)| b.is_some()).map(|(k, ..)| k.clone()).collect();
                v.sort();
                v
            };
            assert_eq!(listed(&mut c), want, "listing on {}", n.addr);
        }
    };
    check_all(&nodes, &latest);

    // A wait for a position not yet written gives up with Unavailable, in time.
    let mut c = nodes[0].as_ref().unwrap().client();
    let t = Instant::now();
    match c.call(&Request::MetaWait { partition: 0, position: 1_000_000, timeout_ms: 300 }).unwrap() {
        Reply::Error { code: ErrorCode::Unavailable, .. } => {}
        other => panic!("{other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(5));
    drop(c);

    // n3 crashes; the log goes on without it; it catches up when it is back.
    nodes[2] = None;
    for i in 24..40 {
        let key = format!("seg/{i:03}.ts");
        let body = format!("written while n3 was down {i}").into_bytes();
        let (p, pos) = append(&key, Some(&body));
        latest.push((key, p, pos, Some(body)));
    }
    let (p0, pos0) = append("seg/003.ts", Some(b"overwritten while n3 was down"));
    latest[3] = ("seg/003.ts".into(), p0, pos0, Some(b"overwritten while n3 was down".to_vec()));
    check_all(&nodes, &latest);
    nodes[2] = Some(Node::start(&etcd, &kafka, "n3", &dir.path().join("n3"), addrs[2]));
    check_all(&nodes, &latest);

    // A node restarted cleanly keeps what it applied (nothing re-applied over it).
    drop(log);
}
