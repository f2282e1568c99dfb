//! End-to-end harness: starts the real `tessera` binary on a free loopback port with
//! random credentials and a temporary data directory, and hands out `aws-sdk-s3`
//! clients and hand-built (SigV4-signed or unsigned) HTTP requests against it.
//!
//! With `TESSERA_TEST_ENDPOINT` set (plus `TESSERA_TEST_ACCESS_KEY` and
//! `TESSERA_TEST_SECRET_KEY`) no binary is started: the tests run against that
//! server instead, which is how the generic S3 tests are checked against another
//! implementation. Tests that need Tessera internals (restart, kill -9, drives,
//! corruption, `/metrics`) call [`skip_if_external!`] and are skipped there.
//!
//! Each test owns its own server process and data directory, so tests run in
//! parallel without sharing state; the price is one server start per test.
//! Retries are disabled in the client so that error tests see the server's first
//! answer, not the last of several. A server's output goes to `server.log` in its
//! temporary directory, and its tail is printed when a test fails.
#![allow(dead_code)]

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{DateTime, DateTimeFormat};
use aws_sdk_s3::Client;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

pub const REGION: &str = "us-east-1";
pub const KIB: usize = 1 << 10;
pub const MIB: usize = 1 << 20;
/// The server's default inline threshold: objects up to this size are replicated
/// rather than erasure coded.
pub const INLINE_BYTES_MAX_DEFAULT: usize = 128 * KIB;
/// How long a start or restart may take before the test fails (debug builds
/// recovering segment files on a loaded 2-core CI machine are slow).
const READY_WAIT_SECS_MAX: u64 = 90;
/// How long a SIGTERM'd server may take to exit cleanly.
const STOP_WAIT_SECS_MAX: u64 = 60;
/// Log lines printed when a test fails.
const LOG_TAIL_LINES: usize = 80;
/// Per-request limits for the SDK and for raw requests: a hung server fails the
/// test instead of hanging CI.
const CONNECT_TIMEOUT_SECS: u64 = 10;
const OPERATION_TIMEOUT_SECS: u64 = 60;

/// The path of the binary under test.
fn tessera_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tessera"))
}

/// Skips the rest of a test (with a printed note) when it runs against an external
/// S3 endpoint, because it needs Tessera internals.
#[macro_export]
macro_rules! skip_if_external {
    ($server:expr, $what:expr) => {
        if $server.is_external() {
            // Straight to the stream: the test harness captures eprintln! output.
            use std::io::Write as _;
            let note = format!("SKIPPED on external endpoint {}: {}\n", $server.endpoint(), $what);
            let _ = std::io::stderr().write_all(note.as_bytes());
            return;
        }
    };
}

/// Extra server options a test may ask for.
#[derive(Clone, Debug, Default)]
pub struct ServerOpts {
    /// `--inline-bytes-max N`: objects up to N bytes are replicated inline.
    pub inline_bytes_max: Option<u64>,
    /// `--segment-mib N`: segment file size.
    pub segment_mib: Option<u64>,
    /// Any further arguments, passed last.
    pub extra_args: Vec<String>,
}

/// A running `tessera server` (or an external endpoint) for one test.
pub struct Server {
    /// `None` when the tests use an external endpoint.
    tmp: Option<tempfile::TempDir>,
    child: Option<Child>,
    opts: ServerOpts,
    endpoint: String,
    access_key: String,
    secret_key: String,
    external: bool,
    http: ureq::Agent,
}

/// A response to a hand-built request, whatever its status.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Header names are lower-case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The first value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }

    /// Status and a printable start of the body, for assertion messages.
    pub fn summary(&self) -> String {
        match std::str::from_utf8(&self.body) {
            Ok(text) => format!("HTTP {} {:?}", self.status, text.chars().take(600).collect::<String>()),
            Err(_) => format!("HTTP {} with {} binary bytes", self.status, self.body.len()),
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The text of the first `<tag>` element of an XML body.
    pub fn xml_tag(&self, tag: &str) -> Option<String> {
        xml_tag(&self.text(), tag)
    }
}

/// The text of the first `<tag>...</tag>` in `xml` (no attribute or namespace
/// handling: enough for S3's flat error and list bodies).
pub fn xml_tag(xml: &str, tag: &str) -> Option<String> {
    xml_tags(xml, tag).into_iter().next()
}

/// The texts of every `<tag>...</tag>` in `xml`, in order.
pub fn xml_tags(xml: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else { break };
        out.push(after[..end].to_string());
        rest = &after[end + close.len()..];
    }
    out
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr").port()
}

