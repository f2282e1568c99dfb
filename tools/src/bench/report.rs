//! Results of a run in three forms: a human summary, JSON, and a self-contained HTML
//! page whose plots are inline SVG drawn here (no script, no network), plus the one
//! `RESULT ...` line scripts parse.
//!
//! Units: MB is 10^6 bytes (wrk's "MB" is 2^20; the HTML and JSON also give MiB/s);
//! latencies are milliseconds.
use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::args::{human_size, Config, Op};
use super::run::Outcome;
use super::stats::{TimePoint, OFFSET_BANDS};

/// Points of the percentile curves: 0 to 5 nines in steps of a tenth of a nine.
pub const CURVE_NINES_MAX: f64 = 5.0;
pub const CURVE_STEPS_PER_NINE: u32 = 10;

#[derive(Clone, Debug, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Option<Percentiles> {
        if h.is_empty() {
            return None;
        }
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        Some(Percentiles {
            count: h.len(),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: h.max() as f64 / 1000.0,
        })
    }
}

/// (percentile, ms) points from 0 to 99.999 and the maximum.
fn curve(h: &Histogram<u64>) -> Vec<[f64; 2]> {
    if h.is_empty() {
        return Vec::new();
    }
    let steps = (CURVE_NINES_MAX * CURVE_STEPS_PER_NINE as f64) as u32;
    let mut out: Vec<[f64; 2]> = (0..=steps)
        .map(|i| {
            let q = 1.0 - 10f64.powf(-(i as f64) / CURVE_STEPS_PER_NINE as f64);
            [q * 100.0, h.value_at_quantile(q) as f64 / 1000.0]
        })
        .collect();
    out.push([100.0, h.max() as f64 / 1000.0]);
    out
}

/// Ranged GETs' time to first byte for the ranges whose first byte lies in one band
/// of the object, `[from, to)` as shares of its size.
#[derive(Clone, Debug, Serialize)]
pub struct OffsetBand {
    pub from: f64,
    pub to: f64,
    pub ttfb: Option<Percentiles>,
}

