//! The load loop: a fixed pool of worker threads, each driving its share of the
//! connections through one level-triggered epoll set.
//!
//! Why this shape (measured with `scripts/bench-client.sh` against wrk on nginx):
//! - **Event loop per thread, not a thread per connection.** A request is one `write`
//!   (head and, for PUT, the first body slices via `writev`) and usually one `read`;
//!   a thread per connection pays a context switch per request, which an event loop
//!   amortises over every ready connection of an `epoll_wait`. Measured on the 2-core
//!   VM (4 KiB GETs of nginx, 32 connections, interleaved runs): a blocking
//!   thread-per-connection prototype made 58-92k req/s where this loop made 85-141k and
//!   wrk 86-131k; it won one run on an idle machine (150k vs 133k) and lost every run
//!   with other load on the cores. The loop is wrk's design too, so the two compare
//!   like for like.
//! - **Level-triggered, interest changed only when a write would block.** A request is
//!   written straight after the previous response completes; only a large PUT body that
//!   fills the socket buffer registers for `EPOLLOUT` until it is sent. No `epoll_ctl`
//!   per small request, and no extra `read` to reach `EAGAIN` (edge-triggered would
//!   need one per response).
//! - **One read buffer per thread.** Response bodies are counted (and checked with
//!   `--verify`) straight out of it by the incremental [`ResponseReader`]; only a head
//!   that spans reads and the start of an error body are kept per connection. Nothing
//!   is allocated per response, and a 64 MiB body costs 64 MiB / [`READ_BUF_BYTES`]
//!   reads (wrk reads 8 KiB at a time).
//! - **Blocking connect.** Connections are made at start and after errors only, so a
//!   `connect` bounded by [`CONNECT_TIMEOUT_MAX`] keeps the loop simple; a slow connect
//!   delays the thread's other connections, which shows as an error condition anyway.
//!
//! Windowing follows wrk: an operation counts when it completes inside the measured
//! window (so one started during warm-up may count), payload bytes count when they
//! cross the socket inside the window, and requests in flight when the window ends
//! are abandoned, not waited for.
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, IoSlice, Read, Write as _};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant, SystemTime};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::args::{Config, Op, S3Target, Target};
use super::http::{xml_text, Head, Progress, ResponseReader, Sink, TransportError};
use super::pattern::Pattern;
use super::sigv4::{amz_date, uri_encode, Request, Signer, UNSIGNED_PAYLOAD};
use super::stats::{offset_band, ErrorKind, S3Code, Second, Stats, TimePoint, VerifyError};

/// Bytes each `read` may return; one buffer per thread.
pub const READ_BUF_BYTES: usize = 256 * 1024;
/// Reads of one connection per readiness event while reads fill the buffer (more data
/// is likely waiting); bounded so one fast stream does not starve the others.
pub const READS_PER_EVENT_MAX: usize = 8;
/// Events taken per `epoll_wait`.
pub const EVENTS_MAX: usize = 256;
/// How often timeouts and reconnect back-offs are checked.
pub const TICK: Duration = Duration::from_millis(50);
/// Upper bound on one blocking connect (the loop stalls meanwhile).
pub const CONNECT_TIMEOUT_MAX: Duration = Duration::from_secs(5);
/// Wait after a failed connect before the next attempt on that connection.
pub const RECONNECT_BACKOFF: Duration = Duration::from_millis(50);
/// Start of an error response body kept to find its S3 `<Code>`.
pub const ERROR_BODY_BYTES_MAX: usize = 4096;
/// Per-thread seconds the runner may lag behind before a worker's send blocks.
pub const SECONDS_QUEUED_MAX: usize = 64;
/// A second is final once every thread reported it, or this many seconds later.
pub const SECOND_GRACE: i64 = 2;

/// What a run does.
#[derive(Clone, Copy, Debug)]
pub enum Plan {
    /// The configured workload for `duration` after `warmup`.
    Timed { warmup: Duration, duration: Duration },
    /// PUT objects `0..count` once each, then stop (`--prepare`).
    Upload { count: u64 },
}

