//! Engine IO throughput: writes `total` bytes of `record`-sized shard pieces through
//! the shard store (every put acknowledged = durable), then reads them all back, on
//! the real glommio/io_uring backend, one store per pinned executor.
//! `scripts/bench-engine.sh` runs it beside fio on the same file system and prints
//! the ratios.
//!
//! Run: `cargo bench -p tessera-benches --bench engine_io -- --dir /var/tmp/tessera-bench`
//!
//! Options (flags override `TESSERA_BENCH_*` environment variables; sizes take K/M/G
//! binary suffixes; store settings default to the engine's `StoreConfig::default()`):
//!
//! | flag              | env                           | default                        |
//! |-------------------|-------------------------------|--------------------------------|
//! | `--dir`           | `TESSERA_BENCH_DIR`           | `/var/tmp/tessera-bench`       |
//! | `--total`         | `TESSERA_BENCH_TOTAL`         | `1G`                           |
//! | `--record`        | `TESSERA_BENCH_RECORD`        | `1M`                           |
//! | `--depth`         | `TESSERA_BENCH_DEPTH`         | `16` requests in flight per core |
//! | `--cores`         | `TESSERA_BENCH_CORES`         | `1` (one store per core, cores 0..n) |
//! | `--drive`         | `TESSERA_BENCH_DRIVE`         | `paced` (see below)            |
//! | `--batch-records` | `TESSERA_BENCH_BATCH`         | engine (64): records per group commit |
//! | `--batch-bytes`   | `TESSERA_BENCH_BATCH_BYTES`   | engine (32M)                   |
//! | `--prealloc-step` | `TESSERA_BENCH_PREALLOC_STEP` | engine (16M)                   |
//! | `--block-log2`    | `TESSERA_BENCH_BLOCK_LOG2`    | engine (16)                    |
//! | `--io-memory`     | `TESSERA_BENCH_IO_MEMORY`     | 2 x depth x record, >= 8M, per executor |
//! | `--preempt-us`    | `TESSERA_BENCH_PREEMPT_US`    | glommio's (100 ms)             |
//! | `--range-len`     | `TESSERA_BENCH_RANGE_LEN`     | `64K` (0 skips the pass)       |
//! | `--verify-every`  | `TESSERA_BENCH_VERIFY_EVERY`  | `8` (byte compare 1 read in N) |
//! | `--allow-tmpfs`   |                               | refuse tmpfs / ramfs           |
//!
//! Drives (how requests are kept in flight, at most `depth` per core):
//! * `paced`: a task per request that starts after a 1 us timer, i.e. after the
//!   executor went through its reactor, as a request arriving on a socket would.
//! * `tasks`: a task per request, started as soon as a slot frees.
//! * `stream`: one task polling the requests (`buffer_unordered`).
//!
//! The difference matters because of how the store and glommio work: a put builds
//! its record (copy + crc) synchronously when first polled, and glommio hands queued
//! IO to the kernel only when its run queue is empty. With `tasks`/`stream`, the
//! records of the next window are built right after a group commit acknowledges,
//! before the committer's next writes reach the kernel, so the disk idles meanwhile.
//!
//! Output: one `engine key=value ...` line per phase, e.g. `engine write_MBps=...`
//! and `engine read_MBps=...` (MB = 10^6 bytes of payload; a 1 MiB piece takes
//! 1 MiB + 4 KiB on disk), plus CPU use of the executor threads and group-commit
//! counts.
//!
//! Verification (so the numbers cannot come from a shortcut): every payload is
//! stamped with its record number and page number at the start of every 4 KiB page
//! and at its end; every read checks its length and all stamps, and every
//! `verify-every`-th read is compared byte for byte. The store itself verifies the
//! crc32c of every block it returns. Files are removed at the end.
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt, TryStreamExt};
use glommio::{LocalExecutorBuilder, Placement};
use tessera_engine::io::glommio_io::GlommioIo;
use tessera_engine::store::{ShardStore, StoreConfig, StoreError};
use tessera_engine::ShardKey;

const PAGE: usize = 4096;
const STAMP_MAGIC: u64 = 0x7e55_e7a0_0000_0000;

