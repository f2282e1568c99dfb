//! Command line of `tessera-bench`, and the checks that turn a combination that cannot
//! be measured (a PUT against a plain URL, a range larger than the object, ...) into a
//! usage error before the first request is sent.
//!
//! [`Cli`] is what clap parses; [`Config`] is the validated run description the rest of
//! the bench works from. The conversion takes the environment as a function so tests
//! pin it.
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use clap::Parser;

/// Connections a run may open (each holds a small head buffer and a socket).
pub const CONCURRENCY_MAX: usize = 4096;
/// Worker threads a run may start.
pub const THREADS_MAX: usize = 256;
/// Distinct object keys a run may address.
pub const OBJECTS_MAX: u64 = 100_000_000;
/// The largest object a single PUT may upload (S3's own single-PUT limit).
pub const OBJECT_BYTES_MAX: u64 = 5 << 30;
/// The longest measured run or warm-up.
pub const DURATION_SECS_MAX: u64 = 24 * 3600;
/// ListObjectsV2 never returns more than this many keys per page.
pub const LIST_KEYS_MAX: u32 = 1000;
/// Longest key prefix and bucket name accepted (S3 keys are at most 1024 bytes).
pub const PREFIX_BYTES_MAX: usize = 512;
pub const BUCKET_BYTES_MAX: usize = 63;
/// Longest label (it ends up in file names and the RESULT line).
pub const LABEL_BYTES_MAX: usize = 128;

/// One kind of request the bench sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    Put,
    Get,
    /// GET with `Range: bytes=a-b` at a random offset.
    Range,
    Head,
    /// ListObjectsV2 of the bench prefix.
    List,
    Delete,
}

/// Number of [`Op`] variants (array-indexed statistics).
pub const OP_COUNT: usize = 6;

impl Op {
    pub const ALL: [Op; OP_COUNT] = [Op::Put, Op::Get, Op::Range, Op::Head, Op::List, Op::Delete];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            Op::Put => "put",
            Op::Get => "get",
            Op::Range => "range",
            Op::Head => "head",
            Op::List => "list",
            Op::Delete => "delete",
        }
    }

    fn from_name(name: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.name() == name)
    }

    /// Reads an existing object (and so needs `--prepare` or earlier uploads).
    pub fn reads_objects(self) -> bool {
        matches!(self, Op::Get | Op::Range | Op::Head | Op::List | Op::Delete)
    }
}

/// What a run sends: one operation, or a weighted mix drawn per request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    /// (operation, weight); weights are positive, operations distinct.
    pub mix: Vec<(Op, u32)>,
}

impl Workload {
    pub fn single(op: Op) -> Workload {
        Workload { mix: vec![(op, 1)] }
    }

    pub fn ops(&self) -> impl Iterator<Item = Op> + '_ {
        self.mix.iter().map(|&(op, _)| op)
    }

    pub fn contains(&self, op: Op) -> bool {
        self.ops().any(|o| o == op)
    }

    pub fn total_weight(&self) -> u32 {
        self.mix.iter().map(|&(_, w)| w).sum()
    }

    /// The operation for a draw in `0..total_weight()`.
    pub fn pick(&self, mut draw: u32) -> Op {
        for &(op, weight) in &self.mix {
            if draw < weight {
                return op;
            }
            draw -= weight;
        }
        unreachable!("draw beyond the total weight")
    }

    /// `put`, `get`, ... or `mix:get=70,put=20,head=10`.
    pub fn parse(s: &str) -> Result<Workload, ArgError> {
        let bad = |why: &str| ArgError::Workload(format!("{s:?}: {why}"));
        let Some(spec) = s.strip_prefix("mix:") else {
            return Op::from_name(s).map(Workload::single).ok_or_else(|| bad("unknown workload"));
        };
        let mut mix: Vec<(Op, u32)> = Vec::new();
        for part in spec.split(',') {
            let (name, weight) = part.split_once('=').ok_or_else(|| bad("expected op=weight"))?;
            let op = Op::from_name(name.trim()).ok_or_else(|| bad("unknown operation in mix"))?;
            let weight: u32 = weight.trim().parse().map_err(|_| bad("weight is not a number"))?;
            if weight == 0 || weight > 1_000_000 {
                return Err(bad("weights are 1..=1000000"));
            }
            if mix.iter().any(|&(o, _)| o == op) {
                return Err(bad("operation named twice"));
            }
            mix.push((op, weight));
        }
        Ok(Workload { mix })
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let [(op, _)] = self.mix[..] {
            return f.write_str(op.name());
        }
        f.write_str("mix:")?;
        for (i, (op, w)) in self.mix.iter().enumerate() {
            write!(f, "{}{}={w}", if i > 0 { "," } else { "" }, op.name())?;
        }
        Ok(())
    }
}

