//! `tessera node` as the real binary against a real etcd: it joins the cluster,
//! holds a liveness lease, serves shard pieces over the piece protocol only to
//! holders of the cluster secret, keeps them across restarts, and answers bad
//! input with protocol errors while it keeps serving.
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tessera_engine::format::ShardKey;
use tessera_gateway::wire::{self, Client, ErrorCode, Header, Op, Reply, Request, WireError, HEADER_BYTES};

#[path = "common/etcd.rs"]
mod etcd;
#[path = "common/tansu.rs"]
mod tansu;
use etcd::{free_port, Etcd};
use tansu::Tansu;

const SECRET: &str = "test-cluster-secret-0123456789";
const TIMEOUT: Duration = Duration::from_secs(10);

/// A `tessera node` process, killed on drop.
struct Node {
    child: Child,
    addr: SocketAddr,
    stdout: mpsc::Receiver<String>,
}

/// etcd and a Kafka broker, as every node needs.
struct Services {
    etcd: Etcd,
    kafka: Tansu,
}

impl Services {
    fn start() -> Services {
        Services { etcd: Etcd::start(), kafka: Tansu::start() }
    }
}

fn node_cmd(svc: &Services, id: &str, data: &Path, addr: SocketAddr) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tessera"));
    c.args([
        "node",
        "--etcd",
        &svc.etcd.url,
        "--kafka",
        &svc.kafka.brokers,
        "--id",
        id,
        "--drives",
        "2",
        "--cores",
        "2",
        "--no-pin",
    ])
    .arg("--data")
    .arg(data)
    .args(["--listen", &addr.to_string(), "--segment-mib", "16", "--io-memory", "4194304", "--lease-secs", "2"])
    .env("TESSERA_CLUSTER_SECRET", SECRET)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    c
}

