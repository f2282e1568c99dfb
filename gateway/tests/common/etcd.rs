//! A real etcd for the cluster tests: Debian's `etcd-server` (installed by
//! scripts/install-deps.sh) on free loopback ports, stopped on drop.
#![allow(dead_code)]
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One etcd on free loopback ports, stopped (and its data removed) on drop.
pub struct Etcd {
    child: Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

/// Distinct free ports: all are held until all are chosen.
pub fn free_ports<const N: usize>() -> [u16; N] {
    let held: Vec<TcpListener> = (0..N).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    std::array::from_fn(|i| held[i].local_addr().unwrap().port())
}

/// etcd answers `GET /health` with `{"health":"true"}` once it serves requests.
fn healthy(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
        return false;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.contains("\"health\":\"true\"")
}

impl Etcd {
    /// Starts etcd; a start that fails (a port taken meanwhile by another test) is
    /// tried again on other ports.
    pub fn start() -> Etcd {
        let bin = ["/usr/bin/etcd", "/usr/local/bin/etcd"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("etcd not found: scripts/install-deps.sh installs Debian's etcd-server");
        let mut failures = Vec::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            let [client, peer] = free_ports::<2>();
            let url = format!("http://127.0.0.1:{client}");
            let peer_url = format!("http://127.0.0.1:{peer}");
            let log = dir.path().join("etcd.log");
            let child = Command::new(bin)
                .args(["--name", "t1", "--data-dir"])
                .arg(dir.path().join("etcd"))
                .args(["--listen-client-urls", &url, "--advertise-client-urls", &url])
                .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
                .args(["--initial-cluster", &format!("t1={peer_url}")])
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .expect("start etcd");
            let mut etcd = Etcd { child, url, _dir: dir };
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if healthy(client) {
                    return etcd;
                }
                if let Ok(Some(st)) = etcd.child.try_wait() {
                    let tail = std::fs::read_to_string(&log).unwrap_or_default();
                    let tail: String = tail.lines().rev().take(5).collect::<Vec<_>>().join(" | ");
                    failures.push(format!("exited with {st}: {tail}"));
                    break;
                }
                assert!(Instant::now() < deadline, "etcd not healthy within 30 s");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("etcd did not start: {failures:?}");
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