#[derive(Debug, Clone)]
struct Args {
    dir: PathBuf,
    total: u64,
    record: usize,
    depth: usize,
    cores: usize,
    batch_records: Option<usize>,
    batch_bytes: Option<u64>,
    prealloc_step: Option<u64>,
    block_log2: Option<u8>,
    io_memory: usize,
    range_len: u64,
    verify_every: u64,
    allow_tmpfs: bool,
    drive: Drive,
    preempt: Option<Duration>,
}

fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mul) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let mul = match c.to_ascii_uppercase() {
                'K' => 1u64 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                _ => return Err(format!("bad size suffix in {s:?}")),
            };
            (&s[..i], mul)
        }
        _ => (s, 1),
    };
    num.trim().parse::<u64>().map(|n| n * mul).map_err(|e| format!("bad size {s:?}: {e}"))
}

fn parse_args() -> Result<Args, String> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let mut a = Args {
        dir: env("TESSERA_BENCH_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/var/tmp/tessera-bench")),
        total: env("TESSERA_BENCH_TOTAL").map(|v| parse_size(&v)).transpose()?.unwrap_or(1 << 30),
        record: env("TESSERA_BENCH_RECORD").map(|v| parse_size(&v)).transpose()?.unwrap_or(1 << 20) as usize,
        depth: env("TESSERA_BENCH_DEPTH").map(|v| parse_size(&v)).transpose()?.unwrap_or(16) as usize,
        cores: env("TESSERA_BENCH_CORES").map(|v| parse_size(&v)).transpose()?.unwrap_or(1) as usize,
        batch_records: env("TESSERA_BENCH_BATCH").map(|v| parse_size(&v)).transpose()?.map(|v| v as usize),
        batch_bytes: env("TESSERA_BENCH_BATCH_BYTES").map(|v| parse_size(&v)).transpose()?,
        prealloc_step: env("TESSERA_BENCH_PREALLOC_STEP").map(|v| parse_size(&v)).transpose()?,
        block_log2: env("TESSERA_BENCH_BLOCK_LOG2").map(|v| parse_size(&v)).transpose()?.map(|v| v as u8),
        io_memory: env("TESSERA_BENCH_IO_MEMORY").map(|v| parse_size(&v)).transpose()?.unwrap_or(0) as usize,
        range_len: env("TESSERA_BENCH_RANGE_LEN").map(|v| parse_size(&v)).transpose()?.unwrap_or(64 << 10),
        verify_every: env("TESSERA_BENCH_VERIFY_EVERY").map(|v| parse_size(&v)).transpose()?.unwrap_or(8),
        allow_tmpfs: false,
        drive: env("TESSERA_BENCH_DRIVE").map(|v| v.parse()).transpose()?.unwrap_or(Drive::Paced),
        preempt: env("TESSERA_BENCH_PREEMPT_US").map(|v| parse_size(&v)).transpose()?.map(Duration::from_micros),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            // cargo bench passes --bench to harness = false targets.
            "--bench" => {}
            "--dir" => a.dir = PathBuf::from(val()?),
            "--total" => a.total = parse_size(&val()?)?,
            "--record" => a.record = parse_size(&val()?)? as usize,
            "--depth" => a.depth = parse_size(&val()?)? as usize,
            "--cores" => a.cores = parse_size(&val()?)? as usize,
            "--batch-records" => a.batch_records = Some(parse_size(&val()?)? as usize),
            "--batch-bytes" => a.batch_bytes = Some(parse_size(&val()?)?),
            "--prealloc-step" => a.prealloc_step = Some(parse_size(&val()?)?),
            "--block-log2" => a.block_log2 = Some(parse_size(&val()?)? as u8),
            "--io-memory" => a.io_memory = parse_size(&val()?)? as usize,
            "--range-len" => a.range_len = parse_size(&val()?)?,
            "--verify-every" => a.verify_every = parse_size(&val()?)?,
            "--allow-tmpfs" => a.allow_tmpfs = true,
            "--drive" => a.drive = val()?.parse()?,
            "--preempt-us" => a.preempt = Some(Duration::from_micros(parse_size(&val()?)?)),
            "-h" | "--help" => {
                println!(
                    "{}",
                    include_str!("engine_io.rs")
                        .lines()
                        .take_while(|l| l.starts_with("//!"))
                        .map(|l| l.trim_start_matches("//!").trim_start_matches(' '))
                        .collect::<Vec<_>>()
                        .join("\n")
                );
                std::process::exit(0);
            }
            // Ignore anything else cargo or criterion-style callers may pass.
            other if other.starts_with("--") => eprintln!("engine_io: ignoring unknown flag {other}"),
            _ => {}
        }
    }
    if a.record == 0 || a.depth == 0 || a.cores == 0 || a.total < a.record as u64 {
        return Err("record, depth, cores must be > 0 and total >= record".into());
    }
    if a.verify_every == 0 {
        a.verify_every = 1;
    }
    if a.io_memory == 0 {
        // Room for every record buffer in flight twice over (write records are the
        // piece + 4 KiB header page; reads add a page of alignment), so none falls
        // back to the general allocator (an mmap + page faults + unregistered IO per
        // buffer). Measured here (1 MiB pieces, depth 16, engine defaults otherwise):
        // 8 MiB gives ~0.55-0.7 GB/s durable writes, 34 MiB (this rule) ~0.9-1.0 GB/s.
        let per = a.record + 3 * PAGE;
        a.io_memory = (2 * a.depth * per).next_multiple_of(1 << 20).max(8 << 20);
    }
    Ok(a)
}