fn random_token(len: usize, alphabet: &[u8]) -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    (0..len).map(|_| alphabet[rng.gen_range(0..alphabet.len())] as char).collect()
}

/// A fresh bucket name: valid (lower-case, digits, dashes) and unique per call.
pub fn random_bucket() -> String {
    format!("tst-{}", random_token(16, b"abcdefghijklmnopqrstuvwxyz0123456789"))
}

/// `len` pseudo-random bytes from `seed`: deterministic, so a test can regenerate
/// an object's expected content from (seed, len) instead of keeping it, and fast
/// in debug builds (splitmix64, 8 bytes per step).
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed ^ 0x5DEE_CE66_D1CE_4E5B;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A seed that differs between runs; tests print it so a failure can be replayed.
pub fn fresh_seed() -> u64 {
    rand::random()
}

pub fn md5_hex(data: &[u8]) -> String {
    hex::encode(md5::Md5::digest(data))
}

/// The ETag S3 gives a single-PUT object: the quoted MD5 hex of its bytes.
pub fn etag_of(data: &[u8]) -> String {
    format!("\"{}\"", md5_hex(data))
}

/// The ETag S3 gives a completed multipart upload: MD5 of the parts' binary MD5s,
/// then `-<part count>`.
pub fn multipart_etag(parts: &[&[u8]]) -> String {
    let mut all = Vec::with_capacity(parts.len() * 16);
    for p in parts {
        all.extend_from_slice(&md5::Md5::digest(p));
    }
    format!("\"{}-{}\"", md5_hex(&all), parts.len())
}

/// Asserts two byte strings are equal without printing megabytes on failure.
#[track_caller]
pub fn assert_bytes_eq(got: &[u8], want: &[u8], what: &str) {
    if got == want {
        return;
    }
    let first_diff = got.iter().zip(want).position(|(a, b)| a != b);
    panic!(
        "{what}: got {} bytes, want {} bytes, first difference at {:?} (md5 got {} want {})",
        got.len(),
        want.len(),
        first_diff,
        md5_hex(got),
        md5_hex(want)
    );
}

/// The HTTP status and S3 error code of a failed SDK call.
pub fn sdk_status_code<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> (Option<u16>, Option<String>) {
    let status = err.raw_response().map(|r| r.status().as_u16());
    (status, err.code().map(str::to_string))
}

/// Asserts an SDK call failed with this HTTP status and (if given) this S3 code.
#[track_caller]
pub fn expect_s3_error<T: std::fmt::Debug, E: ProvideErrorMetadata + std::fmt::Debug>(
    result: Result<T, SdkError<E, HttpResponse>>,
    status: u16,
    code: Option<&str>,
) {
    let err = match result {
        Ok(v) => panic!("expected HTTP {status} {code:?}, got success: {v:?}"),
        Err(e) => e,
    };
    let (got_status, got_code) = sdk_status_code(&err);
    assert_eq!(got_status, Some(status), "HTTP status of {err:?}");
    if let Some(code) = code {
        assert_eq!(got_code.as_deref(), Some(code), "S3 error code of {err:?}");
    }
}

/// Collects a GetObject body.
pub async fn body_bytes(out: aws_sdk_s3::operation::get_object::GetObjectOutput) -> Vec<u8> {
    out.body.collect().await.expect("read the object body").into_bytes().to_vec()
}

/// RFC 3986 percent-encoding as SigV4 wants it: everything but unreserved
/// characters, and `/` only when `encode_slash`.
pub fn uri_encode(s: &str, encode_slash: bool) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            b'/' if !encode_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `%XX` decoding (and `+` as space when `plus_is_space`) for checking
/// `encoding-type=url` answers.
pub fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("ascii");
                out.push(u8::from_str_radix(hex, 16).expect("two hex digits after %"));
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).expect("utf-8 after decoding")
}

/// Undoes XML escaping (the five named entities and numeric references).
pub fn xml_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let semi = after.find(';').unwrap_or_else(|| panic!("unterminated entity in {s:?}"));
        let entity = &after[..semi];
        let c = match entity {
            "lt" => '<',
            "gt" => '>',
            "amp" => '&',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = match entity.strip_prefix("#x").or_else(|| entity.strip_prefix("#X")) {
                    Some(hex) => u32::from_str_radix(hex, 16),
                    None => entity.strip_prefix('#').unwrap_or_else(|| panic!("entity &{entity};")).parse(),
                };
                char::from_u32(code.unwrap_or_else(|e| panic!("entity &{entity};: {e}"))).expect("a valid char")
            }
        };
        out.push(c);
        rest = &after[semi + 1..];
    }
    out.push_str(rest);
    out
}

