//! `tessera`: one binary for every role: the embedded S3 server, the cluster's
//! topology commands, storage node and S3 gateway; the key-value client joins it
//! in a later milestone (README.md).
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
    /// Cluster topology in etcd: init, add-node, status.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Cluster storage node: serves shard pieces of its drives to gateways, alive in
    /// etcd under a lease. The cluster secret comes from TESSERA_CLUSTER_SECRET or
    /// --secret-file.
    Node(NodeArgs),
    /// Cluster S3 gateway: stateless, any number of them; objects on the cluster's
    /// nodes, commits through Kafka, buckets in etcd. S3 keys come from
    /// TESSERA_ACCESS_KEY / TESSERA_SECRET_KEY, the cluster secret from
    /// TESSERA_CLUSTER_SECRET or --secret-file.
    Gateway(GatewayArgs),
}

#[derive(Parser)]
struct GatewayArgs {
    #[command(flatten)]
    etcd: EtcdArgs,
    /// Kafka bootstrap brokers, comma-separated HOST:PORT: the commit log.
    #[arg(long, env = "TESSERA_KAFKA")]
    kafka: String,
    /// S3 listen address.
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: std::net::SocketAddr,
    /// File holding the cluster secret (instead of TESSERA_CLUSTER_SECRET).
    #[arg(long)]
    secret_file: Option<PathBuf>,
    /// Executors (one per core). Default: every online CPU.
    #[arg(long)]
    cores: Option<usize>,
    /// Do not pin executors to CPUs.
    #[arg(long)]
    no_pin: bool,
    /// DMA memory per core that glommio registers with io_uring (bytes).
    #[arg(long, default_value_t = 4 << 20)]
    io_memory: usize,
    /// Domain for virtual-hosted-style requests (`bucket.<domain>`); path style always works.
    #[arg(long)]
    vhost_domain: Option<String>,
}

#[derive(Parser)]
struct NodeArgs {
    #[command(flatten)]
    etcd: EtcdArgs,
    /// Kafka bootstrap brokers, comma-separated HOST:PORT: the commit log.
    #[arg(long, env = "TESSERA_KAFKA")]
    kafka: String,
    /// Node id, unique in the cluster; a new id joins the cluster as a member.
    #[arg(long)]
    id: String,
    /// Data directory: the node's identity file and its drives (<data>/d0 ..).
    #[arg(long)]
    data: PathBuf,
    /// Drive directories under --data (fixed for a data directory).
    #[arg(long, default_value_t = 1)]
    drives: usize,
    /// Address the piece protocol listens on.
    #[arg(long)]
    listen: std::net::SocketAddr,
    /// Address gateways reach this node at (default: --listen).
    #[arg(long)]
    advertise: Option<std::net::SocketAddr>,
    /// Failure zone (rack, host, room): erasure sets spread over zones.
    #[arg(long, default_value = "default")]
    zone: String,
    /// File holding the cluster secret (instead of TESSERA_CLUSTER_SECRET).
    #[arg(long)]
    secret_file: Option<PathBuf>,
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
    /// Liveness lease in seconds: a crashed node is seen as down after this.
    #[arg(long, default_value_t = 10)]
    lease_secs: u64,
    /// Seconds a piece no commit record names is kept before it is collected
    /// (covers writes in flight and reads of replaced versions).
    #[arg(long, default_value_t = 86_400)]
    gc_grace_secs: u64,
    /// Seconds between passes of the orphaned-piece collector.
    #[arg(long, default_value_t = 60)]
    gc_every_secs: u64,
    /// MiB per second this node stores at most for repairs and placement moves
    /// (split between its cores; 0: no limit), so they leave the disks and the
    /// network to clients.
    #[arg(long, default_value_t = 64)]
    repair_mib_per_sec: u64,
}