/// Refuses tmpfs / ramfs: the point is to measure a disk.
fn check_fs(dir: &Path, allow_tmpfs: bool) -> Result<String, String> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: zeroed statfs is a valid out-parameter; `c` is a valid C string.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(format!("statfs {}: {}", dir.display(), std::io::Error::last_os_error()));
    }
    let kind = match st.f_type as i64 {
        0x0102_1994 => "tmpfs",
        0x8584_58f6 => "ramfs",
        0xEF53 => "ext2/3/4",
        0x5846_5342 => "xfs",
        0x9123_683E => "btrfs",
        0x794c_7630 => "overlayfs",
        _ => "other",
    };
    if (kind == "tmpfs" || kind == "ramfs") && !allow_tmpfs {
        return Err(format!("{} is on {kind}: not a disk (pass --allow-tmpfs to run anyway)", dir.display()));
    }
    Ok(kind.to_string())
}

fn key(core: usize, i: u64) -> ShardKey {
    ShardKey { partition: core as u32, object: (0xbe7c_u128 << 64) | i as u128, piece: (i % 6) as u32 }
}

/// Pseudo-random base content (so nothing along the way can compress or dedupe it).
fn base_pattern(len: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

fn stamp_at(i: u64, page: u64) -> [u8; 16] {
    let mut s = [0u8; 16];
    s[..8].copy_from_slice(&(STAMP_MAGIC ^ i).to_le_bytes());
    s[8..].copy_from_slice(&page.to_le_bytes());
    s
}

/// Stamps record `i` into `buf` (a copy of the base pattern).
fn stamp(buf: &mut [u8], i: u64) {
    for (p, off) in (0..buf.len()).step_by(PAGE).enumerate() {
        let s = stamp_at(i, p as u64);
        let n = s.len().min(buf.len() - off);
        buf[off..off + n].copy_from_slice(&s[..n]);
    }
    if buf.len() >= 8 {
        let n = buf.len();
        buf[n - 8..].copy_from_slice(&(i ^ STAMP_MAGIC).to_be_bytes());
    }
}

/// Checks the stamps of record `i` (and, if `full`, every byte) in `data`, which is
/// `data.len()` bytes from offset `off` of the payload.
fn verify(data: &[u8], base: &[u8], i: u64, off: usize, full: bool) -> Result<(), String> {
    let len = base.len();
    if full {
        let mut whole = base.to_vec();
        stamp(&mut whole, i);
        let expect = &whole[off..off + data.len()];
        if data != expect {
            let at = data.iter().zip(expect).position(|(a, b)| a != b).unwrap_or(0);
            return Err(format!("record {i}: byte {} of the payload differs", off + at));
        }
        return Ok(());
    }
    // Only the stamp positions. The end stamp overwrites the last 8 bytes.
    let end_stamp_at = len.saturating_sub(8);
    for p in off / PAGE..(off + data.len()).div_ceil(PAGE) {
        for (j, b) in stamp_at(i, p as u64).iter().enumerate() {
            let at = p * PAGE + j;
            if at >= off && at < off + data.len() && at < end_stamp_at && data[at - off] != *b {
                return Err(format!("record {i}: stamp mismatch at payload byte {at}"));
            }
        }
    }
    if off + data.len() == len && len >= 8 && data[data.len() - 8..] != (i ^ STAMP_MAGIC).to_be_bytes() {
        return Err(format!("record {i}: end stamp mismatch"));
    }
    Ok(())
}

/// CPU time (user + system) of the calling thread.
fn thread_cpu() -> Duration {
    // SAFETY: zeroed rusage is a valid out-parameter.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

#[derive(Debug, Default, Clone)]
struct PhaseResult {
    elapsed: Duration,
    cpu: Duration,
    bytes: u64,
    ops: u64,
    batches: u64,
    syncs: u64,
}

#[derive(Debug, Default, Clone)]
struct CoreResult {
    write: PhaseResult,
    read: PhaseResult,
    range: PhaseResult,
}

/// How the requests in flight are driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drive {
    /// One glommio task per request, at most `depth` alive (like a server: a task
    /// per request), each started as soon as a slot frees. glommio hands queued IO
    /// to the kernel only once its run queue is empty (its preempt timer did not
    /// interrupt these CPU-bound stretches here), so the committer's next writes
    /// wait until every new request has built its record.
    Tasks,
    /// One task polling `depth` futures (`buffer_unordered`): every request that
    /// becomes free is rebuilt in the same poll, so the disk idles meanwhile.
    Stream,
    /// Like `Tasks`, but each request task first waits for a 1 us timer, i.e. for
    /// the executor to go through its reactor (as a request arriving from a socket
    /// would): IO the committer queued is then submitted to the kernel before the
    /// new requests build their records.
    Paced,
}

impl std::str::FromStr for Drive {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "tasks" => Ok(Drive::Tasks),
            "stream" => Ok(Drive::Stream),
            "paced" => Ok(Drive::Paced),
            o => Err(format!("drive {o:?}: tasks, stream or paced")),
        }
    }
}

