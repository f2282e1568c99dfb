//! Request metrics: one registry per core, merged on scrape, rendered as Prometheus text
//! exposition format 0.0.4.
//!
//! # Design
//! - **Per core, no sharing.** [`Metrics`] is `!Send` and uses a `RefCell`, so request tasks
//!   on one core can share it through an `Rc` without atomics. Borrows never outlive a method
//!   call, so no borrow can be held across an `.await`.
//! - **Scrape = snapshot + merge.** [`Metrics::snapshot`] clones the registry into a `Send`
//!   [`MetricsSnapshot`]; the scraping core asks every core for one and
//!   [`MetricsSnapshot::merge`]s them. Latencies are HDR histograms, so merged quantiles are
//!   exact to 3 significant digits, which averaging per-core quantiles would not be.
//! - **Bounded label space.** Operation names and S3 error codes are `&'static str`, so they
//!   can only come from our code, never from a request. On top of that, at most
//!   [`OPERATIONS_MAX`] operations and [`ERROR_SERIES_MAX`] (operation, error) pairs are
//!   tracked; further ones are counted under `other`.
//! - **Memory.** A histogram over 1 µs..60 s at 3 significant digits is ~140 KiB, so they are
//!   allocated on first use per (operation, status class) and per operation for TTFB: a core
//!   serving the usual dozen operations holds a few MiB. Latency is split by status class
//!   because fast 404s and 304s would otherwise drag down GET quantiles.
//! - **Summaries, not histograms**, in the exposition: the quantiles are computed here from
//!   the merged HDR histogram; `_sum` is the exact sum of microseconds, `_count` the count.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;

/// Smallest latency distinguished, in microseconds.
pub const LATENCY_US_MIN: u64 = 1;
/// Largest latency tracked; longer ones are recorded as this value.
pub const LATENCY_US_MAX: u64 = 60_000_000;
/// Precision of the latency histograms.
pub const LATENCY_SIGNIFICANT_DIGITS: u8 = 3;
/// Distinct operation labels tracked per registry; more are folded into [`OTHER_LABEL`].
pub const OPERATIONS_MAX: usize = 128;
/// Distinct (operation, S3 error code) series; more are folded into error `other`.
pub const ERROR_SERIES_MAX: usize = 1024;
/// Quantiles rendered for each summary.
pub const SUMMARY_QUANTILES: [f64; 4] = [0.5, 0.9, 0.99, 0.999];
/// Label value used when a limit folds series together.
pub const OTHER_LABEL: &str = "other";
/// `Content-Type` of the exposition.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

const _: () = assert!(LATENCY_US_MIN >= 1 && LATENCY_US_MAX > 2 * LATENCY_US_MIN);
const _: () = assert!(LATENCY_SIGNIFICANT_DIGITS <= 5);

/// HTTP status class, the `code` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StatusClass {
    Informational,
    Success,
    Redirection,
    ClientError,
    ServerError,
    /// Outside 100..=599; `http::StatusCode` allows up to 999.
    Other,
}

impl StatusClass {
    pub fn of(status: u16) -> Self {
        match status {
            100..=199 => Self::Informational,
            200..=299 => Self::Success,
            300..=399 => Self::Redirection,
            400..=499 => Self::ClientError,
            500..=599 => Self::ServerError,
            _ => Self::Other,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Informational => "1xx",
            Self::Success => "2xx",
            Self::Redirection => "3xx",
            Self::ClientError => "4xx",
            Self::ServerError => "5xx",
            Self::Other => OTHER_LABEL,
        }
    }
}

/// One finished request, as the gateway reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestRecord {
    /// S3 operation, e.g. `"GetObject"`; from the router's fixed set.
    pub op: &'static str,
    /// HTTP status sent.
    pub status: u16,
    /// S3 error code sent, e.g. `"NoSuchKey"`; `None` on success.
    pub error_code: Option<&'static str>,
    /// Request body bytes read.
    pub bytes_received: u64,
    /// Response body bytes written.
    pub bytes_sent: u64,
    /// From request head parsed to response fully written.
    pub duration_us: u64,
    /// From request head parsed to first response body byte written (GETs).
    pub ttfb_us: Option<u64>,
}

