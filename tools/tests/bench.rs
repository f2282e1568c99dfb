//! `tessera-bench` end to end: short runs of every workload against a started
//! `tessera server` (non-zero throughput, zero errors, reports written), errors
//! counted by kind, and the plain-URL mode against a small in-test HTTP server.
//!
//! The server binary: `$TESSERA_BIN` if set; else the `tessera` that `cargo test
//! --workspace` builds next to `tessera-bench`; else it is built with `cargo build -p
//! tessera` into a separate target directory (the running `cargo test` holds the lock
//! of ours).
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BENCH: &str = env!("CARGO_BIN_EXE_tessera-bench");
/// A debug server recovering on a loaded 2-core CI machine can be slow to start.
const READY_WAIT_SECS_MAX: u64 = 90;
const ACCESS_KEY: &str = "benchtestkey";
const SECRET_KEY: &str = "benchtestsecret0123456789";

fn tessera_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("TESSERA_BIN") {
        return PathBuf::from(bin);
    }
    let sibling = Path::new(BENCH).with_file_name("tessera");
    if sibling.exists() {
        return sibling;
    }
    let target = Path::new(BENCH).parent().and_then(Path::parent).expect("target dir").join("bench-test-target");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "-p", "tessera", "--bin", "tessera", "--target-dir"])
        .arg(&target)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo build -p tessera");
    assert!(status.success(), "cargo build -p tessera failed");
    target.join("debug/tessera")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// GET `path` on a fresh connection; the status code, or None if no answer.
fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