/// Formats a time as an HTTP date (for If-Modified-Since and friends).
pub fn http_date(t: SystemTime) -> String {
    httpdate::fmt_http_date(t)
}

/// Converts the SDK's DateTime to SystemTime.
pub fn to_system_time(t: &DateTime) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(t.secs()).expect("date after 1970"))
}

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).expect("hmac takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// The parts of a request that SigV4 signs.
struct ToSign<'a> {
    method: &'a str,
    /// Already URI-encoded.
    canonical_uri: &'a str,
    /// Already encoded and sorted.
    canonical_query: &'a str,
    /// Must hold `host`, `x-amz-date` and `x-amz-content-sha256`; all are signed.
    headers: &'a [(String, String)],
    payload_hash: &'a str,
    amz_date: &'a str,
}

/// A SigV4 `Authorization` header for a header-signed request.
fn sigv4_authorization(access_key: &str, secret_key: &str, req: &ToSign<'_>) -> String {
    let mut sorted: Vec<(String, String)> =
        req.headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_string())).collect();
    sorted.sort();
    let canonical_headers: String = sorted.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed_headers = sorted.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(";");
    let canonical_request = format!(
        "{}\n{}\n{}\n{canonical_headers}\n{signed_headers}\n{}",
        req.method, req.canonical_uri, req.canonical_query, req.payload_hash
    );
    let amz_date = req.amz_date;
    let date = &amz_date[..8];
    let scope = format!("{date}/{REGION}/s3/aws4_request");
    let string_to_sign =
        format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", hex::encode(Sha256::digest(canonical_request.as_bytes())));
    let k_date = hmac(format!("AWS4{secret_key}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, REGION.as_bytes());
    let k_service = hmac(&k_region, b"s3");
    let k_signing = hmac(&k_service, b"aws4_request");
    let signature = hex::encode(hmac(&k_signing, string_to_sign.as_bytes()));
    format!("AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={signed_headers}, Signature={signature}")
}

/// `20240102T030405Z` for now.
fn amz_date_now() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs();
    let iso = DateTime::from_secs(secs as i64).fmt(DateTimeFormat::DateTime).expect("format date");
    iso.replace(['-', ':'], "")
}

impl Server {
    /// Starts a server with default options (or connects to the external endpoint).
    pub async fn start_default() -> Server {
        Server::start(ServerOpts::default()).await
    }

