//! `tessera server`: the embedded deployment in one process. Start-up order:
//! deployment descriptor (geometry, codec, cores) → credentials → one executor per
//! core with its stores and object layer (recovery) → the bucket catalogue copied
//! from its owner (core 0) to every core → an S3 listener on every core
//! (SO_REUSEPORT, connections spread by count: `http::balance`) → "ready".
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tessera_engine::object::deployment::{self, default_geometry, Deployment, DriveStatus};
use tessera_engine::object::ObjectConfig;
use tessera_engine::runtime::{ObjectsConfig, Request, Response, Runtime, RuntimeConfig};
use tessera_engine::StoreConfig;

use crate::credentials::{self, Credentials, Source};

pub struct ServerOptions {
    pub drives: Vec<PathBuf>,
    pub data: PathBuf,
    pub drive_count: usize,
    pub cores: Option<usize>,
    pub pin: bool,
    pub io_memory_bytes: usize,
    pub segment_mib: u64,
    pub checkpoint_secs: u64,
    pub address: SocketAddr,
    pub inline_bytes_max: usize,
    /// Read cache for the whole process; `None`: a quarter of physical memory.
    pub cache_bytes: Option<u64>,
    pub vhost_domain: Option<String>,
    pub gateway_cores: Option<usize>,
}

/// What every core's gateway shares (read-only after start, plus the ready flag).
pub struct Shared {
    pub credentials: Credentials,
    /// The embedded deployment; `None` in a cluster gateway.
    pub deployment: Option<Deployment>,
    pub vhost_domain: Option<String>,
    pub ready: AtomicBool,
    pub address: SocketAddr,
}

const DRIVES_DEFAULT_MAX: usize = 64;
/// Partitions of a new deployment: enough to spread over many cores and drives,
/// few enough that start-up walks them quickly.
const PARTITIONS_DEFAULT: u32 = 256;
/// Bytes per data shard in a full stripe (a 4+2 stripe holds 1 MiB of data).
const CHUNK_BYTES_DEFAULT: u32 = 256 << 10;
/// Stripes per piece record: 1 MiB records per drive.
const GROUP_STRIPES_DEFAULT: u32 = 4;
/// Inline objects ride in metadata records, which are at most this large.
const INLINE_BYTES_MAX_LIMIT: usize = 1 << 20;
/// The read cache takes this fraction (1/n) of physical memory unless told.
const CACHE_MEMORY_DIVISOR: u64 = 4;

/// MemTotal from /proc/meminfo (1 GiB when it cannot be read).
fn physical_memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("MemTotal:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(1 << 30, |kib| kib << 10)
}