struct Server {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let child = Command::new(tessera_bin())
            .arg("server")
            .arg("--data")
            .arg(dir.path().join("data"))
            .arg("--address")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--no-pin")
            .env("TESSERA_ACCESS_KEY", ACCESS_KEY)
            .env("TESSERA_SECRET_KEY", SECRET_KEY)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start tessera server");
        let server = Server { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(READY_WAIT_SECS_MAX);
        while http_status(port, "/ready") != Some(200) {
            assert!(Instant::now() < deadline, "server not ready: {}", server.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bench(args: &[&str]) -> Output {
    Command::new(BENCH)
        .args(args)
        .env("TESSERA_ACCESS_KEY", ACCESS_KEY)
        .env("TESSERA_SECRET_KEY", SECRET_KEY)
        .stdin(Stdio::null())
        .output()
        .expect("run tessera-bench")
}

/// The RESULT line's fields.
fn result(out: &Output) -> Vec<(String, String)> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rfind(|l| l.starts_with("RESULT "))
        .unwrap_or_else(|| panic!("no RESULT line: {stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
    line.split(' ')
        .skip(1)
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("key=value");
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn field(fields: &[(String, String)], key: &str) -> f64 {
    fields.iter().find(|(k, _)| k == key).unwrap_or_else(|| panic!("no {key}")).1.parse().expect("a number")
}

#[test]
fn every_workload_against_a_real_server() {
    let server = Server::start();
    let endpoint = server.endpoint();
    let tmp = tempfile::tempdir().unwrap();
    // The mix writes the keys it reads: GETs racing PUTs of the same key must all
    // succeed (this run found the server answering some of them 503, since fixed).
    for workload in ["put", "get", "range", "head", "list", "delete", "mix:get=50,put=20,head=15,range=15"] {
        let json = tmp.path().join("run.json");
        let html = tmp.path().join("run.html");
        let out = bench(&[
            "--endpoint",
            &endpoint,
            "--bucket",
            "bench-test",
            "--prepare",
            "--verify",
            "-w",
            workload,
            "-s",
            "100KiB",
            "--range-size",
            "10000",
            "-n",
            "20",
            "-c",
            "4",
            "-t",
            "2",
            "-d",
            "2s",
            "--warmup",
            "0s",
            "--json",
            json.to_str().unwrap(),
            "--html",
            html.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let fields = result(&out);
        let context = format!("{workload}: {fields:?}\n{stderr}\n{}", server.log());
        assert_eq!(out.status.code(), Some(0), "{context}");
        assert!(field(&fields, "ops_per_s") > 0.0, "{context}");
        assert_eq!(field(&fields, "errors"), 0.0, "{context}");
        assert!(field(&fields, "p50_ms") > 0.0, "{context}");
        if matches!(workload, "put" | "get" | "range") {
            assert!(field(&fields, "mb_per_s") > 0.0, "{context}");
        }
        if matches!(workload, "get" | "range") {
            assert!(field(&fields, "ttfb_p50_ms") > 0.0, "{context}");
        }
        // Progress lines, unless --quiet.
        assert!(stderr.contains("ops/s"), "{context}");

        let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        assert_eq!(report["errors"], 0, "{context}");
        assert!(report["timeline"].as_array().is_some_and(|t| t.len() == 2), "{context}: {}", report["timeline"]);
        assert!(report["per_op"][0]["latency"]["p99_ms"].as_f64().is_some(), "{context}");
        let page = std::fs::read_to_string(&html).unwrap();
        if workload == "range" {
            // Time to first byte by where the range starts: 4 bands, every ranged GET in
            // one of them, and ranges drawn from the whole object reach every band.
            let bands = report["per_op"][0]["ttfb_by_offset"].as_array().expect("bands");
            let counts: Vec<u64> = bands.iter().map(|b| b["ttfb"]["count"].as_u64().unwrap_or(0)).collect();
            assert_eq!(counts.len(), 4, "{context}: {bands:?}");
            assert!(counts.iter().all(|&n| n > 0), "{context}: {counts:?}");
            assert_eq!(counts.iter().sum::<u64>(), report["per_op"][0]["ops"].as_u64().unwrap(), "{context}");
            // A band holds a quarter of the ranges: its median cannot pass the p99 of all.
            assert!(field(&fields, "ttfb_band_p50_max_ms") <= field(&fields, "ttfb_p99_ms"), "{context}");
            assert!(field(&fields, "ttfb_band_p50_min_ms") > 0.0, "{context}");
            assert!(String::from_utf8_lossy(&out.stdout).contains("by where the range starts"), "{context}");
            assert!(
                page.contains("time to first byte by offset") && page.contains("75-100% of the object"),
                "{context}"
            );
        } else if !workload.contains("range") {
            assert_eq!(field(&fields, "ttfb_band_p50_max_ms"), 0.0, "{context}");
        }
        assert!(page.starts_with("<!doctype html>") && page.matches("<svg").count() >= 4, "{context}");
        assert!(!page.contains("<script"), "self-contained, no script");
    }

    // Errors are counted by kind, and make the exit status 1.
    let out = bench(&[
        "--endpoint",
        &endpoint,
        "--bucket",
        "no-such-bucket",
        "-w",
        "get",
        "-c",
        "2",
        "-t",
        "1",
        "-d",
        "1s",
        "--warmup",
        "0s",
        "-q",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(field(&result(&out), "errors") > 0.0);
    assert!(stdout.contains("http-404:NoSuchBucket"), "{stdout}");
    assert!(out.stderr.is_empty(), "--quiet: {}", String::from_utf8_lossy(&out.stderr));

    let out = Command::new(BENCH)
        .args(["--endpoint", &endpoint, "--bucket", "bench-test", "-w", "head", "-n", "20", "-c", "1", "-d", "1s"])
        .args(["--warmup", "0s", "-q", "--access-key", ACCESS_KEY, "--secret-key", "wrong"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("http-403"), "{stdout}");

    // Nothing listening: transport errors, not a hang or a panic.
    let out = bench(&["--endpoint", &format!("http://127.0.0.1:{}", free_port()), "-d", "1s", "--warmup", "0s", "-q"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("transport:connection-refused"), "{stdout}");
}

/// How long `/slow` of [`serve_fixed`] holds the body back after its headers.
const SLOW_BODY_DELAY: Duration = Duration::from_millis(50);

/// A tiny keep-alive HTTP/1.1 server for one fixed body: `Content-Length` on
/// `/fixed`, `chunked` on `/chunked`, ranges on both; `/slow` sends the status line
/// and headers at once and the body `SLOW_BODY_DELAY` later, as a server that
/// answers before it has read its data. One thread per connection.
fn serve_fixed(body: &'static [u8]) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match conn.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_string();
                    buf.drain(..end + 4);
                    let is_head = head.starts_with("HEAD ");
                    let range = head.lines().find_map(|l| l.strip_prefix("Range: bytes=")).map(|r| {
                        let (a, b) = r.split_once('-').unwrap();
                        (a.parse::<usize>().unwrap(), b.parse::<usize>().unwrap())
                    });
                    let (status, data) = match range {
                        Some((a, b)) => ("206 Partial Content", &body[a..=b]),
                        None => ("200 OK", body),
                    };
                    let mut out = format!("HTTP/1.1 {status}\r\n").into_bytes();
                    if head.contains(" /chunked ") && !is_head {
                        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                        for piece in data.chunks(1000) {
                            out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                            out.extend_from_slice(piece);
                            out.extend_from_slice(b"\r\n");
                        }
                        out.extend_from_slice(b"0\r\n\r\n");
                    } else {
                        out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", data.len()).as_bytes());
                        if head.contains(" /slow ") && !is_head {
                            if conn.write_all(&out).is_err() {
                                return;
                            }
                            out.clear();
                            std::thread::sleep(SLOW_BODY_DELAY);
                        }
                        if !is_head {
                            out.extend_from_slice(data);
                        }
                    }
                    if conn.write_all(&out).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// A 1 s tessera-bench run (4 connections, 100-byte ranges) against a path of
/// [`serve_fixed`]: its output, RESULT fields and stdout.
fn url_run(port: u16, path: &str, workload: &str) -> (Output, Vec<(String, String)>, String) {
    let url = format!("http://127.0.0.1:{port}{path}");
    let out = Command::new(BENCH)
        .args(["--url", &url, "-w", workload, "--range-size", "100", "-c", "4", "-t", "2", "-d", "1s"])
        .args(["--warmup", "0s", "-q"])
        .output()
        .unwrap();
    let fields = result(&out);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (out, fields, stdout)
}

#[test]
fn plain_url_mode() {
    static BODY: [u8; 10_000] = [7; 10_000];
    let port = serve_fixed(&BODY);
    for (path, workload) in [("/fixed", "get"), ("/chunked", "get"), ("/fixed", "mix:get=50,head=25,range=25")] {
        let (out, fields, stdout) = url_run(port, path, workload);
        assert_eq!(out.status.code(), Some(0), "{path} {workload}: {stdout}");
        assert!(field(&fields, "ops_per_s") > 0.0, "{stdout}");
        assert!(field(&fields, "mb_per_s") > 0.0, "{stdout}");
        assert!(stdout.contains("one URL of 10000B"), "{stdout}");
    }
    // Time to first byte is to the body's first byte: headers sent ahead of the data
    // do not count, for GETs and for ranges (by offset band too).
    for workload in ["get", "range"] {
        let (out, fields, stdout) = url_run(port, "/slow", workload);
        assert_eq!(out.status.code(), Some(0), "{workload}: {stdout}");
        let delay_ms = SLOW_BODY_DELAY.as_secs_f64() * 1000.0;
        assert!(field(&fields, "ttfb_p50_ms") >= delay_ms, "{workload}: {stdout}");
        if workload == "range" {
            assert!(field(&fields, "ttfb_band_p50_min_ms") >= delay_ms, "{stdout}");
        }
    }
    // Usage errors exit with 2 before any request.
    let out =
        Command::new(BENCH).args(["--url", &format!("http://127.0.0.1:{port}/fixed"), "-w", "put"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not put"));
}
