//! `tessera`: one binary for every role. Today it runs the embedded server's storage
//! engine; the S3 gateway, cluster roles and the key-value client join it in later
//! milestones (see README.md).
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tessera_engine::runtime::{Request, Response, Runtime, RuntimeConfig};
use tessera_engine::StoreConfig;

#[derive(Parser)]
#[command(name = "tessera", version, about = "Tessera: S3-compatible, erasure-coded object store for media")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Embedded server: storage engine on local drive directories, no other service.
    Server(ServerArgs),
}

#[derive(Parser)]
struct ServerArgs {
    /// Drive directories (one per disk). Default: <data>/d0 .. <data>/d{drives-1}.
    drives: Vec<PathBuf>,
    /// Data directory used when no drives are given.
    #[arg(long, default_value = "./tessera-data")]
    data: PathBuf,
    /// Number of drive directories created under --data when no drives are given.
    #[arg(long, default_value_t = 6)]
    drive_count: usize,
    /// Executors (one per core). Default: every online CPU. Fixed for a data directory.
    #[arg(long)]
    cores: Option<usize>,
    /// Do not pin executors to CPUs.
    #[arg(long)]
    no_pin: bool,
    /// DMA memory per core that glommio registers with io_uring (bytes).
    #[arg(long, default_value_t = 32 << 20)]
    io_memory: usize,
    /// Segment file size in MiB (preallocated).
    #[arg(long, default_value_t = 256)]
    segment_mib: u64,
    /// Seconds between index checkpoints and compaction passes.
    #[arg(long, default_value_t = 60)]
    checkpoint_secs: u64,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("TESSERA_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let r = match cli.command {
        Command::Server(args) => server(args),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tessera: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn server(args: ServerArgs) -> Result<(), String> {
    const DRIVES_DEFAULT_MAX: usize = 64;
    let drives: Vec<PathBuf> = if args.drives.is_empty() {
        if args.drive_count == 0 || args.drive_count > DRIVES_DEFAULT_MAX {
            return Err(format!("--drive-count must be 1..={DRIVES_DEFAULT_MAX}"));
        }
        (0..args.drive_count).map(|i| args.data.join(format!("d{i}"))).collect()
    } else {
        args.drives.clone()
    };
    for d in &drives {
        if d.exists() && !d.is_dir() {
            return Err(format!("drive {} exists and is not a directory", d.display()));
        }
        std::fs::create_dir_all(d).map_err(|e| format!("cannot create drive directory {}: {e}", d.display()))?;
    }
    if args.segment_mib == 0 || args.segment_mib > 4096 {
        return Err("--segment-mib must be 1..=4096".into());
    }
    if args.checkpoint_secs == 0 {
        return Err("--checkpoint-secs must be positive".into());
    }
    let mut cfg = RuntimeConfig {
        drives: drives.clone(),
        pin: !args.no_pin,
        io_memory_bytes: args.io_memory,
        store: StoreConfig { segment_bytes: args.segment_mib << 20, ..StoreConfig::default() },
        ..RuntimeConfig::default()
    };
    if let Some(c) = args.cores {
        cfg.cores = c;
    }
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
    let rep = rt.report();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("tessera {} embedded server", env!("CARGO_PKG_VERSION"));
    println!(
        "  cores     {} glommio executors ({} CPUs online, {})",
        rep.cores,
        cpus,
        if rep.pinned { "pinned" } else { "unpinned" }
    );
    println!(
        "  io_uring  O_DIRECT; buffer registration: {} ({} B per core)",
        rep.buffer_registration, rep.io_memory_bytes
    );
    println!("  drives    {}", rep.drives.len());
    for (i, d) in rep.drives.iter().enumerate() {
        println!("    d{i}  {}", d.display());
    }
    println!(
        "  format    v{}, segments {} MiB, crc32c per {} KiB block",
        tessera_engine::format::FORMAT_VERSION,
        cfg.store.segment_bytes >> 20,
        (1u64 << cfg.store.block_log2) >> 10
    );
    let codecs = tessera_engine::erasure::CodecKind::available();
    println!("  erasure   codecs available: {codecs:?}");
    let keys: usize = rep.recovered.iter().map(|(_, _, r)| r.keys).sum();
    let replayed: u64 = rep.recovered.iter().map(|(_, _, r)| r.records_replayed).sum();
    let torn: u64 = rep.recovered.iter().map(|(_, _, r)| r.torn_tails).sum();
    let from_cp = rep.recovered.iter().filter(|(_, _, r)| r.from_checkpoint).count();
    println!(
        "  recovered {keys} shard pieces in {} stores ({from_cp} from checkpoints, {replayed} records replayed, {torn} torn tails dropped)",
        rep.recovered.len()
    );
    println!("  S3 API    not in this build yet: the S3 gateway is the next milestone (README.md)");
    println!("ready");

    let handle = rt.handle();
    loop {
        match stop_rx.recv_timeout(Duration::from_secs(args.checkpoint_secs)) {
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