/// Latency distribution with an exact sum.
#[derive(Clone, Debug)]
struct Summary {
    histogram: Histogram<u64>,
    sum_us: u64,
}

impl Summary {
    fn new() -> Self {
        // The bounds are constants checked at compile time above; creation cannot fail.
        let histogram = Histogram::new_with_bounds(LATENCY_US_MIN, LATENCY_US_MAX, LATENCY_SIGNIFICANT_DIGITS)
            .expect("latency histogram bounds are valid constants");
        Self { histogram, sum_us: 0 }
    }

    fn record(&mut self, us: u64) {
        self.histogram.saturating_record(us.min(LATENCY_US_MAX));
        self.sum_us = self.sum_us.saturating_add(us);
    }

    fn merge(&mut self, other: &Summary) {
        // Same bounds on both sides, so every value of `other` fits and add cannot fail.
        let added = self.histogram.add(&other.histogram);
        debug_assert!(added.is_ok(), "histograms with equal bounds must merge");
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
    }
}

#[derive(Clone, Debug, Default)]
struct OpStats {
    requests: BTreeMap<StatusClass, u64>,
    bytes_received: u64,
    bytes_sent: u64,
    latency: BTreeMap<StatusClass, Summary>,
    ttfb: Option<Summary>,
}

impl OpStats {
    fn merge(&mut self, other: &OpStats) {
        for (class, n) in &other.requests {
            let c = self.requests.entry(*class).or_default();
            *c = c.saturating_add(*n);
        }
        self.bytes_received = self.bytes_received.saturating_add(other.bytes_received);
        self.bytes_sent = self.bytes_sent.saturating_add(other.bytes_sent);
        for (class, s) in &other.latency {
            match self.latency.get_mut(class) {
                Some(mine) => mine.merge(s),
                None => {
                    self.latency.insert(*class, s.clone());
                }
            }
        }
        if let Some(t) = &other.ttfb {
            match &mut self.ttfb {
                Some(mine) => mine.merge(t),
                None => self.ttfb = Some(t.clone()),
            }
        }
    }
}

/// The metrics of one or more cores. `Send`: gather one per core and merge.
#[derive(Clone, Debug, Default)]
pub struct MetricsSnapshot {
    /// Invariant: at most OPERATIONS_MAX + 1 keys (the +1 is OTHER_LABEL).
    ops: BTreeMap<&'static str, OpStats>,
    /// (op, S3 error code) → count. Invariant: at most ERROR_SERIES_MAX + OPERATIONS_MAX + 1
    /// keys (folded series add at most one per op).
    errors: BTreeMap<(&'static str, &'static str), u64>,
}

// Compile-time proof that snapshots can cross cores.
const _: fn() = || {
    fn assert_send<T: Send>() {}
    assert_send::<MetricsSnapshot>();
};

impl MetricsSnapshot {
    fn op_entry(&mut self, op: &'static str) -> &mut OpStats {
        let op = if self.ops.contains_key(op) || self.ops.len() < OPERATIONS_MAX { op } else { OTHER_LABEL };
        self.ops.entry(op).or_default()
    }

    fn record(&mut self, r: &RequestRecord) {
        let class = StatusClass::of(r.status);
        let stats = self.op_entry(r.op);
        let n = stats.requests.entry(class).or_default();
        *n = n.saturating_add(1);
        stats.bytes_received = stats.bytes_received.saturating_add(r.bytes_received);
        stats.bytes_sent = stats.bytes_sent.saturating_add(r.bytes_sent);
        stats.latency.entry(class).or_insert_with(Summary::new).record(r.duration_us);
        if let Some(t) = r.ttfb_us {
            stats.ttfb.get_or_insert_with(Summary::new).record(t);
        }
        if let Some(code) = r.error_code {
            // Use the op label the stats went to, so folded ops fold their errors too.
            let op = if self.ops.contains_key(r.op) { r.op } else { OTHER_LABEL };
            self.add_error(op, code, 1);
        }
    }

    fn add_error(&mut self, op: &'static str, code: &'static str, n: u64) {
        let key = if self.errors.contains_key(&(op, code)) || self.errors.len() < ERROR_SERIES_MAX {
            (op, code)
        } else {
            (op, OTHER_LABEL)
        };
        let c = self.errors.entry(key).or_default();
        *c = c.saturating_add(n);
    }