impl Node {
    fn start(svc: &Services, id: &str, data: &Path, addr: SocketAddr) -> Node {
        let mut child = node_cmd(svc, id, data, addr).spawn().expect("start tessera node");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut node = Node { child, addr, stdout: rx };
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        loop {
            match node.stdout.recv_timeout(Duration::from_millis(100)) {
                Ok(l) if l == "ready" => return node,
                Ok(l) => seen.push(l),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let mut err = String::new();
                    node.child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
                    panic!("node {id} exited before ready: {seen:?}\n{err}");
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            assert!(Instant::now() < deadline, "node {id} not ready within 60 s: {seen:?}");
        }
    }

    fn client(&self) -> Client {
        Client::connect(self.addr, SECRET.as_bytes(), TIMEOUT).expect("connect and authenticate")
    }

    /// SIGTERM, then waits for a clean exit.
    fn stop(mut self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                assert!(st.success(), "node exited with {st}");
                return;
            }
            assert!(Instant::now() < deadline, "node did not stop within 30 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cluster(etcd: &Etcd, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .arg("cluster")
        .args(args)
        .args(["--etcd", &etcd.url])
        .output()
        .expect("run tessera cluster");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn alive(etcd: &Etcd, id: &str) -> bool {
    let (ok, out, err) = cluster(etcd, &["status", "--json"]);
    assert!(ok, "status: {err}");
    let s: serde_json::Value = serde_json::from_str(&out).unwrap();
    let m = s["members"].as_array().unwrap().iter().find(|m| m["id"] == id);
    m.unwrap_or_else(|| panic!("{id} is not a member: {s}"))["alive"].as_bool().unwrap()
}

fn wait_alive(etcd: &Etcd, id: &str, want: bool, within: Duration) {
    let deadline = Instant::now() + within;
    while alive(etcd, id) != want {
        assert!(Instant::now() < deadline, "{id} alive != {want} after {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn key(partition: u32, object: u128, piece: u32) -> ShardKey {
    ShardKey { partition, object, piece }
}

fn piece_bytes(partition: u32, object: u128, len: usize) -> Vec<u8> {
    let mut x = (partition as u64) << 32 ^ object as u64 ^ 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn expect_error(r: Reply, code: ErrorCode, what: &str) -> String {
    match r {
        Reply::Error { code: c, message } if c == code => message,
        other => panic!("{what}: expected {code:?}, got {other:?}"),
    }
}

fn free_addr() -> SocketAddr {
    format!("127.0.0.1:{}", free_port()).parse().unwrap()
}

#[test]
fn a_node_joins_serves_pieces_to_secret_holders_and_keeps_them() {
    let svc = Services::start();
    let etcd = &svc.etcd;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("n1");
    let addr = free_addr();

    // Not initialised: a clear refusal, nothing created.
    let out = node_cmd(&svc, "n1", &data, addr).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not initialised"), "{out:?}");
    assert!(!data.exists(), "a refused start leaves no data directory");
    let (ok, _, err) = cluster(etcd, &["init", "--code", "2+1", "--partitions", "16"]);
    assert!(ok, "{err}");
    // No secret, or a short one: refused.
    let out = node_cmd(&svc, "n1", &data, addr).env_remove("TESSERA_CLUSTER_SECRET").output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("TESSERA_CLUSTER_SECRET"));
    let out = node_cmd(&svc, "n1", &data, addr).env("TESSERA_CLUSTER_SECRET", "short").output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("at least 16"));

    let node = Node::start(&svc, "n1", &data, addr);
    assert!(alive(etcd, "n1"), "a started node is a live member");
    let mut c = node.client();
    assert_eq!(c.call(&Request::Ping).unwrap(), Reply::Pong);

    // Pieces on every partition (both cores own some), on both drives; one is 1 MiB.
    let mut stored = Vec::new();
    for p in 0..16u32 {
        let len = if p == 5 { 1 << 20 } else { 1000 + p as usize * 37 };
        let (k, bytes) = (key(p, 0xabc0 + p as u128, (p % 3) << 8 | 1), piece_bytes(p, 0xabc0 + p as u128, len));
        let drive = (p % 2) as u16;
        assert_eq!(c.call(&Request::Put { drive, key: k, data: bytes.clone() }).unwrap(), Reply::Ok);
        stored.push((drive, k, bytes));
    }
    for (drive, k, bytes) in &stored {
        let whole = c.call(&Request::Get { drive: *drive, key: *k, offset: 0, len: wire::TO_END }).unwrap();
        assert_eq!(whole, Reply::Data(bytes.clone()), "piece {k:?}");
        let r = c.call(&Request::Get { drive: *drive, key: *k, offset: 100, len: 500 }).unwrap();
        assert_eq!(r, Reply::Data(bytes[100..600].to_vec()), "range of {k:?}");
        // On its drive only.
        let other = 1 - *drive;
        expect_error(
            c.call(&Request::Get { drive: other, key: *k, offset: 0, len: wire::TO_END }).unwrap(),
            ErrorCode::NotFound,
            "other drive",
        );
    }
    match c.call(&Request::List { drive: 1, partition: 5 }).unwrap() {
        Reply::Keys(keys) => assert_eq!(keys, vec![(stored[5].1, 1 << 20)]),
        other => panic!("list: {other:?}"),
    }
    let (d0, k0, _) = stored.remove(0);
    assert_eq!(c.call(&Request::Delete { drive: d0, key: k0 }).unwrap(), Reply::Ok);
    expect_error(
        c.call(&Request::Get { drive: d0, key: k0, offset: 0, len: wire::TO_END }).unwrap(),
        ErrorCode::NotFound,
        "deleted",
    );

    // Bad requests are answered, and the connection goes on.
    let k = stored[0].1;
    expect_error(
        c.call(&Request::Get { drive: 7, key: k, offset: 0, len: 1 }).unwrap(),
        ErrorCode::NoSuchDrive,
        "drive 7",
    );
    expect_error(c.call(&Request::List { drive: 0, partition: 16 }).unwrap(), ErrorCode::BadRequest, "partition 16");
    expect_error(
        c.call(&Request::Get { drive: stored[0].0, key: k, offset: 1 << 30, len: 1 }).unwrap(),
        ErrorCode::BadRequest,
        "range beyond",
    );
    // Unknown op and a malformed body, written raw.
    let s = c.stream();
    s.write_all(&Header::encode(Op::Pong, 77, 0)).unwrap();
    let mut h = [0u8; HEADER_BYTES];
    s.read_exact(&mut h).unwrap();
    let h = Header::decode(&h).unwrap();
    let mut body = vec![0; h.len as usize];
    s.read_exact(&mut body).unwrap();
    assert_eq!(h.id, 77);
    expect_error(Reply::decode(h.op, body).unwrap(), ErrorCode::BadRequest, "a reply op as a request");
    assert_eq!(c.call(&Request::Ping).unwrap(), Reply::Pong, "still serving after bad requests");

    // A wrong secret is refused; the node serves the others all along.
    match Client::connect(addr, b"not-the-cluster-secret!!", TIMEOUT) {
        Err(WireError::Refused) => {}
        Err(e) => panic!("wrong secret: expected Refused, got {e}"),
        Ok(_) => panic!("wrong secret accepted"),
    }
    // Bytes that are not the protocol: after its Hello the node answers with an
    // error and closes, before authentication and after.
    for authenticated in [false, true] {
        let mut s = if authenticated {
            node.client().into_stream()
        } else {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(TIMEOUT)).unwrap();
            let mut hello = [0u8; HEADER_BYTES + wire::NONCE_BYTES];
            s.read_exact(&mut hello).unwrap();
            s
        };
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).expect("the node closes the connection");
        let h = Header::decode(rest[..HEADER_BYTES].try_into().unwrap()).unwrap();
        let code = if authenticated { ErrorCode::BadRequest } else { ErrorCode::Unauthenticated };
        expect_error(Reply::decode(h.op, rest[HEADER_BYTES..].to_vec()).unwrap(), code, "HTTP bytes");
    }
    // An oversized frame is refused before its body is read.
    let mut c2 = node.client();
    let mut big = Header::encode(Op::Put, 5, 0);
    big[12..16].copy_from_slice(&(wire::BODY_MAX as u32 + 1).to_le_bytes());
    c2.stream().write_all(&big).unwrap();
    let mut rest = Vec::new();
    c2.stream().read_to_end(&mut rest).unwrap();
    let h = Header::decode(rest[..HEADER_BYTES].try_into().unwrap()).unwrap();
    expect_error(Reply::decode(h.op, rest[HEADER_BYTES..].to_vec()).unwrap(), ErrorCode::TooLarge, "oversized frame");
    assert_eq!(c.call(&Request::Ping).unwrap(), Reply::Pong);
    drop(c);

    // A clean stop revokes the lease at once; a restart finds every piece.
    node.stop();
    assert!(!alive(etcd, "n1"), "a stopped node is down at once");
    let node = Node::start(&svc, "n1", &data, addr);
    let mut c = node.client();
    for (drive, k, bytes) in &stored {
        let r = c.call(&Request::Get { drive: *drive, key: *k, offset: 0, len: wire::TO_END }).unwrap();
        assert_eq!(r, Reply::Data(bytes.clone()), "after restart: {k:?}");
    }
    expect_error(
        c.call(&Request::Get { drive: d0, key: k0, offset: 0, len: wire::TO_END }).unwrap(),
        ErrorCode::NotFound,
        "deleted stays deleted",
    );

    // A crash is seen when the 2 s lease runs out.
    drop(c);
    drop(node);
    wait_alive(etcd, "n1", false, Duration::from_secs(10));

    // The data directory is n1's: another id is refused, and so is another address for n1.
    let out = node_cmd(&svc, "n2", &data, free_addr()).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is node \"n1\"'s"), "{out:?}");
    let out = node_cmd(&svc, "n1", &data, free_addr()).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is a member with address"), "{out:?}");
}

