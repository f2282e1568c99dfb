//! Drives the real `tessera` binary: start, readiness, clean stop on SIGTERM,
//! restart from the checkpoints it wrote, and clear errors for bad arguments.
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_tessera");

/// A port nobody listens on now (the kernel's pick, released for the server).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts the server and returns it with the stdout lines up to "ready".
fn start(data: &std::path::Path, extra: &[&str]) -> (Child, Vec<String>, mpsc::Receiver<String>) {
    let mut child = Command::new(BIN)
        .args(["server", "--data"])
        .arg(data)
        .args(["--cores", "2", "--no-pin", "--io-memory", "1048576", "--address"])
        .arg(format!("127.0.0.1:{}", free_port()))
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tessera");
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    loop {
        let line = rx.recv_timeout(Duration::from_secs(60)).expect("server printed ready within 60 s");
        let done = line == "ready";
        lines.push(line);
        if done {
            break;
        }
    }
    (child, lines, rx)
}

fn stop(mut child: Child, rx: mpsc::Receiver<String>) {
    // SAFETY: kill with a valid pid and signal number has no memory effects.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "clean exit after SIGTERM: {status:?}");
    // The reader thread ends at EOF, after the child exited: nothing is missed.
    let rest: Vec<String> = rx.iter().collect();
    assert!(rest.iter().any(|l| l == "stopped"), "{rest:?}");
}

#[test]
fn starts_reports_stops_and_restarts_from_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (child, lines, rx) = start(&data, &["--drive-count", "3"]);
    let text = lines.join("\n");
    assert!(text.contains("2 glommio executors"), "{text}");
    assert!(text.contains("buffer registration:"), "{text}");
    assert!(text.contains("drives    3"), "{text}");
    assert!(text.contains("recovered 0 shard pieces in 6 stores"), "{text}");
    stop(child, rx);
    for d in 0..3 {
        for c in 0..2 {
            let dir = data.join(format!("d{d}/core-{c}"));
            assert!(dir.join("checkpoint.tck").exists(), "final checkpoint in {}", dir.display());
        }
    }
    let (child, lines, rx) = start(&data, &["--drive-count", "3"]);
    let text = lines.join("\n");
    assert!(text.contains("in 6 stores (6 from checkpoints, 0 records replayed"), "{text}");
    stop(child, rx);
}

#[test]
fn bad_arguments_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let out = Command::new(BIN).arg("server").arg(&file).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not a directory"), "{err}");

    let out = Command::new(BIN).args(["server", "--cores", "0", "--data"]).arg(tmp.path().join("d")).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cores 0 outside"), "{:?}", out);

    // Data written by 2 cores is not opened by 1: partitions would be looked up in
    // the wrong place.
    let data = tmp.path().join("data");
    let (child, _, rx) = start(&data, &["--drive-count", "2"]);
    stop(child, rx);
    let out =
        Command::new(BIN).args(["server", "--drive-count", "2", "--cores", "1", "--data"]).arg(&data).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("laid out for 2 cores"), "{:?}", out);
    // One drive cannot hold an erasure-coded object.
    let out = Command::new(BIN)
        .args(["server", "--drive-count", "1", "--data"])
        .arg(tmp.path().join("one"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 2 drives"), "{:?}", out);
}