    /// Add another core's metrics into this one. Limits apply to the merged result too.
    pub fn merge(&mut self, other: &MetricsSnapshot) {
        for (op, stats) in &other.ops {
            self.op_entry(op).merge(stats);
        }
        for ((op, code), n) in &other.errors {
            let op = if self.ops.contains_key(op) { *op } else { OTHER_LABEL };
            self.add_error(op, code, *n);
        }
    }

    /// Total requests recorded (all operations and classes).
    pub fn requests_total(&self) -> u64 {
        self.ops.values().flat_map(|s| s.requests.values()).fold(0u64, |a, n| a.saturating_add(*n))
    }

    /// Render in Prometheus text format 0.0.4, followed by the caller's gauges.
    pub fn render_prometheus(&self, extra: &[GaugeLine]) -> String {
        let mut out = String::with_capacity(4096 + self.ops.len() * 1024);

        family(
            &mut out,
            "tessera_s3_requests_total",
            "S3 requests handled, by operation and HTTP status class.",
            "counter",
        );
        for (op, s) in &self.ops {
            for (class, n) in &s.requests {
                sample(&mut out, "tessera_s3_requests_total", &[("op", op), ("code", class.label())], &n.to_string());
            }
        }

        family(&mut out, "tessera_s3_errors_total", "S3 error responses, by operation and S3 error code.", "counter");
        for ((op, code), n) in &self.errors {
            sample(&mut out, "tessera_s3_errors_total", &[("op", op), ("error", code)], &n.to_string());
        }

        family(&mut out, "tessera_s3_bytes_received_total", "Request body bytes received, by operation.", "counter");
        for (op, s) in &self.ops {
            sample(&mut out, "tessera_s3_bytes_received_total", &[("op", op)], &s.bytes_received.to_string());
        }

        family(&mut out, "tessera_s3_bytes_sent_total", "Response body bytes sent, by operation.", "counter");
        for (op, s) in &self.ops {
            sample(&mut out, "tessera_s3_bytes_sent_total", &[("op", op)], &s.bytes_sent.to_string());
        }

        let name = "tessera_s3_request_duration_seconds";
        family(
            &mut out,
            name,
            "Time from request head to last response byte, by operation and status class.",
            "summary",
        );
        for (op, s) in &self.ops {
            for (class, summary) in &s.latency {
                render_summary(&mut out, name, &[("op", op), ("code", class.label())], summary);
            }
        }

        let name = "tessera_s3_ttfb_seconds";
        family(&mut out, name, "Time from request head to first response body byte, by operation.", "summary");
        for (op, s) in &self.ops {
            if let Some(summary) = &s.ttfb {
                render_summary(&mut out, name, &[("op", op)], summary);
            }
        }

        render_gauges(&mut out, extra);
        out
    }
}

/// Per-core registry. Cheap to record into; `!Send` by design.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: RefCell<MetricsSnapshot>,
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn record(&self, r: &RequestRecord) {
        self.inner.borrow_mut().record(r);
    }

    /// A copy of everything recorded so far, to send to the scraping core.
    pub fn snapshot(&self) -> MetricsSnapshot {
        self.inner.borrow().clone()
    }
}

/// A gauge sample supplied by the caller at render time (drive state, store statistics).
/// Samples with the same `name` are grouped under one HELP/TYPE, which come from the first.
#[derive(Debug, Clone, PartialEq)]
pub struct GaugeLine {
    /// Metric name, `[a-zA-Z_:][a-zA-Z0-9_:]*`; invalid names are skipped.
    pub name: &'static str,
    pub help: &'static str,
    /// Label names must be `[a-zA-Z_][a-zA-Z0-9_]*` (invalid ones skip the sample); values
    /// are escaped, so any text (a drive path) is fine.
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

impl GaugeLine {
    pub fn new(name: &'static str, help: &'static str, value: f64) -> Self {
        Self { name, help, labels: Vec::new(), value }
    }