/// What a run measured.
pub struct Outcome {
    pub stats: Stats,
    /// Measured seconds, in order (warm-up excluded).
    pub timeline: Vec<TimePoint>,
    /// Length of the measured window.
    pub window: Duration,
}

/// Read-only state shared by the workers of one run.
struct Ctx<'a> {
    cfg: &'a Config,
    plan: Plan,
    /// Object size (for a URL, learned by a HEAD before the run).
    object_bytes: u64,
    pattern: &'a Pattern,
    /// Next key for uploads and deletes (each taken once, deletes wrap around).
    next_key: AtomicU64,
    /// Start of the measured window.
    t0: Instant,
    /// End of the measured window (timed runs).
    t_end: Option<Instant>,
}

impl Ctx<'_> {
    /// Whether something that happens at `now` is measured: events handled just after
    /// the end (in the batch that crossed it) are not.
    fn in_window(&self, now: Instant) -> bool {
        now >= self.t0 && self.t_end.is_none_or(|end| now < end)
    }
}

/// Runs `plan` and returns what it measured; prints a progress line per second on
/// stderr unless `cfg.quiet`.
pub fn run(cfg: &Config, plan: Plan, object_bytes: u64, pattern: &Pattern) -> Outcome {
    let start = Instant::now();
    let (t0, t_end) = match plan {
        Plan::Timed { warmup, duration } => (start + warmup, Some(start + warmup + duration)),
        Plan::Upload { .. } => (start, None),
    };
    let ctx = Ctx { cfg, plan, object_bytes, pattern, next_key: AtomicU64::new(0), t0, t_end };
    let (tx, rx) = mpsc::sync_channel::<Second>(SECONDS_QUEUED_MAX * cfg.threads);
    let mut timeline = Vec::new();
    let stats = std::thread::scope(|scope| {
        let ctx = &ctx;
        let handles: Vec<_> = (0..cfg.threads)
            .map(|id| {
                let tx = tx.clone();
                let conns = (0..cfg.concurrency).filter(|c| c % cfg.threads == id).count();
                std::thread::Builder::new()
                    .name(format!("bench-{id}"))
                    .spawn_scoped(scope, move || Worker::new(ctx, id, conns, tx).run())
                    .expect("spawn a worker thread")
            })
            .collect();
        drop(tx);
        collect_seconds(&rx, ctx, &mut timeline);
        let mut total = Stats::default();
        for h in handles {
            match h.join() {
                Ok(s) => total.merge(&s),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        total
    });
    let window = match plan {
        Plan::Timed { duration, .. } => duration,
        Plan::Upload { .. } => start.elapsed(),
    };
    Outcome { stats, timeline, window }
}

/// Second of `now` relative to the window start (negative during warm-up).
fn second_index(now: Instant, t0: Instant) -> i64 {
    if now >= t0 {
        (now - t0).as_secs() as i64
    } else {
        -((t0 - now).as_secs() as i64) - 1
    }
}

/// Merges the workers' per-second reports, prints progress, builds the timeline;
/// returns when every worker has hung up.
fn collect_seconds(rx: &mpsc::Receiver<Second>, ctx: &Ctx<'_>, timeline: &mut Vec<TimePoint>) {
    let threads = ctx.cfg.threads;
    let mut pending: BTreeMap<i64, (usize, Second)> = BTreeMap::new();
    let mut finalized = i64::MIN;
    let mut uploaded = 0u64;
    let mut finalize = |s: Second, uploaded: &mut u64| {
        let p = s.point();
        if !ctx.cfg.quiet {
            eprintln!("{}", progress_line(ctx, &p, uploaded));
        }
        if p.second >= 0 {
            timeline.push(p);
        }
    };
    loop {
        let disconnected = match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(sec) if sec.index > finalized => {
                let entry = pending.entry(sec.index).or_insert_with(|| (0, Second::new(sec.index)));
                entry.0 += 1;
                entry.1.merge(&sec);
                false
            }
            Ok(_late) => false, // its second was already printed; the totals still have it
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => true,
        };
        let now = second_index(Instant::now(), ctx.t0);
        while let Some((&index, &(reports, _))) = pending.first_key_value() {
            if !(disconnected || reports >= threads || index < now - SECOND_GRACE) {
                break;
            }
            let (_, (_, s)) = pending.pop_first().expect("non-empty");
            finalized = index;
            finalize(s, &mut uploaded);
        }
        if disconnected {
            return;
        }
    }
}

fn progress_line(ctx: &Ctx<'_>, p: &TimePoint, uploaded: &mut u64) -> String {
    let mb = p.bytes as f64 / 1e6;
    let lat = format!("p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms", p.p50_ms, p.p99_ms, p.max_ms);
    match ctx.plan {
        Plan::Upload { count } => {
            *uploaded += p.ops;
            format!(
                "tessera-bench: [prepare {:>4}s] {uploaded}/{count} objects  {mb:.1} MB/s  {lat}  errors {}",
                p.second + 1,
                p.errors
            )
        }
        Plan::Timed { duration, .. } => {
            let when = if p.second < 0 {
                "warm-up".to_string()
            } else {
                format!("{:>3}/{}s", p.second + 1, duration.as_secs_f64().ceil())
            };
            format!("tessera-bench: [{when:>9}] {:>8} ops/s  {mb:>9.1} MB/s  {lat}  errors {}", p.ops, p.errors)
        }
    }
}

/// An epoll instance (level-triggered).
struct Epoll {
    fd: RawFd,
}

impl Epoll {
    fn new() -> io::Result<Epoll> {
        // SAFETY: plain syscall, no pointers.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Epoll { fd })
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, token: usize, write: bool) -> io::Result<()> {
        let mut flags = libc::EPOLLIN | libc::EPOLLRDHUP;
        if write {
            flags |= libc::EPOLLOUT;
        }
        let mut ev = libc::epoll_event { events: flags as u32, u64: token as u64 };
        // SAFETY: `ev` is a valid epoll_event for the duration of the call.
        if unsafe { libc::epoll_ctl(self.fd, op, fd, &mut ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn wait(&self, events: &mut [libc::epoll_event], timeout: Duration) -> io::Result<usize> {
        // Round up: a 0 ms wait would spin until the deadline.
        let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        let cap = events.len().min(i32::MAX as usize) as i32;
        // SAFETY: the kernel writes at most `cap` events into `events`.
        let n = unsafe { libc::epoll_wait(self.fd, events.as_mut_ptr(), cap, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted { Ok(0) } else { Err(e) };
        }
        Ok(n as usize)
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        // SAFETY: we own the descriptor.
        unsafe { libc::close(self.fd) };
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ConnState {
    /// A request is in flight.
    Busy,
    /// No connection; try again at this time.
    Backoff(Instant),
    /// Upload plan only: nothing left to send.
    Done,
}

/// What the response to the current request must look like.
#[derive(Clone, Copy, Debug, Default)]
struct Check {
    /// Success statuses accepted.
    statuses: [u16; 2],
    /// Body length (HEAD: Content-Length) the response must have.
    length: Option<u64>,
    /// Pattern start of the object, when the body content is checked.
    verify_start: Option<usize>,
    /// Object offset of the first body byte (ranged GET).
    offset: u64,
    /// Ranged GET: the band of the object the range starts in (`stats::offset_band`).
    band: Option<usize>,
    /// Body bytes received so far.
    received: u64,
    content_ok: bool,
    /// The response is an error: keep the start of its body for the S3 code.
    capture: bool,
}

struct Conn {
    stream: Option<TcpStream>,
    state: ConnState,
    /// Registered for EPOLLOUT (a write would have blocked).
    want_write: bool,
    /// The request head, rebuilt per request in place.
    req: Vec<u8>,
    req_sent: usize,
    /// PUT body: length, bytes sent, pattern start of the object.
    body_len: u64,
    body_sent: u64,
    body_start: usize,
    op: Op,
    started: Instant,
    /// When the first byte of the response's body arrived. The status line and
    /// headers do not count: a server may send them before it has read any data,
    /// which would make a GET's time to first byte the time of a metadata lookup.
    first_byte: Option<Instant>,
    reader: ResponseReader,
    check: Check,
    error_body: Vec<u8>,
}

impl Conn {
    fn new(now: Instant) -> Conn {
        Conn {
            stream: None,
            state: ConnState::Backoff(now),
            want_write: false,
            req: Vec::with_capacity(1024),
            req_sent: 0,
            body_len: 0,
            body_sent: 0,
            body_start: 0,
            op: Op::Get,
            started: now,
            first_byte: None,
            reader: ResponseReader::new(),
            check: Check::default(),
            error_body: Vec::with_capacity(ERROR_BODY_BYTES_MAX),
        }
    }

    fn sending(&self) -> bool {
        self.req_sent < self.req.len() || self.body_sent < self.body_len
    }
}

/// Body bytes of one response: counted, checked, and for errors partly kept.
struct BodySink<'a> {
    check: &'a mut Check,
    error_body: &'a mut Vec<u8>,
    pattern: &'a Pattern,
}

impl Sink for BodySink<'_> {
    fn head(&mut self, head: &Head) {
        self.check.capture = !(200..300).contains(&head.status);
    }

    fn body(&mut self, data: &[u8]) {
        let c = &mut *self.check;
        if c.capture {
            let room = ERROR_BODY_BYTES_MAX.saturating_sub(self.error_body.len());
            self.error_body.extend_from_slice(&data[..data.len().min(room)]);
        } else if let Some(start) = c.verify_start {
            if c.content_ok && !self.pattern.matches(start, c.offset + c.received, data) {
                c.content_ok = false;
            }
        }
        c.received += data.len() as u64;
    }
}

/// Reused strings for building a signed S3 request.
#[derive(Default)]
pub struct S3Scratch {
    pub uri: String,
    pub query: String,
    pub key: String,
    range: String,
    auth: String,
}

/// Writes the head of a SigV4-signed, path-style S3 request for `scratch.uri` and
/// `scratch.query` (both already encoded) into `out`.
pub fn write_s3_head(
    out: &mut Vec<u8>,
    signer: &mut Signer,
    s3: &S3Target,
    method: &str,
    scratch: &mut S3Scratch,
    range: Option<(u64, u64)>,
    content_length: Option<u64>,
) {
    let date = amz_date(SystemTime::now());
    let date_str = std::str::from_utf8(&date).expect("ASCII date");
    scratch.range.clear();
    scratch.auth.clear();
    if let Some((first, last)) = range {
        let _ = write!(scratch.range, "bytes={first}-{last}");
    }
    let host = ("host", s3.host.as_str());
    let sha = ("x-amz-content-sha256", UNSIGNED_PAYLOAD);
    let amz = ("x-amz-date", date_str);
    let with_range = [host, ("range", scratch.range.as_str()), sha, amz];
    let without_range = [host, sha, amz];
    let req = Request {
        method,
        canonical_uri: &scratch.uri,
        canonical_query: &scratch.query,
        headers: if range.is_some() { &with_range } else { &without_range },
        payload_hash: UNSIGNED_PAYLOAD,
        amz_date: &date,
    };
    signer.authorization(&req, &mut scratch.auth);
    out.clear();
    let q = if scratch.query.is_empty() { "" } else { "?" };
    let _ = write!(out, "{method} {}{q}{} HTTP/1.1\r\nHost: {}\r\n", scratch.uri, scratch.query, s3.host);
    if range.is_some() {
        let _ = write!(out, "Range: {}\r\n", scratch.range);
    }
    let _ = write!(
        out,
        "x-amz-content-sha256: {UNSIGNED_PAYLOAD}\r\nx-amz-date: {date_str}\r\nAuthorization: {}\r\n",
        scratch.auth
    );
    if let Some(n) = content_length {
        let _ = write!(out, "Content-Length: {n}\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// `/<bucket>/<encoded key>` for object `index`, into `scratch.uri` (query cleared).
pub fn object_uri(s3: &S3Target, index: u64, scratch: &mut S3Scratch) {
    scratch.key.clear();
    let _ = write!(scratch.key, "{}{index:08}", s3.prefix);
    scratch.uri.clear();
    scratch.uri.push('/');
    scratch.uri.push_str(&s3.bucket);
    scratch.uri.push('/');
    uri_encode(&scratch.key, false, &mut scratch.uri);
    scratch.query.clear();
}

struct Worker<'a> {
    ctx: &'a Ctx<'a>,
    poll: Epoll,
    conns: Vec<Conn>,
    done: usize,
    read_buf: Vec<u8>,
    events: Vec<libc::epoll_event>,
    stats: Stats,
    second: Second,
    tx: SyncSender<Second>,
    rng: SmallRng,
    signer: Option<Signer>,
    scratch: S3Scratch,
}

impl<'a> Worker<'a> {
    fn new(ctx: &'a Ctx<'a>, id: usize, conns: usize, tx: SyncSender<Second>) -> Worker<'a> {
        let now = Instant::now();
        let signer = match &ctx.cfg.target {
            Target::S3(s3) => Some(Signer::new(&s3.access_key, &s3.secret_key, &s3.region)),
            Target::Url(_) => None,
        };
        Worker {
            ctx,
            poll: Epoll::new().expect("epoll_create1"),
            conns: (0..conns).map(|_| Conn::new(now)).collect(),
            done: 0,
            read_buf: vec![0; READ_BUF_BYTES],
            events: vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS_MAX],
            stats: Stats::default(),
            second: Second::new(second_index(now, ctx.t0)),
            tx,
            rng: SmallRng::seed_from_u64(ctx.cfg.seed ^ (id as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            signer,
            scratch: S3Scratch::default(),
        }
    }

    fn run(mut self) -> Stats {
        let now = Instant::now();
        for ci in 0..self.conns.len() {
            self.start_request(ci, now);
        }
        let mut next_tick = now + TICK;
        loop {
            let now = Instant::now();
            self.roll(now);
            if self.ctx.t_end.is_some_and(|end| now >= end) || self.done == self.conns.len() {
                break;
            }
            if now >= next_tick {
                self.tick(now);
                next_tick = now + TICK;
            }
            let mut wait = next_tick.saturating_duration_since(now);
            if let Some(end) = self.ctx.t_end {
                wait = wait.min(end.saturating_duration_since(now));
            }
            let n = match self.poll.wait(&mut self.events, wait) {
                Ok(n) => n,
                Err(e) => panic!("epoll_wait: {e}"),
            };
            for i in 0..n {
                let ev = self.events[i];
                let (flags, token) = (ev.events, ev.u64);
                self.on_event(token as usize, flags);
            }
        }
        // The last (possibly partial) second; a timed window ending on a second
        // boundary has none.
        let end = self.ctx.t_end.unwrap_or_else(Instant::now);
        self.roll(end);
        if (end > self.ctx.t0 && (end - self.ctx.t0).subsec_nanos() != 0) || self.ctx.t_end.is_none() {
            let last = std::mem::replace(&mut self.second, Second::new(i64::MAX));
            let _ = self.tx.send(last);
        }
        self.stats
    }

    /// Sends the finished seconds (and empty ones for any skipped) to the runner.
    fn roll(&mut self, now: Instant) {
        let index = second_index(now, self.ctx.t0);
        while self.second.index < index {
            let next = Second::new(self.second.index + 1);
            let finished = std::mem::replace(&mut self.second, next);
            // The runner outlives the workers; a send fails only if it panicked.
            let _ = self.tx.send(finished);
        }
    }

    fn tick(&mut self, now: Instant) {
        for ci in 0..self.conns.len() {
            match self.conns[ci].state {
                ConnState::Busy if now - self.conns[ci].started >= self.ctx.cfg.timeout => {
                    self.fail(ci, TransportError::Timeout, now);
                }
                ConnState::Backoff(at) if now >= at => self.start_request(ci, now),
                _ => {}
            }
        }
    }

    fn on_event(&mut self, ci: usize, flags: u32) {
        let Some(conn) = self.conns.get(ci) else { return };
        if conn.state != ConnState::Busy || conn.stream.is_none() {
            return; // stale event of a connection closed earlier in this batch
        }
        if flags & libc::EPOLLOUT as u32 != 0 && conn.sending() {
            self.send(ci);
        }
        let readable = (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32;
        if flags & readable != 0 && self.conns[ci].state == ConnState::Busy {
            self.receive(ci);
        }
    }

    fn pick(&mut self) -> Option<(Op, u64)> {
        let ctx = self.ctx;
        match ctx.plan {
            Plan::Upload { count } => {
                let key = ctx.next_key.fetch_add(1, Ordering::Relaxed);
                (key < count).then_some((Op::Put, key))
            }
            Plan::Timed { .. } => {
                let w = &ctx.cfg.workload;
                let op = if w.mix.len() == 1 { w.mix[0].0 } else { w.pick(self.rng.gen_range(0..w.total_weight())) };
                // Deletes walk the keys in order so each deletes an existing object
                // once before wrapping around; everything else picks at random.
                let key = if op == Op::Delete {
                    ctx.next_key.fetch_add(1, Ordering::Relaxed) % ctx.cfg.objects
                } else {
                    self.rng.gen_range(0..ctx.cfg.objects)
                };
                Some((op, key))
            }
        }
    }

    fn connect(&mut self, ci: usize) -> Result<(), TransportError> {
        let timeout = self.ctx.cfg.timeout.min(CONNECT_TIMEOUT_MAX);
        let connect_err = |e: io::Error| TransportError::from_io(&e, true);
        let stream = TcpStream::connect_timeout(&self.ctx.cfg.target.addr(), timeout).map_err(connect_err)?;
        stream.set_nodelay(true).map_err(connect_err)?;
        stream.set_nonblocking(true).map_err(connect_err)?;
        self.poll.ctl(libc::EPOLL_CTL_ADD, stream.as_raw_fd(), ci, false).map_err(connect_err)?;
        let conn = &mut self.conns[ci];
        conn.stream = Some(stream);
        conn.want_write = false;
        Ok(())
    }

    fn start_request(&mut self, ci: usize, now: Instant) {
        let Some((op, key)) = self.pick() else {
            let conn = &mut self.conns[ci];
            conn.stream = None;
            if conn.state != ConnState::Done {
                conn.state = ConnState::Done;
                self.done += 1;
            }
            return;
        };
        self.conns[ci].op = op;
        if self.conns[ci].stream.is_none() {
            if let Err(e) = self.connect(ci) {
                self.record_error(op, ErrorKind::Transport(e), now);
                self.conns[ci].state = ConnState::Backoff(now + RECONNECT_BACKOFF);
                return;
            }
        }
        self.build_request(ci, op, key);
        let conn = &mut self.conns[ci];
        conn.state = ConnState::Busy;
        conn.started = Instant::now();
        self.send(ci);
    }

    fn build_request(&mut self, ci: usize, op: Op, key: u64) {
        let ctx = self.ctx;
        let size = ctx.object_bytes;
        let range = (op == Op::Range).then(|| {
            let len = ctx.cfg.range_bytes.min(size).max(1);
            let first = self.rng.gen_range(0..=size.saturating_sub(len));
            (first, first + len - 1)
        });
        let method = match op {
            Op::Put => "PUT",
            Op::Get | Op::Range | Op::List => "GET",
            Op::Head => "HEAD",
            Op::Delete => "DELETE",
        };
        let conn = &mut self.conns[ci];
        match &ctx.cfg.target {
            Target::Url(u) => {
                conn.req.clear();
                let _ = write!(conn.req, "{method} {} HTTP/1.1\r\nHost: {}\r\n", u.path, u.host);
                if let Some((first, last)) = range {
                    let _ = write!(conn.req, "Range: bytes={first}-{last}\r\n");
                }
                conn.req.extend_from_slice(b"\r\n");
            }
            Target::S3(s3) => {
                let scratch = &mut self.scratch;
                if op == Op::List {
                    scratch.uri.clear();
                    scratch.uri.push('/');
                    scratch.uri.push_str(&s3.bucket);
                    scratch.query.clear();
                    let _ = write!(scratch.query, "list-type=2&max-keys={}&prefix=", ctx.cfg.list_max_keys);
                    uri_encode(&s3.prefix, true, &mut scratch.query);
                } else {
                    object_uri(s3, key, scratch);
                }
                let signer = self.signer.as_mut().expect("S3 targets have a signer");
                let content_length = (op == Op::Put).then_some(size);
                write_s3_head(&mut conn.req, signer, s3, method, scratch, range, content_length);
            }
        }
        conn.req_sent = 0;
        conn.body_len = if op == Op::Put { size } else { 0 };
        conn.body_sent = 0;
        conn.body_start = ctx.pattern.object_start(key);
        conn.first_byte = None;
        conn.reader.reset(op == Op::Head);
        conn.error_body.clear();
        let verify = ctx.cfg.verify && matches!(op, Op::Get | Op::Range);
        conn.check = Check {
            statuses: match op {
                Op::Range => [206, 206],
                Op::Delete => [204, 200],
                _ => [200, 200],
            },
            length: match op {
                Op::Get | Op::Head => Some(size),
                Op::Range => range.map(|(first, last)| last - first + 1),
                _ => None,
            },
            verify_start: verify.then_some(conn.body_start),
            offset: range.map_or(0, |(first, _)| first),
            band: range.map(|(first, _)| offset_band(first, size)),
            received: 0,
            content_ok: true,
            capture: false,
        };
    }

    /// Writes as much of the request as the socket takes.
    fn send(&mut self, ci: usize) {
        let pattern = self.ctx.pattern;
        let conn = &mut self.conns[ci];
        let Some(stream) = conn.stream.as_mut() else { return };
        let mut body_bytes = 0u64;
        let mut result = Ok(());
        while conn.req_sent < conn.req.len() || conn.body_sent < conn.body_len {
            let head = &conn.req[conn.req_sent..];
            let rest = conn.body_len - conn.body_sent;
            let body = if rest > 0 { pattern.slice(conn.body_start, conn.body_sent, rest as usize) } else { &[] };
            let body = &body[..body.len().min(rest as usize)];
            match stream.write_vectored(&[IoSlice::new(head), IoSlice::new(body)]) {
                Ok(0) => {
                    result = Err(TransportError::Reset);
                    break;
                }
                Ok(n) => {
                    let from_head = n.min(head.len());
                    conn.req_sent += from_head;
                    conn.body_sent += (n - from_head) as u64;
                    body_bytes += (n - from_head) as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    result = Err(TransportError::from_io(&e, false));
                    break;
                }
            }
        }
        let fd = stream.as_raw_fd();
        let want_write = result.is_ok() && conn.sending();
        if result.is_ok() && want_write != conn.want_write {
            if let Err(e) = self.poll.ctl(libc::EPOLL_CTL_MOD, fd, ci, want_write) {
                result = Err(TransportError::from_io(&e, false));
            }
            conn.want_write = want_write;
        }
        let op = conn.op;
        let now = Instant::now();
        self.add_bytes(op, body_bytes, now);
        if let Err(e) = result {
            self.fail(ci, e, now);
        }
    }

    fn receive(&mut self, ci: usize) {
        for _ in 0..READS_PER_EVENT_MAX {
            let conn = &mut self.conns[ci];
            let Some(stream) = conn.stream.as_mut() else { return };
            let n = match stream.read(&mut self.read_buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return self.fail(ci, TransportError::from_io(&e, false), Instant::now()),
            };
            let now = Instant::now();
            if n == 0 {
                return match conn.reader.feed_eof() {
                    Ok(()) => self.complete(ci, now, false),
                    Err(e) => self.fail(ci, e, now),
                };
            }
            let before = conn.check.received;
            let mut sink =
                BodySink { check: &mut conn.check, error_body: &mut conn.error_body, pattern: self.ctx.pattern };
            let progress = conn.reader.feed(&self.read_buf[..n], &mut sink);
            let body_bytes = conn.check.received - before;
            if body_bytes > 0 && conn.first_byte.is_none() {
                conn.first_byte = Some(now);
            }
            let op = conn.op;
            // Payload is object data: GET bodies (not LIST documents or error bodies).
            if !conn.check.capture && matches!(op, Op::Get | Op::Range) {
                self.add_bytes(op, body_bytes, now);
            }
            match progress {
                Err(e) => return self.fail(ci, TransportError::Malformed(e), now),
                Ok(Progress::Complete { used }) => return self.complete(ci, now, used < n),
                Ok(Progress::More) if n < self.read_buf.len() => return,
                Ok(Progress::More) => {}
            }
        }
    }

    /// The response is complete (`extra`: bytes followed it): checks it, records it,
    /// and sends the next request.
    fn complete(&mut self, ci: usize, now: Instant, extra: bool) {
        if extra {
            return self.fail(ci, TransportError::Malformed(super::http::HttpError::UnexpectedData), now);
        }
        let conn = &mut self.conns[ci];
        let head = *conn.reader.head();
        let check = conn.check;
        let op = conn.op;
        let result = if !(200..300).contains(&head.status) {
            let code = xml_text(&conn.error_body, "Code").map_or(S3Code::NONE, S3Code::new);
            Err(ErrorKind::Http { status: head.status, code })
        } else if !check.statuses.contains(&head.status) {
            Err(ErrorKind::Verify(VerifyError::Status(head.status)))
        } else if check.length.is_some_and(|len| {
            let got = if op == Op::Head { head.content_length } else { Some(check.received) };
            got != Some(len)
        }) {
            Err(ErrorKind::Verify(VerifyError::Length))
        } else if !check.content_ok {
            Err(ErrorKind::Verify(VerifyError::Content))
        } else {
            Ok(())
        };
        // A response that arrived before the request body was fully sent (an early
        // error) leaves the connection unusable, as does `Connection: close`.
        if head.close || conn.sending() {
            conn.stream = None;
        }
        let latency = now - conn.started;
        let ttfb = matches!(op, Op::Get | Op::Range).then(|| conn.first_byte.unwrap_or(now) - conn.started);
        let band = conn.check.band;
        match result {
            Ok(()) => {
                if self.ctx.in_window(now) {
                    self.stats.record_ok(op, latency, ttfb);
                    if let (Some(band), Some(t)) = (band, ttfb) {
                        self.stats.record_range_ttfb(band, t);
                    }
                }
                self.second.ops += 1;
                self.second.latency_us.saturating_record((latency.as_micros() as u64).max(1));
            }
            Err(kind) => self.record_error(op, kind, now),
        }
        self.start_request(ci, now);
    }

    /// The request failed without a usable response: records it and reconnects.
    fn fail(&mut self, ci: usize, err: TransportError, now: Instant) {
        let conn = &mut self.conns[ci];
        conn.stream = None;
        let op = conn.op;
        // Retried from the next tick, not from here: no recursion, and a server that
        // refuses every connection is not hammered in a tight loop.
        conn.state = match err {
            TransportError::Refused | TransportError::Connect => ConnState::Backoff(now + RECONNECT_BACKOFF),
            _ => ConnState::Backoff(now),
        };
        self.record_error(op, ErrorKind::Transport(err), now);
    }

    fn record_error(&mut self, op: Op, kind: ErrorKind, now: Instant) {
        if self.ctx.in_window(now) {
            self.stats.record_error(op, kind);
        }
        self.second.errors += 1;
    }

    fn add_bytes(&mut self, op: Op, n: u64, now: Instant) {
        if n > 0 {
            if self.ctx.in_window(now) {
                self.stats.add_bytes(op, n);
            }
            self.second.bytes += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_relative_to_the_window() {
        let t0 = Instant::now() + Duration::from_secs(10);
        assert_eq!(second_index(t0, t0), 0);
        assert_eq!(second_index(t0 + Duration::from_millis(1999), t0), 1);
        assert_eq!(second_index(t0 - Duration::from_millis(1), t0), -1);
        assert_eq!(second_index(t0 - Duration::from_millis(1001), t0), -2);
    }
}
