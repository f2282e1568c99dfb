//! `tessera`: one binary for every role. Today it runs the embedded S3 server;
//! cluster roles and the key-value client join it in later milestones (README.md).
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(name = "tessera", version, about = "Tessera: S3-compatible, erasure-coded object store for media")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Embedded S3 server: gateway and storage engine on local drive directories, no other service.
    Server(ServerArgs),
}

#[derive(Parser)]
struct ServerArgs {
    /// Drive directories (one per disk). Default: <data>/d0 .. <data>/d{drives-1}.
    drives: Vec<PathBuf>,
    /// Data directory: holds the drives when none are given, and the credentials file.
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
    /// S3 listen address.
    #[arg(long, default_value = "127.0.0.1:9000")]
    address: std::net::SocketAddr,
    /// Objects up to this many bytes are replicated inline (m + 1 copies) instead of
    /// erasure coded.
    #[arg(long, default_value_t = 128 << 10)]
    inline_bytes_max: usize,
    /// Read cache in MiB for the whole process, split evenly between the cores (each
    /// caches the objects it owns); 0 turns it off. Default: a quarter of the
    /// machine's memory.
    #[arg(long)]
    cache_mib: Option<u64>,
    /// Domain for virtual-hosted-style requests (`bucket.<domain>`); path style always works.
    #[arg(long)]
    vhost_domain: Option<String>,
    /// Cores that accept S3 connections (SO_REUSEPORT). Default: every core (more small
    /// requests per second on 2 cores, see README); 1 gives a dedicated gateway core.
    #[arg(long)]
    gateway_cores: Option<usize>,
}

impl From<ServerArgs> for tessera_gateway::server::ServerOptions {
    fn from(a: ServerArgs) -> Self {
        tessera_gateway::server::ServerOptions {
            drives: a.drives,
            data: a.data,
            drive_count: a.drive_count,
            cores: a.cores,
            pin: !a.no_pin,
            io_memory_bytes: a.io_memory,
            segment_mib: a.segment_mib,
            checkpoint_secs: a.checkpoint_secs,
            address: a.address,
            inline_bytes_max: a.inline_bytes_max,
            cache_bytes: a.cache_mib.map(|m| m << 20),
            vhost_domain: a.vhost_domain,
            gateway_cores: a.gateway_cores,
        }
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("TESSERA_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal: cheaper per access-log line,
        // and log files stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
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
    tessera_gateway::server::run(args.into())
}