    /// Starts a server (or connects to the external endpoint) and waits until it is ready.
    pub async fn start(opts: ServerOpts) -> Server {
        let http = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(CONNECT_TIMEOUT_SECS))
            .timeout(Duration::from_secs(OPERATION_TIMEOUT_SECS))
            .redirects(0)
            .build();
        if let Ok(endpoint) = std::env::var("TESSERA_TEST_ENDPOINT") {
            let access_key = std::env::var("TESSERA_TEST_ACCESS_KEY").unwrap_or_else(|_| "test".into());
            let secret_key = std::env::var("TESSERA_TEST_SECRET_KEY").unwrap_or_else(|_| "test".into());
            return Server {
                tmp: None,
                child: None,
                opts,
                endpoint: endpoint.trim_end_matches('/').to_string(),
                access_key,
                secret_key,
                external: true,
                http,
            };
        }
        let alnum_upper = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        let alnum = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let mut server = Server {
            tmp: Some(tempfile::tempdir().expect("temp dir")),
            child: None,
            opts,
            endpoint: String::new(),
            access_key: format!("TK{}", random_token(18, alnum_upper)),
            secret_key: random_token(40, alnum),
            external: false,
            http,
        };
        server.spawn().await;
        server
    }

    /// True when the tests run against an external endpoint (no binary started).
    pub fn is_external(&self) -> bool {
        self.external
    }

    /// `http://127.0.0.1:<port>`. Changes across restarts: get a new client after one.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }

    /// The `--data` directory; drives are `d0`..`d5` under it.
    pub fn data_dir(&self) -> PathBuf {
        self.tmp.as_ref().expect("no data dir on an external endpoint").path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.tmp.as_ref().expect("no log on an external endpoint").path().join("server.log")
    }

    /// A client with the server's credentials.
    pub fn client(&self) -> Client {
        self.client_with_keys(&self.access_key, &self.secret_key)
    }

    /// A client with other credentials (for authentication failure tests).
    pub fn client_with_keys(&self, access_key: &str, secret_key: &str) -> Client {
        let creds = Credentials::new(access_key, secret_key, None, None, "tessera-e2e");
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(CONNECT_TIMEOUT_SECS))
            .operation_timeout(Duration::from_secs(OPERATION_TIMEOUT_SECS))
            .build();
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(&self.endpoint)
            .force_path_style(true)
            .credentials_provider(creds)
            .retry_config(RetryConfig::disabled())
            .timeout_config(timeouts)
            .build();
        Client::from_conf(conf)
    }

    /// Creates a fresh bucket and returns its name.
    pub async fn new_bucket(&self) -> String {
        let bucket = random_bucket();
        self.client().create_bucket().bucket(&bucket).send().await.expect("create bucket");
        bucket
    }

    async fn spawn(&mut self) {
        assert!(self.child.is_none(), "server already running");
        let port = free_port();
        self.endpoint = format!("http://127.0.0.1:{port}");
        let log = OpenOptions::new().create(true).append(true).open(self.log_path()).expect("open server log");
        let log_err = log.try_clone().expect("clone log handle");
        let mut cmd = Command::new(tessera_bin());
        cmd.arg("server")
            .arg("--data")
            .arg(self.data_dir())
            .arg("--address")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--no-pin")
            .env("TESSERA_ACCESS_KEY", &self.access_key)
            .env("TESSERA_SECRET_KEY", &self.secret_key)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err));
        if let Some(n) = self.opts.inline_bytes_max {
            cmd.arg("--inline-bytes-max").arg(n.to_string());
        }
        if let Some(n) = self.opts.segment_mib {
            cmd.arg("--segment-mib").arg(n.to_string());
        }
        cmd.args(&self.opts.extra_args);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {}: {e}", tessera_bin().display()));
        self.child = Some(child);
        self.wait_ready().await;
    }

    async fn wait_ready(&mut self) {
        let url = format!("{}/ready", self.endpoint);
        let deadline = std::time::Instant::now() + Duration::from_secs(READY_WAIT_SECS_MAX);
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait().expect("try_wait") {
                    self.child = None;
                    panic!("tessera exited before it was ready: {status}\n{}", self.log_tail());
                }
            }
            match self.http.get(&url).call() {
                Ok(r) if r.status() == 200 => return,
                _ => {}
            }
            if std::time::Instant::now() > deadline {
                panic!("tessera not ready within {READY_WAIT_SECS_MAX} s\n{}", self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, then waits for a clean exit (status 0).
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { panic!("stop: server not running") };
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = std::time::Instant::now() + Duration::from_secs(STOP_WAIT_SECS_MAX);
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                assert!(status.success(), "clean exit after SIGTERM, got {status}\n{}", self.log_tail());
                return;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("no exit within {STOP_WAIT_SECS_MAX} s of SIGTERM\n{}", self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL: the crash a power cut would be for the process (not for the page cache).
    pub async fn kill9(&mut self) {
        let Some(mut child) = self.child.take() else { panic!("kill9: server not running") };
        child.kill().expect("SIGKILL tessera");
        child.wait().expect("reap tessera");
    }

    /// Starts the server again on the same data directory (after `stop` or `kill9`),
    /// on a new port: get a new client afterwards.
    pub async fn start_again(&mut self) {
        self.spawn().await;
    }

    /// `stop` then `start_again`.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.start_again().await;
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        let Some(tmp) = self.tmp.as_ref() else { return String::new() };
        let Ok(mut f) = File::open(tmp.path().join("server.log")) else { return String::from("(no server log)") };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let from = len.saturating_sub(64 * 1024);
        let mut text = String::new();
        if f.seek(SeekFrom::Start(from)).is_err() || f.read_to_string(&mut text).is_err() {
            return String::from("(server log unreadable)");
        }
        let lines: Vec<&str> = text.lines().collect();
        let start = lines.len().saturating_sub(LOG_TAIL_LINES);
        format!("--- server log tail ---\n{}\n--- end of server log ---", lines[start..].join("\n"))
    }

    /// A request signed with SigV4 (header auth). `path` is unencoded
    /// (`/bucket/key`), query pairs are unencoded (`("uploads", "")` sends `uploads=`).
    pub fn raw_request(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> RawResponse {
        self.raw_signed_with(&self.access_key, &self.secret_key, method, path, query, headers, body)
    }

    /// Like `raw_request` with other credentials.
    #[allow(clippy::too_many_arguments)]
    pub fn raw_signed_with(
        &self,
        access_key: &str,
        secret_key: &str,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> RawResponse {
        let canonical_uri = uri_encode(path, false);
        let canonical_query = canonical_query(query);
        let host = self.endpoint.trim_start_matches("http://").to_string();
        let payload_hash = hex::encode(Sha256::digest(body));
        let amz_date = amz_date_now();
        let mut all: Vec<(String, String)> = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        all.push(("host".into(), host));
        all.push(("x-amz-date".into(), amz_date.clone()));
        all.push(("x-amz-content-sha256".into(), payload_hash.clone()));
        let to_sign = ToSign {
            method,
            canonical_uri: &canonical_uri,
            canonical_query: &canonical_query,
            headers: &all,
            payload_hash: &payload_hash,
            amz_date: &amz_date,
        };
        let auth = sigv4_authorization(access_key, secret_key, &to_sign);
        // ureq sets Host itself, from the URL: the same value that was signed.
        all.retain(|(k, _)| k != "host");
        all.push(("authorization".into(), auth));
        let url = self.url_for(&canonical_uri, &canonical_query);
        self.raw_url(method, &url, &all.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect::<Vec<_>>(), body)
    }

    /// A request without any authentication.
    pub fn raw_unsigned(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> RawResponse {
        let url = self.url_for(&uri_encode(path, false), &canonical_query(query));
        self.raw_url(method, &url, headers, body)
    }

    fn url_for(&self, encoded_path: &str, encoded_query: &str) -> String {
        if encoded_query.is_empty() {
            format!("{}{encoded_path}", self.endpoint)
        } else {
            format!("{}{encoded_path}?{encoded_query}", self.endpoint)
        }
    }

    /// A request to a full URL (e.g. a presigned one), headers sent as given.
    pub fn raw_url(&self, method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> RawResponse {
        let mut req = self.http.request(method, url);
        for (k, v) in headers {
            req = req.set(k, v);
        }
        let bodiless = body.is_empty() && matches!(method, "GET" | "HEAD" | "DELETE");
        let result = if bodiless { req.call() } else { req.send_bytes(body) };
        let resp = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {url}: transport error {e}"),
        };
        let status = resp.status();
        let headers = resp
            .headers_names()
            .into_iter()
            .flat_map(|name| {
                let lower = name.to_ascii_lowercase();
                resp.all(&name).into_iter().map(move |v| (lower.clone(), v.to_string())).collect::<Vec<_>>()
            })
            .collect();
        let mut body = Vec::new();
        if method != "HEAD" {
            resp.into_reader().read_to_end(&mut body).unwrap_or_else(|e| panic!("{method} {url}: read body: {e}"));
        }
        RawResponse { status, headers, body }
    }

    /// The drive directories `d0`..`d5`.
    pub fn drive_dir(&self, n: usize) -> PathBuf {
        self.data_dir().join(format!("d{n}"))
    }
}

fn canonical_query(query: &[(&str, &str)]) -> String {
    let mut pairs: Vec<(String, String)> =
        query.iter().map(|(k, v)| (uri_encode(k, true), uri_encode(v, true))).collect();
    pairs.sort();
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

/// Every segment file (`seg-*.tsg`) under a drive directory.
pub fn segment_files(drive: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(cores) = std::fs::read_dir(drive) else { return out };
    for core in cores.flatten() {
        if !core.file_name().to_string_lossy().starts_with("core-") {
            continue;
        }
        let Ok(files) = std::fs::read_dir(core.path()) else { continue };
        for f in files.flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            if name.starts_with("seg-") && name.ends_with(".tsg") {
                out.push(f.path());
            }
        }
    }
    out.sort();
    out
}

/// The first offset of `needle` in `haystack`.
pub fn find_subslice(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, _) = needle.split_first()?;
    if haystack.len() < needle.len() {
        return None;
    }
    let last_start = haystack.len() - needle.len();
    let mut i = 0;
    while i <= last_start {
        // Skip to the next candidate first byte: random needles make full
        // comparisons rare, so this stays one pass over the file.
        match haystack[i..=last_start].iter().position(|&b| b == first) {
            None => return None,
            Some(d) => i += d,
        }
        if &haystack[i..i + needle.len()] == needle {
            return Some(i);
        }
        i += 1;
    }
    None
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() && !self.external {
            eprintln!("{}", self.log_tail());
        }
    }
}