    pub fn label(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.labels.push((name, value.into()));
        self
    }
}

fn render_gauges(out: &mut String, extra: &[GaugeLine]) {
    // Group by name in order of first appearance; O(n²) on a list the caller builds per scrape
    // (drives and a few store statistics), which is small.
    for (i, g) in extra.iter().enumerate() {
        if extra[..i].iter().any(|prev| prev.name == g.name) || !is_metric_name(g.name) {
            continue;
        }
        family(out, g.name, g.help, "gauge");
        for s in extra[i..].iter().filter(|s| s.name == g.name) {
            if s.labels.iter().all(|(k, _)| is_label_name(k)) {
                let labels: Vec<(&str, &str)> = s.labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
                sample(out, s.name, &labels, &fmt_f64(s.value));
            }
        }
    }
}

fn render_summary(out: &mut String, name: &str, labels: &[(&str, &str)], s: &Summary) {
    for q in SUMMARY_QUANTILES {
        let q_label = q.to_string();
        let mut with_q: Vec<(&str, &str)> = labels.to_vec();
        with_q.push(("quantile", &q_label));
        sample(out, name, &with_q, &fmt_f64(us_to_s(s.histogram.value_at_quantile(q))));
    }
    sample(out, &format!("{name}_sum"), labels, &fmt_f64(us_to_s(s.sum_us)));
    sample(out, &format!("{name}_count"), labels, &s.histogram.len().to_string());
}

fn us_to_s(us: u64) -> f64 {
    us as f64 / 1_000_000.0
}

fn family(out: &mut String, name: &str, help: &str, kind: &str) {
    debug_assert!(is_metric_name(name));
    out.push_str("# HELP ");
    out.push_str(name);
    out.push(' ');
    // HELP text escapes only backslash and newline (format 0.0.4).
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('\n');
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: &str) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(k);
            out.push_str("=\"");
            escape_label_value(out, v);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    out.push_str(value);
    out.push('\n');
}

/// Label values escape backslash, double quote and newline (format 0.0.4).
fn escape_label_value(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn fmt_f64(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        // Rust's Display never uses an exponent and round-trips; Prometheus parses both.
        v.to_string()
    }
}

fn is_metric_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