#[derive(Parser)]
struct EtcdArgs {
    /// etcd endpoints, comma-separated (e.g. http://127.0.0.1:2379).
    #[arg(long, env = "TESSERA_ETCD")]
    etcd: String,
    /// Cluster name: several clusters can share one etcd.
    #[arg(long, default_value = "default")]
    cluster: String,
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Creates the cluster: its erasure code and partition count, fixed from now on.
    Init {
        #[command(flatten)]
        etcd: EtcdArgs,
        /// Erasure code, k+m (data + parity slots per set).
        #[arg(long, default_value = "6+3")]
        code: String,
        /// Partitions (each is one erasure set).
        #[arg(long, default_value_t = 256)]
        partitions: u32,
    },
    /// Adds a storage node: the k+m-th member places the cluster; a later one begins
    /// a move to the placement recomputed to take it in, moving the least data.
    AddNode {
        #[command(flatten)]
        etcd: EtcdArgs,
        /// Node id (unique in the cluster).
        #[arg(long)]
        id: String,
        /// Address the node serves shard pieces on (IP:PORT).
        #[arg(long)]
        addr: String,
        /// Failure zone (rack, host, room): sets spread over zones.
        #[arg(long, default_value = "default")]
        zone: String,
        /// Drives of the node (its share of the slots is in proportion).
        #[arg(long, default_value_t = 1)]
        drives: u32,
    },
    /// Drains a storage node: a move gives its slots to the others (copied from it
    /// while it runs, rebuilt from the other slots when it is down); once the move
    /// has ended it is no member, and its id cannot join again.
    RemoveNode {
        #[command(flatten)]
        etcd: EtcdArgs,
        /// Node id.
        #[arg(long)]
        id: String,
    },
    /// Members, liveness, placement version, degraded and unavailable partitions.
    Status {
        #[command(flatten)]
        etcd: EtcdArgs,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

/// `k+m`, e.g. `6+3`.
fn parse_code(s: &str) -> Result<(u32, u32), String> {
    let (k, m) = s.split_once('+').ok_or_else(|| format!("--code {s:?}: expected k+m, e.g. 6+3"))?;
    let k: u32 = k.trim().parse().map_err(|_| format!("--code {s:?}: k is not a number"))?;
    let m: u32 = m.trim().parse().map_err(|_| format!("--code {s:?}: m is not a number"))?;
    Ok((k, m))
}

fn cluster(cmd: ClusterCommand) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the control runtime: {e}"))?;
    rt.block_on(async move {
        use tessera_gateway::cluster::{render_status, Cluster, Member};
        match cmd {
            ClusterCommand::Init { etcd, code, partitions } => {
                let (k, m) = parse_code(&code)?;
                let mut c = Cluster::connect(&etcd.etcd, &etcd.cluster).await.map_err(|e| e.to_string())?;
                c.init(k, m, partitions).await.map_err(|e| e.to_string())?;
                println!("cluster {:?} initialised: RS {k}+{m}, {partitions} partitions", etcd.cluster);
                Ok(())
            }
            ClusterCommand::AddNode { etcd, id, addr, zone, drives } => {
                let mut c = Cluster::connect(&etcd.etcd, &etcd.cluster).await.map_err(|e| e.to_string())?;
                let placed = c
                    .add_node(Member { id: id.clone(), addr, zone, drives, leaving: false })
                    .await
                    .map_err(|e| e.to_string())?;
                println!("node {id:?} added; {placed}");
                Ok(())
            }
            ClusterCommand::RemoveNode { etcd, id } => {
                let mut c = Cluster::connect(&etcd.etcd, &etcd.cluster).await.map_err(|e| e.to_string())?;
                let change = c.remove_node(&id).await.map_err(|e| e.to_string())?;
                println!("node {id:?} leaving; {change}");
                Ok(())
            }
            ClusterCommand::Status { etcd, json } => {
                let mut c = Cluster::connect(&etcd.etcd, &etcd.cluster).await.map_err(|e| e.to_string())?;
                let s = c.status().await.map_err(|e| e.to_string())?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&s).map_err(|e| e.to_string())?);
                } else {
                    print!("{}", render_status(&s));
                }
                Ok(())
            }
        }
    })
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
    /// DMA memory per core that glommio registers with io_uring (bytes), pinned
    /// when registered. An upload keeps its group filling and its flushes in it
    /// (6 MiB each at 4+2); what does not fit is allocated and freed per buffer,
    /// which slowed 64 MiB PUTs at 8 connections on 2 cores: 32 MiB 1139-1156 MB/s,
    /// 64 MiB 1182, 128 MiB 1257-1406, 256 MiB 1406-1437 (interleaved rounds).
    #[arg(long, default_value_t = 256 << 20)]
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
        Command::Cluster(cmd) => cluster(cmd),
        Command::Node(a) => tessera_gateway::node::run(tessera_gateway::node::NodeOptions {
            etcd: a.etcd.etcd,
            kafka: a.kafka,
            cluster: a.etcd.cluster,
            id: a.id,
            data: a.data,
            drive_count: a.drives,
            listen: a.listen,
            advertise: a.advertise,
            zone: a.zone,
            secret_file: a.secret_file,
            cores: a.cores,
            pin: !a.no_pin,
            io_memory_bytes: a.io_memory,
            segment_mib: a.segment_mib,
            lease_secs: a.lease_secs,
            repair_bytes_per_sec: a.repair_mib_per_sec << 20,
            gc: tessera_gateway::gc::GcConfig {
                every: std::time::Duration::from_secs(a.gc_every_secs.max(1)),
                grace: std::time::Duration::from_secs(a.gc_grace_secs),
            },
        }),
        Command::Gateway(a) => {
            tessera_gateway::cluster_gateway::run(tessera_gateway::cluster_gateway::GatewayOptions {
                etcd: a.etcd.etcd,
                kafka: a.kafka,
                cluster: a.etcd.cluster,
                listen: a.listen,
                secret_file: a.secret_file,
                cores: a.cores,
                pin: !a.no_pin,
                io_memory_bytes: a.io_memory,
                vhost_domain: a.vhost_domain,
            })
        }
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