/// Runs `op(i)` for every `i` of `idxs` in order of issue, `depth` at a time.
async fn run_window<F, Fut>(idxs: &[u64], depth: usize, drive: Drive, op: F) -> Result<(), String>
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>> + 'static,
{
    match drive {
        Drive::Stream => stream::iter(idxs.iter().copied()).map(op).buffer_unordered(depth).try_collect::<()>().await,
        Drive::Tasks | Drive::Paced => {
            let sem = Rc::new(glommio::sync::Semaphore::new(depth as u64));
            let failed: Rc<RefCell<Option<String>>> = Rc::new(RefCell::new(None));
            for &i in idxs {
                let permit = sem.acquire_static_permit(1).await.map_err(|e| e.to_string())?;
                if let Some(e) = failed.borrow_mut().take() {
                    return Err(e);
                }
                let (fut, failed) = (op(i), failed.clone());
                glommio::spawn_local(async move {
                    if drive == Drive::Paced {
                        glommio::timer::sleep(Duration::from_micros(1)).await;
                    }
                    if let Err(e) = fut.await {
                        failed.borrow_mut().get_or_insert(e);
                    }
                    drop(permit);
                })
                .detach();
            }
            // Every permit back = every request done.
            sem.acquire(depth as u64).await.map_err(|e| e.to_string())?;
            let r = failed.borrow_mut().take();
            r.map_or(Ok(()), Err)
        }
    }
}