fn is_label_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !s.starts_with("__")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(status: u16, duration_us: u64) -> RequestRecord {
        RequestRecord {
            op: "GetObject",
            status,
            error_code: None,
            bytes_received: 0,
            bytes_sent: 100,
            duration_us,
            ttfb_us: Some(duration_us / 2),
        }
    }

    fn lines_with<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
        text.lines().filter(|l| l.starts_with(prefix)).collect()
    }

    #[test]
    fn records_and_renders() {
        let m = Metrics::new();
        for i in 1..=1000 {
            m.record(&get(200, i * 1000));
        }
        m.record(&RequestRecord {
            op: "GetObject",
            status: 404,
            error_code: Some("NoSuchKey"),
            bytes_received: 0,
            bytes_sent: 250,
            duration_us: 50,
            ttfb_us: None,
        });
        m.record(&RequestRecord {
            op: "PutObject",
            status: 200,
            error_code: None,
            bytes_received: 1 << 20,
            bytes_sent: 0,
            duration_us: 2_000,
            ttfb_us: None,
        });
        let text = m.snapshot().render_prometheus(&[]);
        assert!(text.ends_with('\n'));
        assert_eq!(
            lines_with(&text, "tessera_s3_requests_total"),
            [
                "tessera_s3_requests_total{op=\"GetObject\",code=\"2xx\"} 1000",
                "tessera_s3_requests_total{op=\"GetObject\",code=\"4xx\"} 1",
                "tessera_s3_requests_total{op=\"PutObject\",code=\"2xx\"} 1",
            ]
        );
        assert_eq!(
            lines_with(&text, "tessera_s3_errors_total"),
            ["tessera_s3_errors_total{op=\"GetObject\",error=\"NoSuchKey\"} 1"]
        );
        assert!(text.contains("tessera_s3_bytes_received_total{op=\"PutObject\"} 1048576\n"));
        assert!(text.contains("tessera_s3_bytes_sent_total{op=\"GetObject\"} 100250\n"));
        assert!(text.contains("# TYPE tessera_s3_request_duration_seconds summary\n"));
        // Quantiles of 1..=1000 ms, to 3 significant digits.
        let q = |q: &str| -> f64 {
            let prefix =
                format!("tessera_s3_request_duration_seconds{{op=\"GetObject\",code=\"2xx\",quantile=\"{q}\"}} ");
            let line = text.lines().find(|l| l.starts_with(&prefix)).unwrap();
            line[prefix.len()..].parse().unwrap()
        };
        assert!((q("0.5") - 0.5).abs() < 0.001, "{}", q("0.5"));
        assert!((q("0.9") - 0.9).abs() < 0.001);
        assert!((q("0.99") - 0.99).abs() < 0.001);
        assert!((q("0.999") - 0.999).abs() < 0.001);
        assert!(text.contains("tessera_s3_request_duration_seconds_sum{op=\"GetObject\",code=\"2xx\"} 500.5\n"));
        assert!(text.contains("tessera_s3_request_duration_seconds_count{op=\"GetObject\",code=\"2xx\"} 1000\n"));
        assert!(text.contains("tessera_s3_ttfb_seconds_count{op=\"GetObject\"} 1000\n"));
        assert!(!text.contains("tessera_s3_ttfb_seconds_count{op=\"PutObject\"}"));
        // Every non-comment line is `name{labels} value` or `name value`.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = l.rsplit_once(' ').unwrap();
            assert!(value.parse::<f64>().is_ok(), "{l}");
        }
    }

    #[test]
    fn merge_across_cores() {
        let a = Metrics::new();
        let b = Metrics::new();
        for i in 0..100 {
            a.record(&get(200, 1_000 + i));
            b.record(&get(200, 9_000 + i));
        }
        b.record(&RequestRecord { error_code: Some("SlowDown"), status: 503, ..get(503, 10) });
        let mut total = a.snapshot();
        // Snapshots travel between threads.
        let from_b = std::thread::spawn(move || b.snapshot()).join().unwrap();
        total.merge(&from_b);
        assert_eq!(total.requests_total(), 201);
        let text = total.render_prometheus(&[]);
        assert!(text.contains("tessera_s3_request_duration_seconds_count{op=\"GetObject\",code=\"2xx\"} 200\n"));
        assert!(text.contains("tessera_s3_errors_total{op=\"GetObject\",error=\"SlowDown\"} 1\n"));
        assert!(text.contains("tessera_s3_requests_total{op=\"GetObject\",code=\"5xx\"} 1\n"));
        // The median lies between the two cores' ranges: merged, not averaged per core.
        let med = text
            .lines()
            .find_map(|l| {
                l.strip_prefix("tessera_s3_request_duration_seconds{op=\"GetObject\",code=\"2xx\",quantile=\"0.5\"} ")
            })
            .unwrap();
        let med: f64 = med.parse().unwrap();
        assert!((0.00109..0.00110).contains(&med), "{med}");
    }

    #[test]
    fn extreme_values_saturate() {
        let m = Metrics::new();
        m.record(&RequestRecord { bytes_received: u64::MAX, bytes_sent: u64::MAX, ..get(200, u64::MAX) });
        m.record(&RequestRecord { bytes_received: u64::MAX, bytes_sent: u64::MAX, ..get(200, 0) });
        m.record(&get(999, 5));
        m.record(&get(0, 5));
        let text = m.snapshot().render_prometheus(&[]);
        assert!(text.contains(&format!("tessera_s3_bytes_received_total{{op=\"GetObject\"}} {}\n", u64::MAX)));
        assert!(text.contains("quantile=\"0.999\"} 60.")); // clamped to LATENCY_US_MAX (to 3 digits)
        assert!(text.contains("tessera_s3_requests_total{op=\"GetObject\",code=\"other\"} 2\n"));
        assert!(text.contains(&format!(
            "tessera_s3_request_duration_seconds_sum{{op=\"GetObject\",code=\"2xx\"}} {}\n",
            fmt_f64(us_to_s(u64::MAX))
        )));
    }

    #[test]
    fn label_space_is_bounded() {
        // Leak a few hundred distinct names to stand in for a router bug.
        let names: Vec<&'static str> =
            (0..OPERATIONS_MAX + 10).map(|i| &*Box::leak(format!("Op{i:03}").into_boxed_str())).collect();
        let m = Metrics::new();
        for n in &names {
            m.record(&RequestRecord { op: n, error_code: Some(n), ..get(500, 1) });
        }
        let snap = m.snapshot();
        assert_eq!(snap.ops.len(), OPERATIONS_MAX + 1);
        assert!(snap.ops.contains_key(OTHER_LABEL));
        assert_eq!(snap.requests_total(), (OPERATIONS_MAX + 10) as u64);
        assert_eq!(snap.errors.get(&(OTHER_LABEL, names[OPERATIONS_MAX + 5])), Some(&1));

        let mut errors = MetricsSnapshot::default();
        for n in names.iter().cycle().take(ERROR_SERIES_MAX + 500) {
            errors.add_error("GetObject", n, 1);
        }
        let many: Vec<&'static str> =
            (0..ERROR_SERIES_MAX).map(|i| &*Box::leak(format!("E{i:05}").into_boxed_str())).collect();
        for n in &many {
            errors.add_error("GetObject", n, 1);
        }
        assert!(errors.errors.len() <= ERROR_SERIES_MAX + 1);
        assert!(errors.errors.contains_key(&("GetObject", OTHER_LABEL)));
    }

    #[test]
    fn gauges_and_escaping() {
        let gauges = [
            GaugeLine::new("tessera_drive_online", "1 if the drive is online.", 1.0).label("drive", "/mnt/d0"),
            GaugeLine::new("tessera_store_objects", "Objects stored.\nSecond line \\ backslash.", 42.0),
            GaugeLine::new("tessera_drive_online", "ignored duplicate help", 0.0).label("drive", "we\"ird\\path\nx"),
            GaugeLine::new("tessera_ratio", "A ratio.", f64::NAN),
            GaugeLine::new("tessera_inf", "Inf.", f64::INFINITY).label("k", "v"),
            GaugeLine::new("bad name", "skipped", 1.0),
            GaugeLine::new("tessera_bad_label", "sample skipped", 1.0).label("bad-label", "v"),
            GaugeLine::new("tessera_small", "small", 0.000_000_1),
        ];
        let text = Metrics::new().snapshot().render_prometheus(&gauges);
        let tail = &text[text.find("# HELP tessera_drive_online").unwrap()..];
        assert_eq!(
            tail,
            "# HELP tessera_drive_online 1 if the drive is online.\n\
             # TYPE tessera_drive_online gauge\n\
             tessera_drive_online{drive=\"/mnt/d0\"} 1\n\
             tessera_drive_online{drive=\"we\\\"ird\\\\path\\nx\"} 0\n\
             # HELP tessera_store_objects Objects stored.\\nSecond line \\\\ backslash.\n\
             # TYPE tessera_store_objects gauge\n\
             tessera_store_objects 42\n\
             # HELP tessera_ratio A ratio.\n\
             # TYPE tessera_ratio gauge\n\
             tessera_ratio NaN\n\
             # HELP tessera_inf Inf.\n\
             # TYPE tessera_inf gauge\n\
             tessera_inf{k=\"v\"} +Inf\n\
             # HELP tessera_bad_label sample skipped\n\
             # TYPE tessera_bad_label gauge\n\
             # HELP tessera_small small\n\
             # TYPE tessera_small gauge\n\
             tessera_small 0.0000001\n"
        );
    }

    #[test]
    fn empty_registry_renders_only_headers() {
        let text = MetricsSnapshot::default().render_prometheus(&[]);
        assert!(text.lines().all(|l| l.starts_with("# HELP ") || l.starts_with("# TYPE ")), "{text}");
        assert_eq!(text.lines().count(), 12);
    }

    #[test]
    fn names_and_classes() {
        assert!(is_metric_name("a:b_c9") && !is_metric_name("9a") && !is_metric_name("") && !is_metric_name("a-b"));
        assert!(is_label_name("drive") && !is_label_name("__x") && !is_label_name("a b") && !is_label_name(""));
        assert_eq!(StatusClass::of(206).label(), "2xx");
        assert_eq!(StatusClass::of(304).label(), "3xx");
        assert_eq!(StatusClass::of(101).label(), "1xx");
        assert_eq!(StatusClass::of(600).label(), "other");
    }
}