/// A usage error: the message says which flag and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgError {
    Size(String),
    Duration(String),
    Workload(String),
    Url(String),
    /// A flag combination or value out of range.
    Invalid(String),
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgError::Size(m) => write!(f, "bad size {m} (examples: 4096, 4KiB, 64MiB, 1GB)"),
            ArgError::Duration(m) => write!(f, "bad duration {m} (examples: 10s, 500ms, 2m)"),
            ArgError::Workload(m) => {
                write!(f, "bad workload {m} (put, get, range, head, list, delete or mix:get=70,put=30)")
            }
            ArgError::Url(m) => write!(f, "bad URL {m} (only http://host[:port][/path])"),
            ArgError::Invalid(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for ArgError {}

/// `4096`, `4K`/`4KiB` (1024), `4KB` (1000), likewise M/MiB/MB and G/GiB/GB.
pub fn parse_size(s: &str) -> Result<u64, ArgError> {
    let bad = || ArgError::Size(format!("{s:?}"));
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    if digits == 0 {
        return Err(bad());
    }
    let n: u64 = t[..digits].parse().map_err(|_| bad())?;
    let unit: u64 = match t[digits..].trim() {
        "" | "B" | "b" => 1,
        "K" | "k" | "KiB" | "kiB" => 1 << 10,
        "KB" | "kB" => 1000,
        "M" | "m" | "MiB" => 1 << 20,
        "MB" => 1_000_000,
        "G" | "g" | "GiB" => 1 << 30,
        "GB" => 1_000_000_000,
        _ => return Err(bad()),
    };
    n.checked_mul(unit).ok_or_else(bad)
}

/// `10s`, `500ms`, `2m`, `1h`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, ArgError> {
    let bad = || ArgError::Duration(format!("{s:?}"));
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    if digits == 0 {
        return Err(bad());
    }
    let n: u64 = t[..digits].parse().map_err(|_| bad())?;
    let ms = match &t[digits..] {
        "" | "s" => n.checked_mul(1000),
        "ms" => Some(n),
        "m" | "min" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => None,
    }
    .ok_or_else(bad)?;
    Ok(Duration::from_millis(ms))
}

fn size_arg(s: &str) -> Result<u64, String> {
    parse_size(s).map_err(|e| e.to_string())
}