/// The fastest and slowest bands' time to first byte (ms), over the bands with ranges.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OffsetSpread {
    pub p50_min: f64,
    pub p50_max: f64,
    pub p99_min: f64,
    pub p99_max: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct OpReport {
    pub op: &'static str,
    pub ops: u64,
    pub ops_per_s: f64,
    pub bytes: u64,
    pub mb_per_s: f64,
    pub errors: u64,
    pub latency: Option<Percentiles>,
    /// Time to the body's first byte (GET and ranged GET).
    pub ttfb: Option<Percentiles>,
    /// Latency percentile curve: [percentile, ms].
    pub latency_curve: Vec<[f64; 2]>,
    /// Time-to-first-byte percentile curve (GETs).
    pub ttfb_curve: Vec<[f64; 2]>,
    /// Ranged GETs: time to first byte by where in the object the range starts.
    pub ttfb_by_offset: Vec<OffsetBand>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PrepareReport {
    pub objects: u64,
    pub seconds: f64,
    pub ops_per_s: f64,
    pub mb_per_s: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub label: String,
    pub command: String,
    pub target: String,
    pub workload: String,
    pub object_bytes: u64,
    pub objects: u64,
    pub range_bytes: u64,
    pub concurrency: usize,
    pub threads: usize,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub seed: u64,
    pub verify: bool,
    pub ops: u64,
    pub ops_per_s: f64,
    pub bytes: u64,
    pub mb_per_s: f64,
    pub mib_per_s: f64,
    pub errors: u64,
    pub errors_by_kind: BTreeMap<String, u64>,
    pub latency: Option<Percentiles>,
    /// Time to first byte over all GETs and ranged GETs.
    pub ttfb: Option<Percentiles>,
    pub per_op: Vec<OpReport>,
    pub timeline: Vec<TimePoint>,
    pub prepare: Option<PrepareReport>,
}

fn offset_bands(bands: &[Histogram<u64>; OFFSET_BANDS]) -> Vec<OffsetBand> {
    let share = |i: usize| i as f64 / OFFSET_BANDS as f64;
    bands
        .iter()
        .enumerate()
        .map(|(i, h)| OffsetBand { from: share(i), to: share(i + 1), ttfb: Percentiles::of(h) })
        .collect()
}

impl Report {
    pub fn build(
        cfg: &Config,
        command: String,
        object_bytes: u64,
        out: &Outcome,
        prepare: Option<PrepareReport>,
    ) -> Report {
        let secs = out.window.as_secs_f64().max(1e-9);
        let total = out.stats.total();
        let mut ttfb = Histogram::new_from(&total.ttfb_us);
        for op in [Op::Get, Op::Range] {
            ttfb.add(&out.stats.per_op[op.index()].ttfb_us).expect("same bounds");
        }
        let per_op = Op::ALL
            .iter()
            .filter(|&&op| cfg.workload.contains(op))
            .map(|&op| {
                let s = &out.stats.per_op[op.index()];
                OpReport {
                    op: op.name(),
                    ops: s.ops,
                    ops_per_s: s.ops as f64 / secs,
                    bytes: s.bytes,
                    mb_per_s: s.bytes as f64 / 1e6 / secs,
                    errors: s.errors,
                    latency: Percentiles::of(&s.latency_us),
                    ttfb: Percentiles::of(&s.ttfb_us),
                    latency_curve: curve(&s.latency_us),
                    ttfb_curve: curve(&s.ttfb_us),
                    ttfb_by_offset: if op == Op::Range {
                        offset_bands(&out.stats.range_ttfb_by_band)
                    } else {
                        Vec::new()
                    },
                }
            })
            .collect();
        Report {
            label: cfg.label.clone(),
            command,
            target: cfg.target.describe(),
            workload: cfg.workload.to_string(),
            object_bytes,
            objects: cfg.objects,
            range_bytes: cfg.range_bytes,
            concurrency: cfg.concurrency,
            threads: cfg.threads,
            duration_s: secs,
            warmup_s: cfg.warmup.as_secs_f64(),
            seed: cfg.seed,
            verify: cfg.verify && (cfg.workload.contains(Op::Get) || cfg.workload.contains(Op::Range)),
            ops: total.ops,
            ops_per_s: total.ops as f64 / secs,
            bytes: total.bytes,
            mb_per_s: total.bytes as f64 / 1e6 / secs,
            mib_per_s: total.bytes as f64 / (1u64 << 20) as f64 / secs,
            errors: out.stats.errors_total(),
            errors_by_kind: out.stats.errors.iter().map(|(k, n)| (k.to_string(), *n)).collect(),
            latency: Percentiles::of(&total.latency_us),
            ttfb: Percentiles::of(&ttfb),
            per_op,
            timeline: out.timeline.clone(),
            prepare,
        }
    }

    /// The ranged GETs' fastest and slowest offset bands, when ranges were measured.
    pub fn offset_spread(&self) -> Option<OffsetSpread> {
        let bands: Vec<&Percentiles> =
            self.per_op.iter().flat_map(|o| &o.ttfb_by_offset).filter_map(|b| b.ttfb.as_ref()).collect();
        let min = |f: fn(&Percentiles) -> f64| bands.iter().map(|p| f(p)).fold(f64::INFINITY, f64::min);
        let max = |f: fn(&Percentiles) -> f64| bands.iter().map(|p| f(p)).fold(0.0, f64::max);
        (!bands.is_empty()).then(|| OffsetSpread {
            p50_min: min(|p| p.p50_ms),
            p50_max: max(|p| p.p50_ms),
            p99_min: min(|p| p.p99_ms),
            p99_max: max(|p| p.p99_ms),
        })
    }

    /// `RESULT label=... ops_per_s=... ...`: one line, space-separated key=value,
    /// numbers only (absent latencies are 0). `ttfb_band_*`: the ranged GETs' fastest
    /// and slowest offset bands ([`Report::offset_spread`]).
    pub fn result_line(&self) -> String {
        let lat = self.latency.as_ref();
        let ttfb = self.ttfb.as_ref();
        let spread = self.offset_spread();
        format!(
            "RESULT label={} ops_per_s={:.1} mb_per_s={:.2} p50_ms={:.3} p99_ms={:.3} p999_ms={:.3} \
             ttfb_p50_ms={:.3} ttfb_p99_ms={:.3} ttfb_band_p50_min_ms={:.3} ttfb_band_p50_max_ms={:.3} \
             ttfb_band_p99_min_ms={:.3} ttfb_band_p99_max_ms={:.3} errors={}",
            self.label,
            self.ops_per_s,
            self.mb_per_s,
            lat.map_or(0.0, |p| p.p50_ms),
            lat.map_or(0.0, |p| p.p99_ms),
            lat.map_or(0.0, |p| p.p999_ms),
            ttfb.map_or(0.0, |p| p.p50_ms),
            ttfb.map_or(0.0, |p| p.p99_ms),
            spread.map_or(0.0, |s| s.p50_min),
            spread.map_or(0.0, |s| s.p50_max),
            spread.map_or(0.0, |s| s.p99_min),
            spread.map_or(0.0, |s| s.p99_max),
            self.errors,
        )
    }

    pub fn human(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "tessera-bench {}: {}", self.label, self.target);
        let _ = writeln!(
            s,
            "  {} on {}, {} connections on {} threads, {:.1} s measured after {:.1} s warm-up{}",
            self.workload,
            self.objects_text(),
            self.concurrency,
            self.threads,
            self.duration_s,
            self.warmup_s,
            if self.verify { ", GET content verified" } else { "" },
        );
        if let Some(p) = &self.prepare {
            let _ = writeln!(
                s,
                "  prepare: {} objects in {:.2} s ({:.0} ops/s, {:.1} MB/s)",
                p.objects, p.seconds, p.ops_per_s, p.mb_per_s
            );
        }
        let _ = writeln!(
            s,
            "  {:<7}{:>10}{:>11}{:>10}{:>9}{:>9}{:>9}{:>10}{:>9}{:>8}",
            "op", "ops", "ops/s", "MB/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "errors"
        );
        let row =
            |s: &mut String, name: &str, ops: u64, ops_s: f64, mb_s: f64, p: Option<&Percentiles>, errors: u64| {
                let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
                let _ = writeln!(
                    s,
                    "  {name:<7}{ops:>10}{ops_s:>11.1}{mb_s:>10.2}{:>9}{:>9}{:>9}{:>10}{:>9}{errors:>8}",
                    f(p.map(|p| p.p50_ms)),
                    f(p.map(|p| p.p90_ms)),
                    f(p.map(|p| p.p99_ms)),
                    f(p.map(|p| p.p999_ms)),
                    f(p.map(|p| p.max_ms)),
                );
            };
        for o in &self.per_op {
            row(&mut s, o.op, o.ops, o.ops_per_s, o.mb_per_s, o.latency.as_ref(), o.errors);
        }
        if self.per_op.len() > 1 {
            row(&mut s, "all", self.ops, self.ops_per_s, self.mb_per_s, self.latency.as_ref(), self.errors);
        }
        if let Some(t) = &self.ttfb {
            let _ = writeln!(
                s,
                "  time to first byte (GET): p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  max {:.3} ms",
                t.p50_ms, t.p90_ms, t.p99_ms, t.p999_ms, t.max_ms
            );
        }
        for o in self.per_op.iter().filter(|o| !o.ttfb_by_offset.is_empty()) {
            let list = |f: fn(&Percentiles) -> f64| -> String {
                let each = o
                    .ttfb_by_offset
                    .iter()
                    .map(|b| b.ttfb.as_ref().map_or("-".to_string(), |p| format!("{:.3}", f(p))));
                each.collect::<Vec<_>>().join(" / ")
            };
            let _ = writeln!(
                s,
                "  {} time to first byte by where the range starts ({} bands of the object): p50 {} ms, p99 {} ms",
                o.op,
                o.ttfb_by_offset.len(),
                list(|p| p.p50_ms),
                list(|p| p.p99_ms)
            );
        }
        if self.errors_by_kind.is_empty() {
            let _ = writeln!(s, "  errors: none");
        } else {
            let list: Vec<String> = self.errors_by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect();
            let _ = writeln!(s, "  errors: {}", list.join(", "));
        }
        s
    }

    /// "100 objects of 4KiB", or for a plain URL "one URL of 4KiB".
    fn objects_text(&self) -> String {
        if self.target.starts_with("http://") {
            format!("one URL of {}", human_size(self.object_bytes))
        } else {
            format!("{} objects of {}", self.objects, human_size(self.object_bytes))
        }
    }

    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report serializes")
    }

    pub fn html(&self) -> String {
        html::page(self)
    }
}