#[test]
fn nodes_join_until_the_cluster_is_placed() {
    let svc = Services::start();
    let etcd = &svc.etcd;
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, err) = cluster(etcd, &["init", "--code", "2+1", "--partitions", "8"]);
    assert!(ok, "{err}");
    let mut nodes = Vec::new();
    for i in 1..=3 {
        let id = format!("n{i}");
        nodes.push(Node::start(&svc, &id, &dir.path().join(&id), free_addr()));
    }
    let (ok, out, err) = cluster(etcd, &["status", "--json"]);
    assert!(ok, "{err}");
    let s: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(s["placement_version"], 1, "the third node placed the cluster: {s}");
    assert_eq!(s["ready"], true, "{s}");
    // Each node serves its own pieces.
    for n in &nodes {
        let mut c = n.client();
        let k = key(3, n.addr.port() as u128, 0);
        assert_eq!(
            c.call(&Request::Put { drive: 1, key: k, data: vec![n.addr.port() as u8; 4096] }).unwrap(),
            Reply::Ok
        );
    }
    for n in &nodes {
        let mut c = n.client();
        let k = key(3, n.addr.port() as u128, 0);
        let r = c.call(&Request::Get { drive: 1, key: k, offset: 0, len: wire::TO_END }).unwrap();
        assert_eq!(r, Reply::Data(vec![n.addr.port() as u8; 4096]));
        match c.call(&Request::List { drive: 1, partition: 3 }).unwrap() {
            Reply::Keys(keys) => assert_eq!(keys.len(), 1, "only its own piece"),
            other => panic!("{other:?}"),
        }
    }
    // One of three down: degraded but ready (2 >= k).
    nodes.remove(2).stop();
    let (_, out, _) = cluster(etcd, &["status", "--json"]);
    let s: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(s["degraded_partitions"], 8, "{s}");
    assert_eq!(s["ready"], true);
}