fn duration_arg(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

fn workload_arg(s: &str) -> Result<Workload, String> {
    Workload::parse(s).map_err(|e| e.to_string())
}

/// S3 load generator for Tessera (and any S3 or plain HTTP server).
///
/// Against S3 (`--endpoint`): path-style requests signed with SigV4 (header auth,
/// UNSIGNED-PAYLOAD), keys `<prefix><index>` for index in 0..objects. Against a plain
/// URL (`--url`): GET, ranged GET and HEAD of that one URL, unsigned, so a web server
/// can be measured with the same client. Prints one progress line per second on
/// stderr, a summary and a final `RESULT ...` line on stdout. Exit status: 0 for a
/// run without errors, 1 when any request failed, 2 for a usage error, 3 when setup
/// (size probe, bucket creation, `--prepare` uploads) or writing a report failed.
#[derive(Parser, Debug, Clone)]
#[command(name = "tessera-bench", version, about, long_about)]
pub struct Cli {
    /// S3 endpoint, e.g. http://127.0.0.1:9000 (path-style addressing).
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// Plain HTTP URL to GET/HEAD without signing, e.g. http://127.0.0.1:8080/file.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Bucket the objects live in.
    #[arg(long, default_value = "tessera-bench")]
    pub bucket: String,
    /// Key prefix: objects are <prefix><index, 8 digits>.
    #[arg(long, default_value = "obj-")]
    pub prefix: String,
    /// Access key (default: $TESSERA_ACCESS_KEY, then $AWS_ACCESS_KEY_ID).
    #[arg(long)]
    pub access_key: Option<String>,
    /// Secret key (default: $TESSERA_SECRET_KEY, then $AWS_SECRET_ACCESS_KEY).
    #[arg(long)]
    pub secret_key: Option<String>,
    /// Region in the SigV4 credential scope.
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
    /// put, get, range, head, list, delete, or a weighted mix: mix:get=70,put=20,head=10.
    #[arg(short, long, default_value = "get", value_parser = workload_arg)]
    pub workload: Workload,
    /// Object size for PUT and for checking GET lengths (4KiB, 64MiB, ...).
    #[arg(short = 's', long, default_value = "4KiB", value_parser = size_arg)]
    pub object_size: u64,
    /// Number of distinct objects (1 = one hot object).
    #[arg(short = 'n', long, default_value_t = 100)]
    pub objects: u64,
    /// Bytes per ranged GET (the range workload).
    #[arg(long, default_value = "64KiB", value_parser = size_arg)]
    pub range_size: u64,
    /// max-keys of each ListObjectsV2 request.
    #[arg(long, default_value_t = 1000)]
    pub list_max_keys: u32,
    /// Connections (requests in flight).
    #[arg(short, long, default_value_t = 16)]
    pub concurrency: usize,
    /// Worker threads, each driving its share of the connections
    /// (default: one per CPU, at most one per connection).
    #[arg(short, long)]
    pub threads: Option<usize>,
    /// Measured time.
    #[arg(short, long, default_value = "10s", value_parser = duration_arg)]
    pub duration: Duration,
    /// Time run before measuring starts (requests sent, nothing recorded).
    #[arg(long, default_value = "1s", value_parser = duration_arg)]
    pub warmup: Duration,
    /// Create the bucket and upload the objects the read workloads need first.
    #[arg(long)]
    pub prepare: bool,
    /// Seed for object contents and key choice (same seed, same bytes).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Check the content of every GET body, not only its length.
    #[arg(long)]
    pub verify: bool,
    /// A request not answered in full within this time fails as a timeout.
    #[arg(long, default_value = "60s", value_parser = duration_arg)]
    pub timeout: Duration,
    /// Name of the run in the reports and the RESULT line (default: derived).
    #[arg(long)]
    pub label: Option<String>,
    /// Write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<std::path::PathBuf>,
    /// Write a self-contained HTML report with plots to this file.
    #[arg(long, value_name = "FILE")]
    pub html: Option<std::path::PathBuf>,
    /// No progress lines.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Where requests go.
#[derive(Clone, Debug)]
pub enum Target {
    S3(S3Target),
    Url(UrlTarget),
}

#[derive(Clone, Debug)]
pub struct S3Target {
    pub addr: SocketAddr,
    /// `Host` header value (the endpoint's authority as given).
    pub host: String,
    pub bucket: String,
    pub prefix: String,
    pub access_key: String,
    pub secret_key: String,
    pub region: String,
}

#[derive(Clone, Debug)]
pub struct UrlTarget {
    pub addr: SocketAddr,
    pub host: String,
    /// Path and query as sent on the request line.
    pub path: String,
}

impl Target {
    pub fn addr(&self) -> SocketAddr {
        match self {
            Target::S3(s) => s.addr,
            Target::Url(u) => u.addr,
        }
    }

    /// For reports: the endpoint or URL.
    pub fn describe(&self) -> String {
        match self {
            Target::S3(s) => format!("s3://{}/{} at http://{}", s.bucket, s.prefix, s.host),
            Target::Url(u) => format!("http://{}{}", u.host, u.path),
        }
    }
}

/// A validated run description.
#[derive(Clone, Debug)]
pub struct Config {
    pub target: Target,
    pub workload: Workload,
    pub object_bytes: u64,
    pub objects: u64,
    pub range_bytes: u64,
    pub list_max_keys: u32,
    pub concurrency: usize,
    pub threads: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub prepare: bool,
    pub seed: u64,
    pub verify: bool,
    pub timeout: Duration,
    pub label: String,
    pub json: Option<std::path::PathBuf>,
    pub html: Option<std::path::PathBuf>,
    pub quiet: bool,
}

/// `http://host[:port][/path]` split into (authority, path); port 80 when absent.
pub fn split_http_url(url: &str) -> Result<(String, String), ArgError> {
    let bad = |why: &str| ArgError::Url(format!("{url:?}: {why}"));
    let rest = url.strip_prefix("http://").ok_or_else(|| bad("not http:// (https is not supported)"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(bad("no host, or user info"));
    }
    if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(bad("spaces or control characters in the path"));
    }
    Ok((authority.to_string(), path.to_string()))
}

fn resolve(authority: &str, url: &str) -> Result<SocketAddr, ArgError> {
    // An authority without a port (or an IPv6 literal without one) gets :80.
    let with_port = if authority.rsplit_once(':').is_some_and(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
        && !authority.ends_with(']')
    {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    with_port
        .to_socket_addrs()
        .map_err(|e| ArgError::Url(format!("{url:?}: cannot resolve {with_port}: {e}")))?
        .next()
        .ok_or_else(|| ArgError::Url(format!("{url:?}: {with_port} resolves to no address")))
}

fn bucket_ok(b: &str) -> bool {
    (3..=BUCKET_BYTES_MAX).contains(&b.len())
        && b.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.')
}

impl Config {
    /// Validates `cli`; `env` looks up environment variables (credentials defaults).
    pub fn from_cli(cli: Cli, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ArgError> {
        let invalid = |m: String| Err(ArgError::Invalid(m));
        let target = match (&cli.endpoint, &cli.url) {
            (Some(_), Some(_)) => return invalid("give --endpoint (S3) or --url (plain HTTP), not both".into()),
            (None, None) => return invalid("give --endpoint URL (S3) or --url URL (plain HTTP)".into()),
            (Some(endpoint), None) => {
                let (host, path) = split_http_url(endpoint)?;
                if path != "/" {
                    return Err(ArgError::Url(format!(
                        "{endpoint:?}: an endpoint has no path (path-style addressing)"
                    )));
                }
                if !bucket_ok(&cli.bucket) {
                    return invalid(format!("--bucket {:?}: 3..=63 of a-z 0-9 . -", cli.bucket));
                }
                if cli.prefix.len() > PREFIX_BYTES_MAX || cli.prefix.bytes().any(|b| b < b' ' || b == 0x7f) {
                    return invalid(format!("--prefix: at most {PREFIX_BYTES_MAX} bytes, no control characters"));
                }
                let access_key =
                    cli.access_key.clone().or_else(|| env("TESSERA_ACCESS_KEY")).or_else(|| env("AWS_ACCESS_KEY_ID"));
                let secret_key = cli
                    .secret_key
                    .clone()
                    .or_else(|| env("TESSERA_SECRET_KEY"))
                    .or_else(|| env("AWS_SECRET_ACCESS_KEY"));
                let (Some(access_key), Some(secret_key)) = (access_key, secret_key) else {
                    return invalid(
                        "S3 needs credentials: --access-key/--secret-key or TESSERA_ACCESS_KEY/TESSERA_SECRET_KEY"
                            .into(),
                    );
                };
                if cli.region.is_empty() || !cli.region.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                    return invalid(format!("--region {:?}", cli.region));
                }
                Target::S3(S3Target {
                    addr: resolve(&host, endpoint)?,
                    host,
                    bucket: cli.bucket.clone(),
                    prefix: cli.prefix.clone(),
                    access_key,
                    secret_key,
                    region: cli.region.clone(),
                })
            }
            (None, Some(url)) => {
                if let Some(op) = cli.workload.ops().find(|op| !matches!(op, Op::Get | Op::Range | Op::Head)) {
                    return invalid(format!("--url supports get, range and head, not {}", op.name()));
                }
                if cli.prepare {
                    return invalid("--prepare needs --endpoint (a plain URL has nothing to prepare)".into());
                }
                if cli.verify {
                    return invalid("--verify needs --endpoint (the content of a plain URL is unknown)".into());
                }
                let (host, path) = split_http_url(url)?;
                Target::Url(UrlTarget { addr: resolve(&host, url)?, host, path })
            }
        };
        if cli.concurrency == 0 || cli.concurrency > CONCURRENCY_MAX {
            return invalid(format!("--concurrency: 1..={CONCURRENCY_MAX}"));
        }
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = cli.threads.unwrap_or(cpus.min(cli.concurrency));
        if threads == 0 || threads > THREADS_MAX || threads > cli.concurrency {
            return invalid(format!("--threads: 1..={THREADS_MAX} and at most --concurrency"));
        }
        if cli.objects == 0 || cli.objects > OBJECTS_MAX {
            return invalid(format!("--objects: 1..={OBJECTS_MAX}"));
        }
        if cli.object_size > OBJECT_BYTES_MAX {
            return invalid(format!("--object-size: at most {OBJECT_BYTES_MAX} bytes (one PUT)"));
        }
        if cli.workload.contains(Op::Range) {
            if cli.range_size == 0 {
                return invalid("--range-size must be at least 1 byte".into());
            }
            // Against a URL the size is learned from a HEAD before the run.
            if matches!(target, Target::S3(_)) && cli.range_size > cli.object_size {
                return invalid("--range-size is larger than --object-size".into());
            }
        }
        if cli.list_max_keys == 0 || cli.list_max_keys > LIST_KEYS_MAX {
            return invalid(format!("--list-max-keys: 1..={LIST_KEYS_MAX}"));
        }
        let max = Duration::from_secs(DURATION_SECS_MAX);
        if cli.duration.is_zero() || cli.duration > max || cli.warmup > max {
            return invalid(format!("--duration: more than 0 and at most {DURATION_SECS_MAX}s (--warmup too)"));
        }
        if cli.timeout.is_zero() || cli.timeout > max {
            return invalid("--timeout: more than 0".into());
        }
        let label = match cli.label.clone() {
            Some(l) => l,
            None => format!("{}-{}-c{}", cli.workload, human_size(cli.object_size), cli.concurrency),
        };
        if label.is_empty() || label.len() > LABEL_BYTES_MAX || label.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return invalid(format!("--label: 1..={LABEL_BYTES_MAX} bytes, no spaces"));
        }
        Ok(Config {
            target,
            workload: cli.workload,
            object_bytes: cli.object_size,
            objects: cli.objects,
            range_bytes: cli.range_size,
            list_max_keys: cli.list_max_keys,
            concurrency: cli.concurrency,
            threads,
            duration: cli.duration,
            warmup: cli.warmup,
            prepare: cli.prepare,
            seed: cli.seed,
            verify: cli.verify,
            timeout: cli.timeout,
            label,
            json: cli.json,
            html: cli.html,
            quiet: cli.quiet,
        })
    }
}

/// `4096` -> `4KiB`, `67108864` -> `64MiB`, `1000` -> `1000B`: exact, for labels.
// `u64::is_multiple_of` needs Rust 1.87; the workspace targets 1.85.
#[allow(clippy::manual_is_multiple_of)]
pub fn human_size(n: u64) -> String {
    for (unit, name) in [(1u64 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")] {
        if n >= unit && n % unit == 0 {
            return format!("{}{name}", n / unit);
        }
    }
    format!("{n}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TESSERA_ACCESS_KEY" => Some("ak".into()),
            "TESSERA_SECRET_KEY" => Some("sk".into()),
            _ => None,
        }
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn config(args: &[&str]) -> Result<Config, String> {
        let cli = Cli::try_parse_from(std::iter::once("tessera-bench").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        Config::from_cli(cli, &env).map_err(|e| e.to_string())
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("4K"), Ok(4096));
        assert_eq!(parse_size("4KB"), Ok(4000));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_size("0"), Ok(0));
        for bad in ["", "KiB", "-1", "4 XB", "1.5MiB", "99999999999999999999", "18446744073709551615G"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        for bad in ["", "s", "1.5s", "10d", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn workloads() {
        assert_eq!(Workload::parse("get"), Ok(Workload::single(Op::Get)));
        let mix = Workload::parse("mix:get=70,put=20,head=10").unwrap();
        assert_eq!(mix.mix, vec![(Op::Get, 70), (Op::Put, 20), (Op::Head, 10)]);
        assert_eq!(mix.total_weight(), 100);
        assert_eq!(mix.pick(0), Op::Get);
        assert_eq!(mix.pick(69), Op::Get);
        assert_eq!(mix.pick(70), Op::Put);
        assert_eq!(mix.pick(99), Op::Head);
        assert_eq!(mix.to_string(), "mix:get=70,put=20,head=10");
        for bad in ["fly", "mix:", "mix:get", "mix:get=0", "mix:get=x", "mix:foo=1", "mix:get=1,get=2", "GET"] {
            assert!(Workload::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn good_command_lines() {
        let c =
            config(&["--endpoint", "http://127.0.0.1:9000", "-w", "mix:get=70,put=30", "-c", "8", "-t", "2"]).unwrap();
        let Target::S3(s3) = &c.target else { panic!("s3 target") };
        assert_eq!(s3.host, "127.0.0.1:9000");
        assert_eq!(s3.addr, "127.0.0.1:9000".parse().unwrap());
        assert_eq!((s3.access_key.as_str(), s3.secret_key.as_str()), ("ak", "sk"));
        assert_eq!((c.concurrency, c.threads, c.object_bytes), (8, 2, 4096));
        assert_eq!(c.label, "mix:get=70,put=30-4KiB-c8");

        let c =
            config(&["--url", "http://127.0.0.1:8080/big", "-w", "range", "--range-size", "1MiB", "-s", "0"]).unwrap();
        let Target::Url(u) = &c.target else { panic!("url target") };
        assert_eq!((u.host.as_str(), u.path.as_str()), ("127.0.0.1:8080", "/big"));
        assert_eq!(c.range_bytes, 1 << 20);

        let c = config(&["--url", "http://127.0.0.1", "--threads", "1", "--label", "nginx-4k"]).unwrap();
        assert_eq!(c.target.addr(), "127.0.0.1:80".parse().unwrap());
        assert_eq!(c.label, "nginx-4k");

        let cli =
            Cli::try_parse_from(["b", "--endpoint", "http://127.0.0.1:1", "--access-key", "a", "--secret-key", "s"])
                .unwrap();
        assert!(Config::from_cli(cli, &no_env).is_ok());
    }

    #[test]
    fn bad_command_lines() {
        let cases: &[(&[&str], &str)] = &[
            (&[], "--endpoint"),
            (&["--endpoint", "http://127.0.0.1:1", "--url", "http://127.0.0.1:2/"], "not both"),
            (&["--endpoint", "https://127.0.0.1:1"], "https"),
            (&["--endpoint", "http://127.0.0.1:1/bucket"], "no path"),
            (&["--url", "http://127.0.0.1:1/f", "-w", "put"], "not put"),
            (&["--url", "http://127.0.0.1:1/f", "--prepare"], "--prepare"),
            (&["--url", "http://127.0.0.1:1/f", "--verify"], "--verify"),
            (&["--endpoint", "http://127.0.0.1:1", "-c", "0"], "--concurrency"),
            (&["--endpoint", "http://127.0.0.1:1", "-c", "2", "-t", "3"], "--threads"),
            (&["--endpoint", "http://127.0.0.1:1", "-n", "0"], "--objects"),
            (&["--endpoint", "http://127.0.0.1:1", "-w", "range", "-s", "1KiB"], "larger than"),
            (&["--endpoint", "http://127.0.0.1:1", "-d", "0s"], "--duration"),
            (&["--endpoint", "http://127.0.0.1:1", "--bucket", "Bad_Bucket"], "--bucket"),
            (&["--endpoint", "http://127.0.0.1:1", "--list-max-keys", "5000"], "--list-max-keys"),
            (&["--endpoint", "http://127.0.0.1:1", "--label", "a b"], "--label"),
            (&["--endpoint", "http://127.0.0.1:1", "-s", "lots"], "bad size"),
            (&["--endpoint", "http://127.0.0.1:1", "-w", "mix:get=50,fly=50"], "bad workload"),
            (&["--endpoint", "http://127.0.0.1:1", "--bogus"], "--bogus"),
        ];
        for (args, needle) in cases {
            let err = config(args).expect_err(&format!("{args:?} must be refused"));
            assert!(err.contains(needle), "{args:?}: {err}");
        }
        // No credentials anywhere.
        let cli = Cli::try_parse_from(["b", "--endpoint", "http://127.0.0.1:1"]).unwrap();
        let err = Config::from_cli(cli, &no_env).unwrap_err().to_string();
        assert!(err.contains("credentials"), "{err}");
    }

    #[test]
    fn labels_use_exact_sizes() {
        assert_eq!(human_size(4096), "4KiB");
        assert_eq!(human_size(64 << 20), "64MiB");
        assert_eq!(human_size(1000), "1000B");
        assert_eq!(human_size(0), "0B");
    }
}