mod html {
    use super::*;

    const COLORS: [&str; 8] = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
    const WIDTH: f64 = 880.0;
    const HEIGHT: f64 = 320.0;
    const LEFT: f64 = 72.0;
    const RIGHT: f64 = 150.0;
    const TOP: f64 = 34.0;
    const BOTTOM: f64 = 48.0;
    /// Below this many points per series, points are also drawn as dots.
    const DOTS_POINTS_MAX: usize = 60;

    pub struct Series {
        pub name: String,
        pub color: &'static str,
        pub points: Vec<(f64, f64)>,
    }

    pub fn escape(s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        for c in s.chars() {
            match c {
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '&' => out.push_str("&amp;"),
                '"' => out.push_str("&quot;"),
                '\'' => out.push_str("&#39;"),
                c => out.push(c),
            }
        }
        out
    }

    /// A 1-2-5 step giving about `ticks` intervals over `range`.
    pub fn nice_step(range: f64, ticks: f64) -> f64 {
        let raw = (range / ticks).max(f64::MIN_POSITIVE);
        let mag = 10f64.powf(raw.log10().floor());
        let norm = raw / mag;
        let step = if norm <= 1.0 {
            1.0
        } else if norm <= 2.0 {
            2.0
        } else if norm <= 5.0 {
            5.0
        } else {
            10.0
        };
        step * mag
    }

