//! `tessera-bench`: an S3 load generator that can also GET a plain URL, so Tessera and
//! a web server (nginx) are measured by the same client.
//!
//! - [`args`]: the command line and its validation into a [`args::Config`].
//! - [`sigv4`]: a small SigV4 header signer (tools do not depend on the gateway).
//! - [`http`]: an incremental HTTP/1.1 response reader and a one-shot exchange.
//! - [`pattern`]: seeded object contents, free to send and cheap to verify.
//! - [`run`]: worker threads, each an epoll loop over many keep-alive connections.
//! - [`stats`]: histograms, counters and errors by kind, merged across threads.
//! - [`report`]: human summary, JSON, HTML with inline SVG plots, the RESULT line.
//!
//! [`bench`] is the whole run: probe or prepare, measure, report.
pub mod args;
pub mod http;
pub mod pattern;
pub mod report;
pub mod run;
pub mod sigv4;
pub mod stats;

use std::fmt;
use std::time::{Duration, Instant};

use args::{Config, Op, S3Target, Target, UrlTarget};
use http::{exchange, TransportError};
use pattern::Pattern;
use report::{PrepareReport, Report};
use run::{write_s3_head, Plan, S3Scratch};
use sigv4::Signer;

/// Timeout of each setup request (bucket creation, size probe).
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Kinds of prepare errors listed in the message when uploads fail.
const PREPARE_ERRORS_LISTED_MAX: usize = 5;

/// Why a run could not be measured.
#[derive(Debug)]
pub enum BenchError {
    /// A setup request got no response.
    Setup { what: &'static str, err: TransportError },
    /// A setup request was refused.
    SetupStatus { what: &'static str, status: u16, code: String },
    /// The URL's HEAD response has no Content-Length.
    NoLength,
    /// `--range-size` larger than the URL's size.
    RangeTooLarge { range_bytes: u64, size: u64 },
    /// Uploads of `--prepare` failed.
    Prepare { failed: u64, kinds: String },
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BenchError::Setup { what, err } => write!(f, "{what}: no response ({err})"),
            BenchError::SetupStatus { what, status, code } => write!(f, "{what}: HTTP {status} {code}"),
            BenchError::NoLength => f.write_str("size probe: the HEAD response has no Content-Length"),
            BenchError::RangeTooLarge { range_bytes, size } => {
                write!(f, "--range-size {range_bytes} is larger than the URL's {size} bytes")
            }
            BenchError::Prepare { failed, kinds } => write!(f, "prepare: {failed} uploads failed ({kinds})"),
        }
    }
}

impl std::error::Error for BenchError {}

/// Runs the whole benchmark `cfg` describes and returns its report. `command` is
/// recorded in the report as the command line that produced it.
pub fn bench(cfg: &Config, command: String) -> Result<Report, BenchError> {
    let pattern = Pattern::new(cfg.seed);
    let object_bytes = match &cfg.target {
        Target::Url(u) => {
            let size = probe_url(u)?;
            if cfg.workload.contains(Op::Range) && cfg.range_bytes > size {
                return Err(BenchError::RangeTooLarge { range_bytes: cfg.range_bytes, size });
            }
            size
        }
        Target::S3(_) => cfg.object_bytes,
    };
    let prepare = match &cfg.target {
        Target::S3(s3) if cfg.prepare => prepare(cfg, s3, &pattern)?,
        _ => None,
    };
    if !cfg.quiet {
        eprintln!(
            "tessera-bench: {} {} against {} with {} connections on {} threads for {:.1} s after {:.1} s warm-up",
            cfg.label,
            cfg.workload,
            cfg.target.describe(),
            cfg.concurrency,
            cfg.threads,
            cfg.duration.as_secs_f64(),
            cfg.warmup.as_secs_f64()
        );
    }
    let plan = Plan::Timed { warmup: cfg.warmup, duration: cfg.duration };
    let out = run::run(cfg, plan, object_bytes, &pattern);
    Ok(Report::build(cfg, command, object_bytes, &out, prepare))
}

/// Size of the object behind a plain URL, from a HEAD.
fn probe_url(u: &UrlTarget) -> Result<u64, BenchError> {
    let what = "size probe (HEAD)";
    let head = format!("HEAD {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", u.path, u.host);
    let r =
        exchange(u.addr, head.as_bytes(), &[], true, SETUP_TIMEOUT).map_err(|err| BenchError::Setup { what, err })?;
    if r.head.status != 200 {
        return Err(BenchError::SetupStatus { what, status: r.head.status, code: String::new() });
    }
    r.head.content_length.ok_or(BenchError::NoLength)
}

/// Creates the bucket (an existing one of ours is fine) and uploads objects
/// `0..objects` when the workload reads them.
fn prepare(cfg: &Config, s3: &S3Target, pattern: &Pattern) -> Result<Option<PrepareReport>, BenchError> {
    let what = "create bucket";
    let mut signer = Signer::new(&s3.access_key, &s3.secret_key, &s3.region);
    let mut scratch = S3Scratch::default();
    scratch.uri = format!("/{}", s3.bucket);
    let mut head = Vec::new();
    write_s3_head(&mut head, &mut signer, s3, "PUT", &mut scratch, None, Some(0));
    let r = exchange(s3.addr, &head, &[], false, SETUP_TIMEOUT).map_err(|err| BenchError::Setup { what, err })?;
    let code = r.s3_code().unwrap_or("").to_string();
    if r.head.status != 200 && !(r.head.status == 409 && code == "BucketAlreadyOwnedByYou") {
        return Err(BenchError::SetupStatus { what, status: r.head.status, code });
    }
    if !cfg.workload.ops().any(Op::reads_objects) {
        return Ok(None);
    }
    if !cfg.quiet {
        eprintln!("tessera-bench: prepare: uploading {} objects of {} bytes", cfg.objects, cfg.object_bytes);
    }
    let started = Instant::now();
    let out = run::run(cfg, Plan::Upload { count: cfg.objects }, cfg.object_bytes, pattern);
    let failed = out.stats.errors_total();
    if failed > 0 {
        let kinds: Vec<String> =
            out.stats.errors.iter().take(PREPARE_ERRORS_LISTED_MAX).map(|(k, n)| format!("{k} x{n}")).collect();
        return Err(BenchError::Prepare { failed, kinds: kinds.join(", ") });
    }
    let seconds = started.elapsed().as_secs_f64().max(1e-9);
    let put = &out.stats.per_op[Op::Put.index()];
    Ok(Some(PrepareReport {
        objects: put.ops,
        seconds,
        ops_per_s: put.ops as f64 / seconds,
        mb_per_s: put.bytes as f64 / 1e6 / seconds,
    }))
}
