//! What a run measures: per-operation latency and time-to-first-byte histograms,
//! operation and byte counts, errors by kind, and a per-second timeline.
//!
//! Each worker thread owns a [`Stats`] (no sharing, no atomics on the request path)
//! and the runner merges them when the run ends. The per-second timeline travels as
//! [`Second`] messages, one per thread per second, which the runner merges into
//! [`TimePoint`]s as soon as every thread has reported that second.
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::args::{Op, OP_COUNT};
use super::http::TransportError;

/// Largest latency a histogram records exactly; longer ones saturate (a request
/// cannot outlive `--timeout`, which is at most a day, but this keeps histograms small).
pub const LATENCY_US_MAX: u64 = 3_600_000_000;
/// Significant digits of the run's histograms (0.1% resolution).
pub const LATENCY_SIGFIGS: u8 = 3;
/// Significant digits of the per-second histograms (1%: enough for a plot, and a
/// tenth of the memory, since one is sent per thread per second).
pub const TIMELINE_SIGFIGS: u8 = 2;
/// Ranged GETs' time to first byte is also kept by where in the object the range
/// starts, in this many equal bands (quarters): a read path whose cost grows with the
/// offset (a scan from the object's start, an index walked linearly) shows as a slower
/// last band.
pub const OFFSET_BANDS: usize = 4;
/// Longest S3 error code kept (longer ones are cut; the longest AWS code is shorter).
pub const S3_CODE_BYTES_MAX: usize = 48;

/// An S3 error code held inline, so counting errors allocates at most once per kind.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct S3Code {
    bytes: [u8; S3_CODE_BYTES_MAX],
    len: u8,
}

impl S3Code {
    pub const NONE: S3Code = S3Code { bytes: [0; S3_CODE_BYTES_MAX], len: 0 };

    /// Keeps the ASCII alphanumeric prefix of `code` (S3 codes are CamelCase words).
    pub fn new(code: &str) -> S3Code {
        let mut out = S3Code::NONE;
        for b in code.bytes().take_while(u8::is_ascii_alphanumeric).take(S3_CODE_BYTES_MAX) {
            out.bytes[out.len as usize] = b;
            out.len += 1;
        }
        out
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len as usize]).expect("ASCII")
    }
}

impl fmt::Debug for S3Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// A response that was well-formed HTTP but not what the request should get.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum VerifyError {
    /// A success status other than the expected one (e.g. 200 to a ranged GET).
    Status(u16),
    /// Body (or HEAD Content-Length) not the object's or range's length.
    Length,
    /// Body bytes differ from the seeded content (`--verify`).
    Content,
}

/// Errors are counted by kind: HTTP status and S3 code, transport failure, or a
/// failed check of the response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorKind {
    Http { status: u16, code: S3Code },
    Transport(TransportError),
    Verify(VerifyError),
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Http { status, code } if code.len > 0 => write!(f, "http-{status}:{}", code.as_str()),
            ErrorKind::Http { status, .. } => write!(f, "http-{status}"),
            ErrorKind::Transport(t) => write!(f, "transport:{t}"),
            ErrorKind::Verify(VerifyError::Status(s)) => write!(f, "verify:status-{s}"),
            ErrorKind::Verify(VerifyError::Length) => f.write_str("verify:length"),
            ErrorKind::Verify(VerifyError::Content) => f.write_str("verify:content"),
        }
    }
}

pub fn latency_histogram(sigfigs: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, sigfigs).expect("valid histogram bounds")
}

fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).max(1)
}

/// Counts and histograms of one operation.
#[derive(Clone)]
pub struct OpStats {
    /// Successful operations (errors are counted apart and not in the histograms).
    pub ops: u64,
    /// Payload bytes moved: PUT bodies sent, GET bodies received.
    pub bytes: u64,
    pub errors: u64,
    pub latency_us: Histogram<u64>,
    /// Request start to the first byte of the response's body (GETs and ranged GETs;
    /// the headers alone do not count).
    pub ttfb_us: Histogram<u64>,
}

impl Default for OpStats {
    fn default() -> Self {
        OpStats {
            ops: 0,
            bytes: 0,
            errors: 0,
            latency_us: latency_histogram(LATENCY_SIGFIGS),
            ttfb_us: latency_histogram(LATENCY_SIGFIGS),
        }
    }
}