    fn tick_label(v: f64, step: f64) -> String {
        if v.abs() >= 1e6 && step >= 1e5 {
            return format!("{}M", trim(v / 1e6, step / 1e6));
        }
        if v.abs() >= 1e4 && step >= 1e3 {
            return format!("{}k", trim(v / 1e3, step / 1e3));
        }
        trim(v, step)
    }

    fn trim(v: f64, step: f64) -> String {
        let decimals = if step >= 1.0 { 0 } else { (-step.log10().floor()) as usize };
        format!("{v:.decimals$}")
    }

    /// Line chart; `x_ticks` overrides numeric x ticks (position, label).
    pub fn line_chart(
        title: &str,
        x_label: &str,
        y_label: &str,
        series: &[Series],
        x_ticks: Option<&[(f64, &str)]>,
    ) -> String {
        let all = series.iter().flat_map(|s| s.points.iter());
        let (mut x0, mut x1, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, 0.0f64);
        for &(x, y) in all {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y1 = y1.max(y);
        }
        if let Some(ticks) = x_ticks {
            for &(x, _) in ticks {
                x0 = x0.min(x);
                x1 = x1.max(x);
            }
        }
        if !x0.is_finite() {
            (x0, x1) = (0.0, 1.0);
        }
        if x1 <= x0 {
            x1 = x0 + 1.0;
        }
        let y_step = nice_step(if y1 > 0.0 { y1 } else { 1.0 }, 5.0);
        let y1 = ((y1 / y_step).ceil() * y_step).max(y_step);
        let (pw, ph) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
        let sx = |x: f64| LEFT + (x - x0) / (x1 - x0) * pw;
        let sy = |y: f64| TOP + ph - y / y1 * ph;
        let mut s = String::new();
        let _ = write!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{t}">"#,
            t = escape(title)
        );
        let _ = write!(s, r#"<text x="{LEFT}" y="20" class="title">{}</text>"#, escape(title));
        // Grid and y ticks.
        let mut y = 0.0;
        while y <= y1 + y_step / 2.0 {
            let py = sy(y);
            let _ = write!(
                s,
                r#"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" class="grid"/><text x="{:.1}" y="{:.1}" class="ytick">{}</text>"#,
                LEFT + pw,
                LEFT - 6.0,
                py + 4.0,
                tick_label(y, y_step)
            );
            y += y_step;
        }
        // X ticks.
        let owned: Vec<(f64, String)>;
        let ticks: Vec<(f64, &str)> = match x_ticks {
            Some(t) => t.to_vec(),
            None => {
                let step = nice_step(x1 - x0, 8.0).max(if x1 - x0 >= 2.0 { 1.0 } else { 0.0 });
                let mut x = (x0 / step).ceil() * step;
                let mut v = Vec::new();
                while x <= x1 + step * 1e-9 {
                    v.push((x, tick_label(x, step)));
                    x += step;
                }
                owned = v;
                owned.iter().map(|(x, l)| (*x, l.as_str())).collect()
            }
        };
        for (x, label) in ticks {
            let px = sx(x);
            let _ = write!(
                s,
                r#"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{:.1}" class="grid"/><text x="{px:.1}" y="{:.1}" class="xtick">{}</text>"#,
                TOP + ph,
                TOP + ph + 16.0,
                escape(label)
            );
        }
        let _ = write!(
            s,
            r#"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" class="frame"/><text x="{:.1}" y="{:.1}" class="xlabel">{}</text><text transform="translate(16 {:.1}) rotate(-90)" class="ylabel">{}</text>"#,
            LEFT + pw / 2.0,
            HEIGHT - 8.0,
            escape(x_label),
            TOP + ph / 2.0,
            escape(y_label)
        );
        for (i, series) in series.iter().enumerate() {
            let mut pts = String::new();
            for &(x, y) in &series.points {
                let _ = write!(pts, "{:.1},{:.1} ", sx(x), sy(y));
            }
            let _ = write!(s, r#"<polyline points="{pts}" fill="none" stroke="{}" stroke-width="1.8"/>"#, series.color);
            if series.points.len() <= DOTS_POINTS_MAX {
                for &(x, y) in &series.points {
                    let _ =
                        write!(s, r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{}"/>"#, sx(x), sy(y), series.color);
                }
            }
            let ly = TOP + 8.0 + i as f64 * 18.0;
            let lx = LEFT + pw + 12.0;
            let _ = write!(
                s,
                r#"<line x1="{lx}" y1="{ly}" x2="{:.1}" y2="{ly}" stroke="{}" stroke-width="3"/><text x="{:.1}" y="{:.1}" class="legend">{}</text>"#,
                lx + 18.0,
                series.color,
                lx + 24.0,
                ly + 4.0,
                escape(&series.name)
            );
        }
        s.push_str("</svg>");
        s
    }

    /// Percentile `p` (0..100) to "nines" on a log axis: 90 -> 1, 99 -> 2, ...
    fn nines(p: f64) -> f64 {
        let rest = (1.0 - p / 100.0).max(10f64.powf(-CURVE_NINES_MAX));
        -rest.log10()
    }

    fn card(s: &mut String, value: &str, what: &str) {
        let _ =
            write!(s, r#"<div class="card"><div class="v">{}</div><div class="k">{}</div></div>"#, escape(value), what);
    }

    pub fn page(r: &Report) -> String {
        let mut s = String::with_capacity(64 * 1024);
        let title = format!("tessera-bench: {}", r.label);
        let _ = write!(
            s,
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{}</style></head><body>",
            escape(&title),
            STYLE
        );
        let _ = write!(
            s,
            "<h1>{}</h1><p class=\"sub\">{} &middot; {} on {} &middot; {} connections, {} threads &middot; \
             {:.1} s measured after {:.1} s warm-up</p>",
            escape(&title),
            escape(&r.target),
            escape(&r.workload),
            r.objects_text(),
            r.concurrency,
            r.threads,
            r.duration_s,
            r.warmup_s
        );
        s.push_str("<div class=\"cards\">");
        card(&mut s, &format!("{:.0}", r.ops_per_s), "ops/s");
        card(&mut s, &format!("{:.1}", r.mb_per_s), "MB/s");
        if let Some(p) = &r.latency {
            card(&mut s, &format!("{:.3}", p.p50_ms), "p50 ms");
            card(&mut s, &format!("{:.3}", p.p99_ms), "p99 ms");
            card(&mut s, &format!("{:.3}", p.p999_ms), "p99.9 ms");
        }
        if let Some(t) = &r.ttfb {
            card(&mut s, &format!("{:.3}", t.p50_ms), "TTFB p50 ms");
        }
        card(&mut s, &r.errors.to_string(), if r.errors == 0 { "errors" } else { "<b class=\"bad\">errors</b>" });
        s.push_str("</div>");

        // Throughput over time.
        let pts = |f: &dyn Fn(&TimePoint) -> f64| -> Vec<(f64, f64)> {
            r.timeline.iter().map(|p| (p.second as f64 + 1.0, f(p))).collect()
        };
        s.push_str("<h2>Throughput</h2>");
        let ops = Series { name: "ops/s".into(), color: COLORS[0], points: pts(&|p| p.ops as f64) };
        let mut ops_series = vec![ops];
        if r.timeline.iter().any(|p| p.errors > 0) {
            ops_series.push(Series { name: "errors/s".into(), color: COLORS[1], points: pts(&|p| p.errors as f64) });
        }
        s.push_str(&line_chart("Operations per second", "second of the run", "ops/s", &ops_series, None));
        let mb = Series { name: "MB/s".into(), color: COLORS[2], points: pts(&|p| p.bytes as f64 / 1e6) };
        s.push_str(&line_chart("Payload throughput per second", "second of the run", "MB/s", &[mb], None));

        // Latency over time and percentile curves.
        s.push_str("<h2>Latency</h2>");
        let over_time = [
            Series { name: "p50".into(), color: COLORS[0], points: pts(&|p| p.p50_ms) },
            Series { name: "p99".into(), color: COLORS[3], points: pts(&|p| p.p99_ms) },
            Series { name: "max".into(), color: COLORS[1], points: pts(&|p| p.max_ms) },
        ];
        s.push_str(&line_chart("Latency per second (all operations)", "second of the run", "ms", &over_time, None));
        let mut curves = Vec::new();
        for (i, o) in r.per_op.iter().enumerate() {
            if o.latency_curve.is_empty() {
                continue;
            }
            let points = o.latency_curve.iter().map(|&[p, ms]| (nines(p), ms)).collect();
            curves.push(Series { name: format!("{} latency", o.op), color: COLORS[i % COLORS.len()], points });
            if !o.ttfb_curve.is_empty() {
                let points = o.ttfb_curve.iter().map(|&[p, ms]| (nines(p), ms)).collect();
                let color = COLORS[(i + 4) % COLORS.len()];
                curves.push(Series { name: format!("{} TTFB", o.op), color, points });
            }
        }
        let ticks: [(f64, &str); 6] =
            [(0.0, "0%"), (1.0, "90%"), (2.0, "99%"), (3.0, "99.9%"), (4.0, "99.99%"), (5.0, "99.999%")];
        s.push_str(&line_chart("Latency by percentile", "percentile", "ms", &curves, Some(&ticks)));

        // Tables.
        s.push_str("<h2>Operations</h2><table><tr><th>op</th><th>ops</th><th>ops/s</th><th>MB/s</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>max ms</th><th>TTFB p50 ms</th><th>TTFB p99 ms</th><th>errors</th></tr>");
        let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
        for o in &r.per_op {
            let l = o.latency.as_ref();
            let t = o.ttfb.as_ref();
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.2}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                o.op,
                o.ops,
                o.ops_per_s,
                o.mb_per_s,
                f(l.map(|p| p.p50_ms)),
                f(l.map(|p| p.p90_ms)),
                f(l.map(|p| p.p99_ms)),
                f(l.map(|p| p.p999_ms)),
                f(l.map(|p| p.max_ms)),
                f(t.map(|p| p.p50_ms)),
                f(t.map(|p| p.p99_ms)),
                o.errors
            );
        }
        s.push_str("</table>");
        for o in r.per_op.iter().filter(|o| !o.ttfb_by_offset.is_empty()) {
            let _ = write!(
                s,
                "<h2>{} time to first byte by offset</h2><p class=\"sub\">Ranges grouped by where in the object they start.</p>\
                 <table><tr><th>range starts in</th><th>ranges</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>max ms</th></tr>",
                o.op
            );
            for b in &o.ttfb_by_offset {
                let t = b.ttfb.as_ref();
                let _ = write!(
                    s,
                    "<tr><td>{:.0}-{:.0}% of the object</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    b.from * 100.0,
                    b.to * 100.0,
                    t.map_or(0, |p| p.count),
                    f(t.map(|p| p.p50_ms)),
                    f(t.map(|p| p.p90_ms)),
                    f(t.map(|p| p.p99_ms)),
                    f(t.map(|p| p.p999_ms)),
                    f(t.map(|p| p.max_ms)),
                );
            }
            s.push_str("</table>");
        }
        s.push_str("<h2>Errors</h2>");
        if r.errors_by_kind.is_empty() {
            s.push_str("<p>none</p>");
        } else {
            s.push_str("<table><tr><th>kind</th><th>count</th></tr>");
            for (k, n) in &r.errors_by_kind {
                let _ = write!(s, "<tr><td>{}</td><td>{n}</td></tr>", escape(k));
            }
            s.push_str("</table>");
        }
        s.push_str("<h2>Run</h2><table>");
        let mut kv = |k: &str, v: String| {
            let _ = write!(s, "<tr><th>{k}</th><td>{}</td></tr>", escape(&v));
        };
        kv("command", r.command.clone());
        kv("target", r.target.clone());
        kv("workload", r.workload.clone());
        kv("object size", format!("{} bytes", r.object_bytes));
        kv("objects", r.objects.to_string());
        kv("range size", format!("{} bytes", r.range_bytes));
        kv("connections / threads", format!("{} / {}", r.concurrency, r.threads));
        kv("seed", r.seed.to_string());
        kv("content verified", r.verify.to_string());
        kv("payload", format!("{} bytes, {:.2} MiB/s", r.bytes, r.mib_per_s));
        if let Some(p) = &r.prepare {
            kv("prepare", format!("{} objects in {:.1} s ({:.1} MB/s)", p.objects, p.seconds, p.mb_per_s));
        }
        s.push_str("</table><p class=\"sub\">MB = 10<sup>6</sup> bytes. Latency: request sent to last byte received; TTFB: to the first byte of the body (headers sent ahead of the data do not count). Generated by tessera-bench.</p></body></html>\n");
        s
    }

    const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:24px auto;max-width:920px;color:#222}\
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}\
.sub{color:#666;margin:0 0 12px}.cards{display:flex;flex-wrap:wrap;gap:10px;margin:16px 0}\
.card{border:1px solid #ddd;border-radius:6px;padding:8px 14px;min-width:92px}.card .v{font-size:22px;font-weight:600}\
.card .k{color:#666;font-size:12px}.bad{color:#d62728}table{border-collapse:collapse;margin:6px 0}\
td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}th{background:#f6f6f6}td:first-child,th:first-child{text-align:left}\
svg{display:block;margin:8px 0}svg text{font:11px system-ui,sans-serif;fill:#333}svg .title{font-size:13px;font-weight:600}\
svg .ytick{text-anchor:end}svg .xtick{text-anchor:middle}svg .xlabel{text-anchor:middle}svg .ylabel{text-anchor:middle}\
svg .grid{stroke:#eee}svg .frame{fill:none;stroke:#999}";
}

#[cfg(test)]
mod tests {
    use super::html::*;

    #[test]
    fn chart_helpers() {
        assert_eq!(nice_step(10.0, 5.0), 2.0);
        assert_eq!(nice_step(7.0, 5.0), 2.0);
        assert_eq!(nice_step(0.3, 5.0), 0.1);
        assert_eq!(nice_step(4000.0, 5.0), 1000.0);
        assert_eq!(escape("<a&'\">"), "&lt;a&amp;&#39;&quot;&gt;");
        let svg =
            line_chart("t<", "x", "y", &[Series { name: "s".into(), color: "#000", points: vec![(1.0, 2.0)] }], None);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>") && svg.contains("t&lt;"));
        let empty = line_chart("empty", "x", "y", &[], None);
        assert!(empty.ends_with("</svg>"));
    }
}
