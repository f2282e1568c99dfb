//! A real Kafka-compatible broker for the cluster tests: tansu (installed by
//! scripts/install-deps.sh, built with its `dynostore` feature) with in-memory
//! storage on a free loopback port, killed on drop.
#![allow(dead_code)]
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port nobody listens on (the listener is closed on return).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `TESSERA_TANSU`, then `~/.cargo/bin/tansu`, then `tansu` on the PATH.
fn tansu_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("TESSERA_TANSU") {
        let p = PathBuf::from(p);
        assert!(p.exists(), "TESSERA_TANSU={} does not exist", p.display());
        return p;
    }
    let home = std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo/bin/tansu"));
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).map(|d| d.join("tansu")).collect::<Vec<_>>())
        .unwrap_or_default();
    home.into_iter().chain(on_path).find(|p| p.is_file()).unwrap_or_else(|| {
        panic!(
            "tansu not found (TESSERA_TANSU, ~/.cargo/bin, PATH): scripts/install-deps.sh installs it \
             (cargo install tansu --features dynostore)"
        )
    })
}

/// One tansu broker with `memory://` storage, killed on drop.
pub struct Tansu {
    child: Child,
    /// `127.0.0.1:PORT`, for `bootstrap.servers`.
    pub brokers: String,
    _dir: tempfile::TempDir,
    log: PathBuf,
}

impl Tansu {
    /// Starts tansu and waits until it accepts connections; a start that fails (the
    /// port taken meanwhile by another test) is tried again on another port.
    pub fn start() -> Tansu {
        let bin = tansu_bin();
        let mut failures = Vec::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            let port = free_port();
            let url = format!("tcp://127.0.0.1:{port}");
            let log = dir.path().join("tansu.log");
            let child = Command::new(&bin)
                .arg("broker")
                .args(["--listener-url", &url, "--advertised-listener-url", &url])
                .args(["--storage-engine", "memory://tansu/"])
                .current_dir(dir.path())
                .stdout(std::fs::File::create(&log).unwrap())
                .stderr(std::fs::File::create(dir.path().join("tansu.err")).unwrap())
                .stdin(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
            let mut tansu = Tansu { child, brokers: format!("127.0.0.1:{port}"), _dir: dir, log };
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return tansu;
                }
                if let Ok(Some(st)) = tansu.child.try_wait() {
                    failures.push(format!("exited with {st}: {}", tansu.output_tail()));
                    break;
                }
                assert!(Instant::now() < deadline, "tansu not listening within 30 s: {}", tansu.output_tail());
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("tansu did not start: {failures:?}");
    }

    /// Kills the broker now (kill -9: its in-memory log is gone with it).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The last lines it wrote, for failure messages.
    pub fn output_tail(&self) -> String {
        let mut lines = Vec::new();
        for f in [self.log.clone(), self.log.with_file_name("tansu.err")] {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            lines.extend(text.lines().rev().take(5).map(str::to_string).collect::<Vec<_>>().into_iter().rev());
        }
        lines.join(" | ")
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.kill();
    }
}