impl OpStats {
    pub fn merge(&mut self, other: &OpStats) {
        self.ops += other.ops;
        self.bytes += other.bytes;
        self.errors += other.errors;
        self.latency_us.add(&other.latency_us).expect("same bounds");
        self.ttfb_us.add(&other.ttfb_us).expect("same bounds");
    }
}

/// The band of an object of `size` bytes that `offset` falls in (0..OFFSET_BANDS).
pub fn offset_band(offset: u64, size: u64) -> usize {
    let band = u128::from(offset) * OFFSET_BANDS as u128 / u128::from(size.max(1));
    (band as usize).min(OFFSET_BANDS - 1)
}

/// Everything one thread (or, merged, the run) measured.
#[derive(Clone)]
pub struct Stats {
    pub per_op: [OpStats; OP_COUNT],
    /// Ranged GETs' time to first byte by [`offset_band`] of the range's first byte.
    pub range_ttfb_by_band: [Histogram<u64>; OFFSET_BANDS],
    pub errors: BTreeMap<ErrorKind, u64>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            per_op: Default::default(),
            range_ttfb_by_band: std::array::from_fn(|_| latency_histogram(LATENCY_SIGFIGS)),
            errors: BTreeMap::new(),
        }
    }
}

impl Stats {
    pub fn record_ok(&mut self, op: Op, latency: Duration, ttfb: Option<Duration>) {
        let s = &mut self.per_op[op.index()];
        s.ops += 1;
        s.latency_us.saturating_record(micros(latency));
        if let Some(t) = ttfb {
            s.ttfb_us.saturating_record(micros(t));
        }
    }

    /// A successful ranged GET's time to first byte, by the band its range starts in.
    pub fn record_range_ttfb(&mut self, band: usize, ttfb: Duration) {
        self.range_ttfb_by_band[band].saturating_record(micros(ttfb));
    }

    pub fn record_error(&mut self, op: Op, kind: ErrorKind) {
        self.per_op[op.index()].errors += 1;
        *self.errors.entry(kind).or_insert(0) += 1;
    }

    pub fn add_bytes(&mut self, op: Op, n: u64) {
        self.per_op[op.index()].bytes += n;
    }

    pub fn merge(&mut self, other: &Stats) {
        for (mine, theirs) in self.per_op.iter_mut().zip(&other.per_op) {
            mine.merge(theirs);
        }
        for (mine, theirs) in self.range_ttfb_by_band.iter_mut().zip(&other.range_ttfb_by_band) {
            mine.add(theirs).expect("same bounds");
        }
        for (kind, n) in &other.errors {
            *self.errors.entry(*kind).or_insert(0) += n;
        }
    }

    /// All operations together.
    pub fn total(&self) -> OpStats {
        let mut all = OpStats::default();
        for s in &self.per_op {
            all.merge(s);
        }
        all
    }