async fn run_core(core: usize, a: Args, barrier: Arc<Barrier>) -> Result<CoreResult, String> {
    let dir = a.dir.join(format!("engine-io-{}-core{core}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let r = run_core_in(core, &a, &dir, &barrier).await;
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        eprintln!("engine_io: cleanup of {} failed: {e}", dir.display());
    }
    r
}

async fn run_core_in(core: usize, a: &Args, dir: &Path, barrier: &Barrier) -> Result<CoreResult, String> {
    let mut cfg = StoreConfig::default();
    if let Some(b) = a.batch_records {
        cfg.batch_records_max = b;
    }
    if let Some(b) = a.batch_bytes {
        cfg.batch_bytes_max = b;
    }
    if let Some(b) = a.prealloc_step {
        cfg.preallocate_step_bytes = b;
    }
    if let Some(b) = a.block_log2 {
        cfg.block_log2 = b;
    }
    // Let the submit queue hold every request in flight.
    cfg.submit_queue_max = cfg.submit_queue_max.max(a.depth * 2);
    let se = |e: StoreError| e.to_string();
    let (store, committer) = ShardStore::open(GlommioIo, dir, cfg).await.map_err(se)?;
    glommio::spawn_local(committer).detach();
    let store = Rc::new(store);

    let n_total = a.total / a.record as u64;
    let mine: Vec<u64> = (0..n_total).filter(|i| (*i % a.cores as u64) as usize == core).collect();
    let base = Rc::new(base_pattern(a.record));
    let mut res = CoreResult::default();

    // ---- write: every put acknowledged (durable) ----
    let pool: Rc<RefCell<Vec<Vec<u8>>>> = Rc::new(RefCell::new((0..a.depth).map(|_| (*base).clone()).collect()));
    barrier.wait();
    let (t0, c0, s0) = (Instant::now(), thread_cpu(), store.stats());
    run_window(&mine, a.depth, a.drive, |i| {
        let (store, pool) = (store.clone(), pool.clone());
        async move {
            let mut buf = pool.borrow_mut().pop().expect("one buffer per request in flight");
            stamp(&mut buf, i);
            let r = store.put(key(core, i), &buf).await;
            pool.borrow_mut().push(buf);
            r.map(|_| ()).map_err(|e| format!("put {i}: {e}"))
        }
    })
    .await?;
    let s1 = store.stats();
    res.write = PhaseResult {
        elapsed: t0.elapsed(),
        cpu: thread_cpu() - c0,
        bytes: mine.len() as u64 * a.record as u64,
        ops: mine.len() as u64,
        batches: s1.batches - s0.batches,
        syncs: s1.syncs - s0.syncs,
    };
    drop(pool);

    // ---- read: whole pieces, issued in write order, `depth` in flight ----
    barrier.wait();
    let (t0, c0) = (Instant::now(), thread_cpu());
    let every = a.verify_every;
    run_window(&mine, a.depth, a.drive, |i| {
        let (store, base) = (store.clone(), base.clone());
        async move {
            let data = store.get(key(core, i)).await.map_err(|e| format!("get {i}: {e}"))?;
            if data.len() != base.len() {
                return Err(format!("get {i}: {} bytes, expected {}", data.len(), base.len()));
            }
            verify(&data, &base, i, 0, i % every == 0)
        }
    })
    .await?;
    res.read = PhaseResult {
        elapsed: t0.elapsed(),
        cpu: thread_cpu() - c0,
        bytes: mine.len() as u64 * a.record as u64,
        ops: mine.len() as u64,
        ..Default::default()
    };

    // ---- ranged read: one `range_len` slice per piece, at a varying aligned offset ----
    barrier.wait();
    if a.range_len > 0 && a.range_len <= a.record as u64 {
        let slots = (a.record as u64 / a.range_len).max(1);
        let (t0, c0) = (Instant::now(), thread_cpu());
        let rl = a.range_len;
        run_window(&mine, a.depth, a.drive, |i| {
            let (store, base) = (store.clone(), base.clone());
            async move {
                // A multiplicative hash spreads the slot over the piece.
                let off = (i.wrapping_mul(0x9E37_79B9) % slots) * rl;
                let data = store.get_range(key(core, i), off, rl).await.map_err(|e| format!("get_range {i}: {e}"))?;
                if data.len() as u64 != rl {
                    return Err(format!("get_range {i}: {} bytes, expected {rl}", data.len()));
                }
                verify(&data, &base, i, off as usize, i % every == 0)
            }
        })
        .await?;
        res.range = PhaseResult {
            elapsed: t0.elapsed(),
            cpu: thread_cpu() - c0,
            bytes: mine.len() as u64 * rl,
            ops: mine.len() as u64,
            ..Default::default()
        };
    }

    let store = Rc::try_unwrap(store).map_err(|_| "store still shared at close".to_string())?;
    store.close().await.map_err(se)?;
    Ok(res)
}

fn report(phase: &str, rs: &[PhaseResult]) {
    if rs.iter().all(|r| r.ops == 0) {
        return;
    }
    // Cores start together (barrier); the phase lasts until the slowest ends.
    let elapsed = rs.iter().map(|r| r.elapsed).max().unwrap_or_default().as_secs_f64();
    let bytes: u64 = rs.iter().map(|r| r.bytes).sum();
    let ops: u64 = rs.iter().map(|r| r.ops).sum();
    let cpu: f64 = rs.iter().map(|r| r.cpu.as_secs_f64()).sum();
    let mbps = bytes as f64 / elapsed / 1e6;
    let mut line = format!(
        "engine {phase}_MBps={mbps:.1} {phase}_secs={elapsed:.3} {phase}_ops={ops} {phase}_iops={:.0} {phase}_cpu_util={:.2}",
        ops as f64 / elapsed,
        cpu / elapsed / rs.len() as f64
    );
    let batches: u64 = rs.iter().map(|r| r.batches).sum();
    if batches > 0 {
        let syncs: u64 = rs.iter().map(|r| r.syncs).sum();
        line += &format!(" batches={batches} syncs={syncs} records_per_batch={:.1}", ops as f64 / batches as f64);
    }
    println!("{line}");
}

fn main() {
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("engine_io: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = std::fs::create_dir_all(&a.dir) {
        eprintln!("engine_io: create {}: {e}", a.dir.display());
        std::process::exit(2);
    }
    let fs = match check_fs(&a.dir, a.allow_tmpfs) {
        Ok(fs) => fs,
        Err(e) => {
            eprintln!("engine_io: {e}");
            std::process::exit(2);
        }
    };
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!(
        "engine config dir={} fs={fs} total_bytes={} record_bytes={} depth={} cores={} batch_records_max={} batch_bytes_max={} preallocate_step_bytes={} block_log2={} io_memory={} drive={:?} preempt_us={}",
        a.dir.display(),
        a.total / a.record as u64 * a.record as u64,
        a.record,
        a.depth,
        a.cores,
        a.batch_records.unwrap_or(StoreConfig::default().batch_records_max),
        a.batch_bytes.unwrap_or(StoreConfig::default().batch_bytes_max),
        a.prealloc_step.unwrap_or(StoreConfig::default().preallocate_step_bytes),
        a.block_log2.unwrap_or(StoreConfig::default().block_log2),
        a.io_memory,
        a.drive,
        a.preempt.map_or("default".to_string(), |p| p.as_micros().to_string())
    );
    let barrier = Arc::new(Barrier::new(a.cores));
    let results = Arc::new(Mutex::new(Vec::new()));
    let mut handles = Vec::new();
    for core in 0..a.cores {
        let (a, barrier, results) = (a.clone(), barrier.clone(), results.clone());
        let mut b = LocalExecutorBuilder::new(Placement::Fixed(core % cpus))
            .name(&format!("engine-io-{core}"))
            .io_memory(a.io_memory);
        if let Some(p) = a.preempt {
            b = b.preempt_timer(p);
        }
        let h = b
            .spawn(move || async move {
                let r = run_core(core, a, barrier).await;
                if let Err(e) = &r {
                    // The other cores may wait at a barrier for this one: stop here.
                    eprintln!("engine_io: core {core}: {e}");
                    std::process::exit(1);
                }
                results.lock().expect("results lock").push((core, r));
            })
            .expect("spawn executor");
        handles.push(h);
    }
    for h in handles {
        h.join().expect("executor thread");
    }
    let mut results = std::mem::take(&mut *results.lock().expect("results lock"));
    results.sort_by_key(|(c, _)| *c);
    let mut ok = Vec::new();
    for (core, r) in results {
        match r {
            Ok(r) => ok.push(r),
            Err(e) => {
                eprintln!("engine_io: core {core}: {e}");
                std::process::exit(1);
            }
        }
    }
    report("write", &ok.iter().map(|r| r.write.clone()).collect::<Vec<_>>());
    report("read", &ok.iter().map(|r| r.read.clone()).collect::<Vec<_>>());
    if a.range_len > 0 {
        let rs: Vec<_> = ok.iter().map(|r| r.range.clone()).collect();
        report(&format!("range{}k_read", a.range_len >> 10), &rs);
    }
}