pub fn run(opts: ServerOptions) -> Result<(), String> {
    let drives: Vec<PathBuf> = if opts.drives.is_empty() {
        if opts.drive_count == 0 || opts.drive_count > DRIVES_DEFAULT_MAX {
            return Err(format!("--drive-count must be 1..={DRIVES_DEFAULT_MAX}"));
        }
        (0..opts.drive_count).map(|i| opts.data.join(format!("d{i}"))).collect()
    } else {
        opts.drives.clone()
    };
    if opts.segment_mib == 0 || opts.segment_mib > 4096 {
        return Err("--segment-mib must be 1..=4096".into());
    }
    if opts.checkpoint_secs == 0 {
        return Err("--checkpoint-secs must be positive".into());
    }
    if opts.inline_bytes_max > INLINE_BYTES_MAX_LIMIT {
        return Err(format!("--inline-bytes-max must be at most {INLINE_BYTES_MAX_LIMIT}"));
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    for d in &drives {
        if d.exists() && !d.is_dir() {
            return Err(format!("drive {} exists and is not a directory", d.display()));
        }
    }
    let (k, m) = default_geometry(drives.len()).map_err(|e| e.to_string())?;
    let (dep, status) = deployment::open_or_create(&drives, || {
        let mut rng = rand::thread_rng();
        Deployment {
            set_id: rng.gen(),
            drives: drives.len(),
            k,
            m,
            codec: tessera_engine::erasure::default_kind(),
            partitions: PARTITIONS_DEFAULT,
            hash_key: rng.gen(),
            chunk_bytes: CHUNK_BYTES_DEFAULT,
            group_stripes: GROUP_STRIPES_DEFAULT,
            cores: opts.cores.unwrap_or(cpus),
        }
    })
    .map_err(|e| e.to_string())?;
    if let Some(c) = opts.cores {
        if c != dep.cores {
            return Err(format!(
                "this data was laid out for {} cores (partitions map to cores); start with --cores {} or leave it out",
                dep.cores, dep.cores
            ));
        }
    }
    if !dep.codec.is_available() {
        return Err(format!("the deployment uses codec {}, which this build lacks", dep.codec));
    }
    let online: Vec<bool> = status.iter().map(|s| !matches!(s, DriveStatus::Offline(_))).collect();
    let (creds, source) = credentials::load(&opts.data)?;
    let cache_bytes = opts.cache_bytes.unwrap_or_else(|| physical_memory_bytes() / CACHE_MEMORY_DIVISOR);
    let cfg = RuntimeConfig {
        cores: dep.cores,
        drives: drives.clone(),
        pin: opts.pin,
        io_memory_bytes: opts.io_memory_bytes,
        store: StoreConfig { segment_bytes: opts.segment_mib << 20, ..StoreConfig::default() },
        objects: Some(ObjectsConfig {
            deployment: dep.clone(),
            config: ObjectConfig {
                inline_bytes_max: opts.inline_bytes_max,
                cache_bytes: cache_bytes / dep.cores as u64,
            },
            online: online.clone(),
        }),
        ..RuntimeConfig::default()
    };
    // Before anything starts: a SIGTERM right after "ready" must stop us cleanly.
    let (stop_tx, stop_rx) = flume::bounded::<i32>(1);
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            let _ = stop_tx.send(sig);
        }
    });
    let rt = Runtime::start(cfg.clone()).map_err(|e| e.to_string())?;
    let handle = rt.handle();
    // Every core answers bucket questions from its own copy of the catalogue.
    let buckets = handle.submit_blocking(0, |cx| async move { cx.objects().buckets() }).map_err(|e| e.to_string())?;
    for core in 1..handle.cores() {
        let b = buckets.clone();
        handle
            .submit_blocking(core, move |cx| async move {
                for (name, created) in b {
                    cx.objects().apply_bucket(&name, Some(created));
                }
            })
            .map_err(|e| e.to_string())?;
    }
    let shared = Arc::new(Shared {
        credentials: creds.clone(),
        deployment: Some(dep.clone()),
        vhost_domain: opts.vhost_domain.clone(),
        ready: AtomicBool::new(false),
        address: opts.address,
    });
    let gateway_cores = opts.gateway_cores.unwrap_or(dep.cores);
    if gateway_cores == 0 || gateway_cores > dep.cores {
        let _ = rt.stop();
        return Err(format!("--gateway-cores must be 1..={}", dep.cores));
    }
    let balances = crate::http::balance(gateway_cores, crate::http::CONNECTIONS_PER_CORE_MAX_DEFAULT);
    for (core, balance) in balances.into_iter().enumerate() {
        let shared = shared.clone();
        let r = handle
            .submit_blocking(core, move |cx| async move { crate::s3::service::start(cx, shared, None, balance) })
            .map_err(|e| e.to_string())?;
        if let Err(e) = r {
            let _ = rt.stop();
            return Err(format!("cannot listen on {}: {e}", opts.address));
        }
    }

    let rep = rt.report();
    println!("tessera {} embedded S3 server", env!("CARGO_PKG_VERSION"));
    println!(
        "  cores     {} glommio executors ({} CPUs online, {}), each owning partitions; {} of them serve S3 connections (SO_REUSEPORT, spread by count)",
        rep.cores,
        cpus,
        if rep.pinned { "pinned" } else { "unpinned" },
        gateway_cores
    );
    println!(
        "  io_uring  O_DIRECT; buffer registration: {} ({} B per core)",
        rep.buffer_registration, rep.io_memory_bytes
    );
    println!(
        "  erasure   RS {}+{} ({}), stripes of {} KiB data, objects <= {} B inline ({} copies)",
        dep.k,
        dep.m,
        dep.codec,
        (dep.k as u64 * dep.chunk_bytes as u64) >> 10,
        opts.inline_bytes_max,
        dep.m + 1
    );
    println!(
        "  cache     {} MiB per core for the objects it owns (--cache-mib {} for all cores)",
        (cache_bytes / dep.cores as u64) >> 20,
        cache_bytes >> 20
    );
    println!("  drives    {}", drives.len());
    for (i, d) in drives.iter().enumerate() {
        let st = match &status[i] {
            DriveStatus::Online => "online".to_string(),
            DriveStatus::Formatted => "online (formatted now)".to_string(),
            DriveStatus::Offline(why) => format!("OFFLINE: {why}"),
        };
        println!("    d{i}  {}  {st}", d.display());
    }
    let offline = online.iter().filter(|o| !**o).count();
    if offline > dep.m {
        println!("  WARNING   {offline} drives offline, more than m = {}: erasure-coded objects cannot be read", dep.m);
    }
    println!(
        "  format    v{}, segments {} MiB, crc32c per {} KiB block",
        tessera_engine::format::FORMAT_VERSION,
        cfg.store.segment_bytes >> 20,
        (1u64 << cfg.store.block_log2) >> 10
    );
    let keys: usize = rep.recovered.iter().map(|(_, _, r)| r.keys).sum();
    let replayed: u64 = rep.recovered.iter().map(|(_, _, r)| r.records_replayed).sum();
    let torn: u64 = rep.recovered.iter().map(|(_, _, r)| r.torn_tails).sum();
    let from_cp = rep.recovered.iter().filter(|(_, _, r)| r.from_checkpoint).count();
    println!(
        "  recovered {keys} shard pieces in {} stores ({from_cp} from checkpoints, {replayed} records replayed, {torn} torn tails dropped); {} buckets",
        rep.recovered.len(),
        buckets.len()
    );
    println!("  S3        http://{} (path style; region us-east-1)", opts.address);
    match source {
        Source::Environment => println!("  keys      from TESSERA_ACCESS_KEY / TESSERA_SECRET_KEY"),
        Source::File => println!(
            "  keys      access key {} (secret in {})",
            creds.access_key,
            opts.data.join(credentials::CREDENTIALS_FILE).display()
        ),
        Source::Generated => {
            println!("  keys      generated now, kept in {}:", opts.data.join(credentials::CREDENTIALS_FILE).display());
            println!("            AWS_ACCESS_KEY_ID={}", creds.access_key);
            println!("            AWS_SECRET_ACCESS_KEY={}", creds.secret_key);
        }
    }
    shared.ready.store(true, Ordering::Release);
    println!("ready");

    loop {
        match stop_rx.recv_timeout(Duration::from_secs(opts.checkpoint_secs)) {
            Ok(sig) => {
                println!("signal {sig}: stopping");
                break;
            }
            Err(flume::RecvTimeoutError::Timeout) => {
                for core in 0..handle.cores() {
                    if let Err(e) = handle.call_core_blocking(core, Request::Compact) {
                        tracing::error!(core, error = %e, "compaction failed");
                    }
                    match handle.call_core_blocking(core, Request::Checkpoint) {
                        Ok(Response::Done) => {}
                        Ok(other) => tracing::error!(core, ?other, "unexpected checkpoint reply"),
                        Err(e) => tracing::error!(core, error = %e, "checkpoint failed"),
                    }
                }
            }
            Err(flume::RecvTimeoutError::Disconnected) => break,
        }
    }
    shared.ready.store(false, Ordering::Release);
    // A final checkpoint makes the next start replay nothing.
    for core in 0..handle.cores() {
        if let Err(e) = handle.call_core_blocking(core, Request::Checkpoint) {
            tracing::error!(core, error = %e, "final checkpoint failed");
        }
    }
    drop(handle);
    rt.stop().map_err(|e| e.to_string())?;
    println!("stopped");
    Ok(())
}