    pub fn errors_total(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// One thread's counts for one second of the run (index 0 = the first measured
/// second; warm-up seconds are negative).
#[derive(Clone)]
pub struct Second {
    pub index: i64,
    pub ops: u64,
    pub bytes: u64,
    pub errors: u64,
    pub latency_us: Histogram<u64>,
}

impl Second {
    pub fn new(index: i64) -> Second {
        Second { index, ops: 0, bytes: 0, errors: 0, latency_us: latency_histogram(TIMELINE_SIGFIGS) }
    }

    pub fn merge(&mut self, other: &Second) {
        debug_assert_eq!(self.index, other.index);
        self.ops += other.ops;
        self.bytes += other.bytes;
        self.errors += other.errors;
        self.latency_us.add(&other.latency_us).expect("same bounds");
    }

    pub fn point(&self) -> TimePoint {
        let ms = |q: f64| self.latency_us.value_at_quantile(q) as f64 / 1000.0;
        TimePoint {
            second: self.index,
            ops: self.ops,
            bytes: self.bytes,
            errors: self.errors,
            p50_ms: ms(0.5),
            p99_ms: ms(0.99),
            max_ms: self.latency_us.max() as f64 / 1000.0,
        }
    }
}

/// One second of the merged timeline.
#[derive(Clone, Debug, Serialize)]
pub struct TimePoint {
    pub second: i64,
    pub ops: u64,
    pub bytes: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::http::HttpError;

    #[test]
    fn merging_threads_adds_counts_and_histograms() {
        let mut a = Stats::default();
        let mut b = Stats::default();
        for ms in 1..=100u64 {
            a.record_ok(Op::Get, Duration::from_millis(ms), Some(Duration::from_micros(ms * 10)));
        }
        for ms in 101..=200u64 {
            b.record_ok(Op::Get, Duration::from_millis(ms), Some(Duration::from_micros(ms * 10)));
        }
        b.record_ok(Op::Put, Duration::from_secs(7200), None); // saturates, not lost
        a.record_range_ttfb(offset_band(0, 1000), Duration::from_millis(1));
        b.record_range_ttfb(offset_band(0, 1000), Duration::from_millis(3));
        b.record_range_ttfb(offset_band(999, 1000), Duration::from_millis(2));
        a.add_bytes(Op::Get, 1000);
        b.add_bytes(Op::Get, 24);
        let not_found = ErrorKind::Http { status: 404, code: S3Code::new("NoSuchKey") };
        a.record_error(Op::Get, not_found);
        b.record_error(Op::Get, not_found);
        b.record_error(Op::Head, ErrorKind::Transport(TransportError::Malformed(HttpError::Chunk)));

        let mut all = Stats::default();
        all.merge(&a);
        all.merge(&b);
        let get = &all.per_op[Op::Get.index()];
        assert_eq!((get.ops, get.bytes, get.errors), (200, 1024, 2));
        assert_eq!(get.latency_us.len(), 200);
        // The median of 1..=200 ms is 100 ms; the max 200 ms (within 0.1%).
        let p50 = get.latency_us.value_at_quantile(0.5);
        assert!((99_900..=100_100).contains(&p50), "{p50}");
        assert!(get.latency_us.equivalent(get.latency_us.max(), 200_000));
        assert!(get.ttfb_us.equivalent(get.ttfb_us.max(), 2_000));
        assert!(all.per_op[Op::Put.index()].latency_us.max() >= LATENCY_US_MAX);
        let bands: Vec<u64> = all.range_ttfb_by_band.iter().map(|h| h.len()).collect();
        assert_eq!(bands, [2, 0, 0, 1]);
        assert!(all.range_ttfb_by_band[0].equivalent(all.range_ttfb_by_band[0].max(), 3_000));
        assert_eq!(all.errors[&not_found], 2);
        assert_eq!(all.errors_total(), 3);
        let total = all.total();
        assert_eq!((total.ops, total.errors), (201, 3));
        let names: Vec<String> = all.errors.keys().map(ToString::to_string).collect();
        assert_eq!(names, ["http-404:NoSuchKey", "transport:malformed-response:bad-chunk"]);

        let mut s = Second::new(3);
        let mut t = Second::new(3);
        s.ops = 5;
        t.ops = 7;
        t.latency_us.record(2_000).unwrap();
        s.merge(&t);
        let p = s.point();
        assert_eq!((p.second, p.ops), (3, 12));
        assert!((p.max_ms - 2.0).abs() < 0.03, "{}", p.max_ms);
    }

    #[test]
    fn offset_bands_split_the_object_evenly() {
        let bands: Vec<usize> = [0, 249, 250, 499, 500, 750, 999].iter().map(|&o| offset_band(o, 1000)).collect();
        assert_eq!(bands, [0, 0, 1, 1, 2, 3, 3]);
        // An offset at or past the end (not produced, but safe) and an empty object.
        assert_eq!(offset_band(1000, 1000), OFFSET_BANDS - 1);
        assert_eq!(offset_band(0, 0), 0);
        assert_eq!(offset_band(u64::MAX - 1, u64::MAX), OFFSET_BANDS - 1);
    }

    #[test]
    fn s3_codes_are_bounded_and_clean() {
        assert_eq!(S3Code::new("NoSuchKey").as_str(), "NoSuchKey");
        assert_eq!(S3Code::new("Bad Code<").as_str(), "Bad");
        assert_eq!(S3Code::new(&"A".repeat(100)).as_str().len(), S3_CODE_BYTES_MAX);
    }
}
