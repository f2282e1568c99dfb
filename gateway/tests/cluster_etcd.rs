//! Cluster topology against a real etcd (Debian's `etcd-server`, installed by
//! scripts/install-deps.sh): `tessera cluster init / add-node / status` run as
//! the real binary, liveness leases registered through the library the nodes
//! will use.
use std::process::Command;
use std::time::{Duration, Instant};

use tessera_gateway::cluster::Cluster;

#[path = "common/etcd.rs"]
mod etcd;
use etcd::{free_port, Etcd};

/// Runs `tessera cluster ARGS --etcd URL`; returns (success, stdout, stderr).
fn tessera(etcd: &Etcd, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .arg("cluster")
        .args(args)
        .args(["--etcd", &etcd.url])
        .output()
        .expect("run tessera");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn status(etcd: &Etcd) -> serde_json::Value {
    let (ok, out, err) = tessera(etcd, &["status", "--json"]);
    assert!(ok, "status failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("status --json is not JSON ({e}): {out}"))
}

fn member<'a>(s: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    s["members"].as_array().unwrap().iter().find(|m| m["id"] == id).unwrap_or_else(|| panic!("no member {id}"))
}

#[tokio::test]
async fn init_add_nodes_liveness_and_status() {
    let etcd = Etcd::start();
    // Before init: a clear error, not an empty status.
    let (ok, _, err) = tessera(&etcd, &["status"]);
    assert!(!ok && err.contains("not initialised"), "{err}");
    let (ok, out, err) = tessera(&etcd, &["init", "--code", "6+3", "--partitions", "64"]);
    assert!(ok, "init: {err}");
    assert!(out.contains("RS 6+3, 64 partitions"), "{out}");
    // Bad input and a second init are refused, and change nothing.
    let (ok, _, err) = tessera(&etcd, &["init"]);
    assert!(!ok && err.contains("already initialised"), "{err}");
    for bad in [["--code", "6-3"], ["--code", "6+0"], ["--code", "60+5"]] {
        let (ok, _, err) = tessera(&etcd, &["init", bad[0], bad[1], "--cluster", "other"]);
        assert!(!ok && err.contains("code"), "{bad:?}: {err}");
    }

    // Members: no placement until k + m = 9 of them.
    for i in 1..=9 {
        let id = format!("n{i}");
        let addr = format!("127.0.0.{i}:7000");
        let zone = format!("z{}", i % 3);
        let (ok, out, err) =
            tessera(&etcd, &["add-node", "--id", &id, "--addr", &addr, "--zone", &zone, "--drives", "2"]);
        assert!(ok, "add {id}: {err}");
        assert_eq!(out.contains("placement version 1"), i == 9, "{out}");
    }
    let (ok, _, err) = tessera(&etcd, &["add-node", "--id", "n1", "--addr", "127.0.0.1:7000"]);
    assert!(!ok && err.contains("already a member"), "{err}");
    let (ok, _, err) = tessera(&etcd, &["add-node", "--id", "bad", "--addr", "nowhere"]);
    assert!(!ok && err.contains("IP:PORT"), "{err}");

    // Nobody alive yet: every partition unavailable, not ready.
    let s = status(&etcd);
    assert_eq!(s["placement_version"], 1);
    assert_eq!(s["members"].as_array().unwrap().len(), 9);
    assert_eq!(s["unavailable_partitions"], 64);
    assert_eq!(s["ready"], false);
    for i in 1..=9 {
        // 9 nodes, sets of 9 on distinct nodes: every node in every set.
        assert_eq!(member(&s, &format!("n{i}"))["slots"], 64);
    }

    // Liveness leases, as running nodes hold them.
    let mut c = Cluster::connect(&etcd.url, "default").await.expect("connect");
    let mut guards = Vec::new();
    for i in 1..=9 {
        guards.push(
            c.register_alive(&format!("n{i}"), &format!("127.0.0.{i}:7000"), Duration::from_secs(2)).await.unwrap(),
        );
    }
    let s = status(&etcd);
    assert_eq!(s["ready"], true, "{s}");
    assert_eq!(s["degraded_partitions"], 0);
    // Leases outlive their TTL while kept alive.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(status(&etcd)["degraded_partitions"], 0, "keep-alive holds the leases");

    // A clean stop (revoke) is seen at once: degraded, still readable (8 >= k = 6).
    guards.remove(0).revoke().await.unwrap();
    let s = status(&etcd);
    assert_eq!(member(&s, "n1")["alive"], false);
    assert_eq!(s["degraded_partitions"], 64);
    assert_eq!(s["unavailable_partitions"], 0);
    assert_eq!(s["ready"], true);
    // A crash (no revoke, keep-alive stops) is seen once the lease expires.
    for _ in 0..3 {
        drop(guards.remove(0));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = status(&etcd);
        if s["unavailable_partitions"] == 64 {
            assert_eq!(s["ready"], false, "4 of 9 down: fewer than k = 6 live slots");
            break;
        }
        assert!(Instant::now() < deadline, "expired leases not noticed: {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A 10th member begins a move to a placement where it takes its share and the
    // other slots stay where they were; the current placement stays until the
    // move ends (no nodes run here to carry it out).
    let before: Vec<u64> =
        (1..=9).map(|i| member(&status(&etcd), &format!("n{i}"))["slots"].as_u64().unwrap()).collect();
    let (ok, out, err) = tessera(&etcd, &["add-node", "--id", "n10", "--addr", "127.0.0.10:7000", "--drives", "2"]);
    assert!(ok && out.contains("moving to placement version 2"), "{out} {err}");
    let s = status(&etcd);
    assert_eq!(s["placement_version"], 1, "{s}");
    assert_eq!(s["moving"]["version"], 2, "{s}");
    assert_eq!(s["moving"]["phase"], "syncing", "{s}");
    assert_eq!(s["moving"]["waiting"], serde_json::json!(["n10"]), "only the newcomer takes slots: {s}");
    assert_eq!(member(&s, "n10")["slots"], 0, "{s}");
    let new_slots = member(&s, "n10")["target_slots"].as_u64().unwrap();
    assert!((57..=58).contains(&new_slots), "share 64 x 9 / 10 = 57.6, got {new_slots}");
    assert_eq!(s["moving"]["slots_moving"].as_u64(), Some(new_slots), "{s}");
    let given: u64 =
        (1..=9).map(|i| before[i - 1] - member(&s, &format!("n{i}"))["target_slots"].as_u64().unwrap()).sum();
    assert_eq!(given, new_slots, "the old members give exactly what the newcomer takes");
    // An 11th member while the move is on waits for the next one.
    let (ok, out, err) = tessera(&etcd, &["add-node", "--id", "n11", "--addr", "127.0.0.11:7000", "--drives", "2"]);
    assert!(ok && out.contains("the next one follows"), "{out} {err}");
    assert_eq!(status(&etcd)["moving"]["version"], 2);
    // Draining: an unknown id is refused; a member is marked leaving (the move
    // that drains it follows the one in progress, run by the nodes' coordinator).
    let (ok, _, err) = tessera(&etcd, &["remove-node", "--id", "n99"]);
    assert!(!ok && err.contains("not a member"), "{err}");
    let (ok, out, err) = tessera(&etcd, &["remove-node", "--id", "n11"]);
    assert!(ok && out.contains("leaving") && out.contains("the next one follows"), "{out} {err}");
    let s = status(&etcd);
    assert_eq!(member(&s, "n11")["leaving"], true, "{s}");
    assert_eq!(member(&s, "n1")["leaving"], false, "{s}");
    drop(guards);
}

#[tokio::test]
async fn an_unreachable_etcd_is_a_clear_error() {
    let port = free_port(); // nothing listens there
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["cluster", "status", "--etcd", &format!("http://127.0.0.1:{port}")])
        .output()
        .expect("run tessera");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach etcd"), "{err}");
}
