//! `tessera node`: a cluster storage node. It owns drive directories (one shard
//! store per drive and core, as in the embedded server) and serves shard pieces to
//! gateways over the piece protocol ([`crate::wire`]), on every core
//! (SO_REUSEPORT). A request runs on the core that owns the piece's partition.
//!
//! Start-up: the cluster's config from etcd (the cluster must be initialised) →
//! the node's identity file in its data directory (a directory never changes
//! cluster or node id) → stores recovered → listeners → membership (the node adds
//! itself when it is not a member yet, which places it) → liveness lease → "ready".
//! On SIGTERM/SIGINT the lease is revoked first, so gateways stop choosing the node
//! at once; a crash is seen when the lease runs out.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::future::race;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use glommio::sync::Semaphore;
use tessera_engine::runtime::{core_for_partition, CoreCx, Runtime, RuntimeConfig};
use tessera_engine::store::StoreError;
use tessera_engine::StoreConfig;

use tessera_engine::applied::{AppliedIndex, Apply};
use tessera_engine::object::meta::META_PIECE;
use tessera_engine::object::Keyspace;

use crate::cluster::{Cluster, ClusterConfig, Member};
use crate::kafka::{Consumer, KafkaError, KafkaLog};
use crate::wire::{self, ErrorCode, Header, Op, Reply, Request, HEADER_BYTES, NONCE_BYTES};

/// The file in a node's data directory naming its cluster and id.
pub const IDENTITY_FILE: &str = "tessera-node.json";
/// Connections one core serves at once; more wait in the kernel's backlog.
const CONNECTIONS_PER_CORE_MAX: u64 = 1024;
/// A connection must authenticate within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// An authenticated connection with no request for this long is closed (gateways
/// reconnect); also bounds how long a half-sent frame can hold a connection.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// A reply must drain to the socket within this.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// After a fatal protocol error: how long, and how much, the peer's remaining
/// input is read and dropped before the close.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES_MAX: usize = 1 << 20;
/// How often the control thread checks that its lease is still held.
const LEASE_CHECK_EVERY: Duration = Duration::from_millis(500);
/// The placement is followed every this many lease checks.
const TOPOLOGY_EVERY_TICKS: u64 = 2;

pub struct NodeOptions {
    pub etcd: String,
    /// Kafka bootstrap brokers (the commit log).
    pub kafka: String,
    pub cluster: String,
    pub id: String,
    pub data: PathBuf,
    pub drive_count: usize,
    pub listen: SocketAddr,
    /// Address gateways reach the node at; default `listen`.
    pub advertise: Option<SocketAddr>,
    pub zone: String,
    pub secret_file: Option<PathBuf>,
    pub cores: Option<usize>,
    pub pin: bool,
    pub io_memory_bytes: usize,
    pub segment_mib: u64,
    pub lease_secs: u64,
    /// Bytes per second stored at most for repairs and moves (0: no limit).
    pub repair_bytes_per_sec: u64,
    /// Collection of orphaned pieces.
    pub gc: crate::gc::GcConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Identity {
    cluster: String,
    id: String,
    /// The cluster's creation time: a re-initialised cluster of the same name is
    /// another cluster.
    cluster_created_ms: i64,
    drives: usize,
    cores: usize,
}

/// What every core's listener shares.
pub struct NodeShared {
    secret: Vec<u8>,
    drives: usize,
    partitions: u32,
}

/// Reads or writes the identity file; refuses a directory of another node or cluster.
fn check_identity(data: &Path, want: &Identity) -> Result<Identity, String> {
    let path = data.join(IDENTITY_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let have: Identity = serde_json::from_slice(&bytes)
                .map_err(|e| format!("{} is not a node identity file: {e}", path.display()))?;
            if have.cluster != want.cluster || have.cluster_created_ms != want.cluster_created_ms {
                return Err(format!(
                    "{} belongs to cluster {:?} (created at {} ms), not to {:?} (created at {} ms)",
                    data.display(),
                    have.cluster,
                    have.cluster_created_ms,
                    want.cluster,
                    want.cluster_created_ms
                ));
            }
            if have.id != want.id {
                return Err(format!("{} is node {:?}'s, not {:?}'s", data.display(), have.id, want.id));
            }
            if have.drives != want.drives {
                return Err(format!("{} has {} drives, not {}", data.display(), have.drives, want.drives));
            }
            Ok(have)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data).map_err(|e| format!("cannot create {}: {e}", data.display()))?;
            let tmp = data.join(format!("{IDENTITY_FILE}.tmp"));
            std::fs::write(&tmp, serde_json::to_vec_pretty(want).expect("serialises"))
                .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
                .and_then(|()| std::fs::rename(&tmp, &path))
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            Ok(want.clone())
        }
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

fn control_runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the control runtime: {e}"))
}

pub fn run(opts: NodeOptions) -> Result<(), String> {
    let secret = wire::load_secret(opts.secret_file.as_deref())?;
    if opts.drive_count == 0 || opts.drive_count > tessera_engine::runtime::DRIVES_MAX {
        return Err(format!("--drives must be 1..={}", tessera_engine::runtime::DRIVES_MAX));
    }
    if opts.lease_secs == 0 {
        return Err("--lease-secs must be positive".into());
    }
    let advertise = opts.advertise.unwrap_or(opts.listen);
    if advertise.ip().is_unspecified() {
        return Err(format!("gateways cannot reach {advertise}: pass --advertise IP:PORT"));
    }
    // The control thread: etcd-client lives on its tokio runtime, never on the cores.
    let control = control_runtime()?;
    let config: ClusterConfig = control.block_on(async {
        let mut c = Cluster::connect(&opts.etcd, &opts.cluster).await.map_err(|e| e.to_string())?;
        c.config().await.map_err(|e| e.to_string())
    })?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let want = Identity {
        cluster: opts.cluster.clone(),
        id: opts.id.clone(),
        cluster_created_ms: config.created_ms,
        drives: opts.drive_count,
        cores: opts.cores.unwrap_or(cpus),
    };
    let identity = check_identity(&opts.data, &want)?;
    if let Some(c) = opts.cores {
        if c != identity.cores {
            return Err(format!(
                "this node's data was laid out for {} cores; start with --cores {}",
                identity.cores, identity.cores
            ));
        }
    }
    let drives: Vec<PathBuf> = (0..opts.drive_count).map(|i| opts.data.join(format!("d{i}"))).collect();
    for d in &drives {
        std::fs::create_dir_all(d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
    }

    let (stop_tx, stop_rx) = flume::bounded::<i32>(1);
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            let _ = stop_tx.send(sig);
        }
    });

    let rt = Runtime::start(RuntimeConfig {
        cores: identity.cores,
        drives: drives.clone(),
        pin: opts.pin,
        io_memory_bytes: opts.io_memory_bytes,
        store: StoreConfig { segment_bytes: opts.segment_mib << 20, ..StoreConfig::default() },
        objects: None,
        ..RuntimeConfig::default()
    })
    .map_err(|e| e.to_string())?;
    let handle = rt.handle();
    let shared = Arc::new(NodeShared { secret: secret.clone(), drives: drives.len(), partitions: config.partitions });
    for core in 0..handle.cores() {
        let shared = shared.clone();
        let listen = opts.listen;
        let r = handle.submit_blocking(core, move |cx| async move { start_listener(cx, listen, shared) });
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = rt.stop();
                return Err(format!("cannot listen on {listen}: {e}"));
            }
            Err(e) => {
                let _ = rt.stop();
                return Err(e.to_string());
            }
        }
    }

    // The applied commit log of each core's partitions, from its stores.
    let hash_key = u128::from_str_radix(&config.hash_key, 16)
        .map_err(|_| format!("the cluster's hash key {:?} is not 32 hex digits", config.hash_key))?;
    let keyspace = Keyspace { hash_key, partitions: config.partitions };
    let (mut meta_records, mut applied_partitions) = (0, 0);
    for core in 0..handle.cores() {
        match handle.submit_blocking(core, move |cx| recover_core(cx, keyspace)) {
            Ok(Ok((records, parts))) => {
                meta_records += records;
                applied_partitions += parts;
            }
            Ok(Err(e)) => {
                let _ = rt.stop();
                return Err(e);
            }
            Err(e) => {
                let _ = rt.stop();
                return Err(e.to_string());
            }
        }
    }
    let topic = commit_topic(&opts.cluster);
    let log = match KafkaLog::start(&opts.kafka, &topic, config.partitions) {
        Ok(l) => l,
        Err(e) => {
            let _ = rt.stop();
            return Err(format!("commit log {topic:?} on {}: {e}", opts.kafka));
        }
    };

    let member = Member {
        id: opts.id.clone(),
        addr: advertise.to_string(),
        zone: opts.zone.clone(),
        drives: opts.drive_count as u32,
        leaving: false,
    };
    let ttl = Duration::from_secs(opts.lease_secs);
    let joined = control.block_on(async {
        let mut c = Cluster::connect(&opts.etcd, &opts.cluster).await.map_err(|e| e.to_string())?;
        let members = c.members().await.map_err(|e| e.to_string())?;
        let placed = match members.iter().find(|m| m.id == member.id) {
            Some(m) if m.addr == member.addr && m.drives == member.drives && m.zone == member.zone => None,
            Some(m) => {
                return Err(format!(
                    "node {:?} is a member with address {}, zone {:?}, {} drives; this start says {}, {:?}, {}",
                    m.id, m.addr, m.zone, m.drives, member.addr, member.zone, member.drives
                ))
            }
            None => Some(c.add_node(member.clone()).await.map_err(|e| e.to_string())?),
        };
        let guard = c.register_alive(&member.id, &member.addr, ttl).await.map_err(|e| e.to_string())?;
        Ok::<_, String>((c, guard, placed))
    });
    let (mut etcd, mut alive, placed) = match joined {
        Ok(j) => j,
        Err(e) => {
            let _ = rt.stop();
            return Err(e);
        }
    };

    let rep = rt.report();
    println!("tessera {} storage node {:?} of cluster {:?}", env!("CARGO_PKG_VERSION"), opts.id, opts.cluster);
    println!(
        "  cores     {} glommio executors ({}), each owning partitions; buffer registration: {}",
        rep.cores,
        if rep.pinned { "pinned" } else { "unpinned" },
        rep.buffer_registration
    );
    println!("  cluster   RS {}+{}, {} partitions", config.k, config.m, config.partitions);
    for (i, d) in drives.iter().enumerate() {
        println!("    d{i}  {}", d.display());
    }
    let keys: usize = rep.recovered.iter().map(|(_, _, r)| r.keys).sum();
    println!("  recovered {keys} shard pieces in {} stores", rep.recovered.len());
    println!(
        "  log       Kafka topic {topic:?} on {}; {meta_records} metadata records, {applied_partitions} partitions applied so far",
        opts.kafka
    );
    match placed {
        Some(j) => println!("  joined    as a new member; {j}"),
        None => println!("  member    already; rejoined"),
    }
    println!("  pieces    tcp://{} (advertised {advertise}), cluster secret required", opts.listen);
    println!("  liveness  etcd lease of {} s", opts.lease_secs);
    println!("ready");

    // The control loop: signals; a lease lost (etcd away for longer than the
    // TTL) taken again as soon as etcd answers; the placement followed (the log of
    // the partitions this node holds or is given consumed by the cores that own
    // them; a move's slots caught up and reported); and the placement coordinator.
    let mut follow = Follow {
        id: member.id.clone(),
        secret: secret.clone(),
        drives: drives.len(),
        gc: opts.gc,
        rate: opts.repair_bytes_per_sec / handle.cores().max(1) as u64,
        consuming: Default::default(),
        gc_started: false,
        move_seen: None,
        synced: None,
        coordinator: None,
    };
    let mut ticks: u64 = 0;
    let sig = control.block_on(async {
        loop {
            if follow.consuming.is_empty() || ticks.is_multiple_of(TOPOLOGY_EVERY_TICKS) {
                if let Err(e) = follow.step(&mut etcd, &handle, &log).await {
                    tracing::warn!(error = %e, "cannot follow the placement yet");
                }
            }
            tokio::select! {
                sig = stop_rx.recv_async() => return sig.ok(),
                () = tokio::time::sleep(LEASE_CHECK_EVERY) => {}
            }
            ticks += 1;
            if alive.lost() {
                tracing::warn!("liveness lease lost; registering again");
                match etcd.register_alive(&member.id, &member.addr, ttl).await {
                    Ok(g) => alive = g,
                    Err(e) => tracing::warn!(error = %e, "cannot register liveness yet"),
                }
            }
        }
    });
    if let Some(sig) = sig {
        println!("signal {sig}: stopping");
    }
    // Down in etcd first, so gateways stop choosing this node before it closes.
    if let Err(e) = control.block_on(alive.revoke()) {
        tracing::warn!(error = %e, "could not revoke the liveness lease; it will expire");
    }
    drop(handle);
    rt.stop().map_err(|e| e.to_string())?;
    log.stop();
    println!("stopped");
    Ok(())
}

/// What the node's control thread keeps to follow the placement.
struct Follow {
    id: String,
    secret: Vec<u8>,
    drives: usize,
    gc: crate::gc::GcConfig,
    /// Repair bytes per second per core.
    rate: u64,
    /// Partitions whose log this node consumes.
    consuming: std::collections::BTreeSet<u32>,
    gc_started: bool,
    /// The move this node takes slots in, and when it first saw it.
    move_seen: Option<(u64, std::time::Instant)>,
    /// The move this node reported caught up.
    synced: Option<u64>,
    /// The coordinator's view of the phase (see [`Cluster::advance_move`]).
    coordinator: Option<((u64, crate::cluster_client::MovePhase), std::time::Instant)>,
}

impl Follow {
    async fn step(
        &mut self,
        etcd: &mut Cluster,
        handle: &tessera_engine::runtime::RuntimeHandle,
        log: &KafkaLog,
    ) -> Result<(), String> {
        let t = etcd.topology().await.map_err(|e| e.to_string())?;
        let Some(current) = t.placement.clone() else { return Ok(()) };
        // Every core's repair worker (started on the first call) knows the slots.
        for core in 0..handle.cores() {
            let (t, id, secret, rate) = (t.clone(), self.id.clone(), self.secret.clone(), self.rate);
            handle
                .submit(core, move |cx| async move { crate::repair::configure(&cx, t, &id, secret, rate) })
                .await
                .map_err(|e| e.to_string())?;
        }
        // The log of every partition this node holds a slot of, now or after the move.
        let held: std::collections::BTreeSet<u32> = crate::repair::my_slots(&t, &self.id).into_keys().collect();
        let new: Vec<u32> = held.difference(&self.consuming).copied().collect();
        if !new.is_empty() {
            start_consumers(handle, log, &new, self.drives).await?;
            self.consuming.extend(&new);
            println!(
                "  applying  the commit log of {} more partitions ({} in all; placement version {}{})",
                new.len(),
                self.consuming.len(),
                current.version,
                t.moving.as_ref().map_or(String::new(), |m| format!(", moving to {}", m.target.version))
            );
        }
        if !self.gc_started {
            for core in 0..handle.cores() {
                let (gc, total) = (self.gc, t.keyspace.partitions);
                handle
                    .submit(core, move |cx| async move {
                        glommio::spawn_local(crate::gc::run(cx, total, gc)).detach();
                    })
                    .await
                    .map_err(|e| e.to_string())?;
            }
            self.gc_started = true;
        }
        // Slots a move gives this node: caught up once the node has applied their
        // logs and holds their pieces, counted only after the move's fence (the
        // writes decided before the move began, which placed no piece here, have
        // all been committed by then and are in the log).
        if let Some(mv) = t.moving.as_ref().filter(|m| m.phase == crate::cluster_client::MovePhase::Syncing) {
            let version = mv.target.version;
            let taking = crate::cluster::incoming(&current, &mv.target).remove(&self.id);
            if let Some(taking) = taking.filter(|_| self.synced != Some(version)) {
                let seen = match self.move_seen {
                    Some((v, at)) if v == version => at,
                    _ => self.move_seen.insert((version, std::time::Instant::now())).1,
                };
                if seen.elapsed() >= crate::cluster_client::MOVE_FENCE && caught_up(handle, &taking).await? {
                    etcd.mark_synced(version, &self.id).await.map_err(|e| e.to_string())?;
                    self.synced = Some(version);
                    println!(
                        "  moved     caught up with the {} slots placement {version} gives this node",
                        taking.len()
                    );
                }
            }
        }
        match etcd.advance_move(&mut self.coordinator).await {
            Ok(Some(what)) => println!("  placement {what}"),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "placement coordinator"),
        }
        Ok(())
    }
}

/// Whether every core holds everything of its partitions among `slots`.
async fn caught_up(handle: &tessera_engine::runtime::RuntimeHandle, slots: &[(u32, usize)]) -> Result<bool, String> {
    for core in 0..handle.cores() {
        let mut parts: Vec<u32> =
            slots.iter().map(|(p, _)| *p).filter(|p| core_for_partition(*p, handle.cores()) == core).collect();
        parts.dedup();
        let done = handle
            .submit(core, move |_| async move { crate::repair::caught_up(&parts).await })
            .await
            .map_err(|e| e.to_string())?;
        if !done {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The Kafka topic of a cluster's commit log.
pub fn commit_topic(cluster: &str) -> String {
    format!("tessera.{cluster}.commits")
}

/// One consumer per core, for the partitions of `mine` it owns, from the positions
/// its applied index needs next.
async fn start_consumers(
    handle: &tessera_engine::runtime::RuntimeHandle,
    log: &KafkaLog,
    mine: &[u32],
    drives: usize,
) -> Result<(), String> {
    for core in 0..handle.cores() {
        let owned: Vec<u32> = mine.iter().copied().filter(|p| core_for_partition(*p, handle.cores()) == core).collect();
        if owned.is_empty() {
            continue;
        }
        let from =
            handle.submit(core, move |_| async move { next_positions(&owned) }).await.map_err(|e| e.to_string())?;
        let consumer = log.consume(from).map_err(|e| e.to_string())?;
        handle
            .submit(core, move |cx| async move {
                glommio::spawn_local(apply_loop(cx, drives, consumer)).detach();
            })
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Binds this core's listener and serves connections until the runtime stops.
pub fn start_listener(cx: Rc<CoreCx>, addr: SocketAddr, shared: Arc<NodeShared>) -> std::io::Result<()> {
    let listener = crate::http::Listener::bind(addr)?;
    let guard = cx.service();
    glommio::spawn_local(async move {
        let _guard = guard;
        let permits = Rc::new(Semaphore::new(CONNECTIONS_PER_CORE_MAX));
        loop {
            let permit = match race(async { Some(permits.acquire_static_permit(1).await) }, async {
                cx.stopping().await;
                None
            })
            .await
            {
                Some(Ok(p)) => p,
                _ => break,
            };
            let accepted = race(async { Some(listener.accept().await) }, async {
                cx.stopping().await;
                None
            })
            .await;
            let stream = match accepted {
                Some(Ok(s)) => s,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "accept failed");
                    glommio::timer::sleep(Duration::from_millis(10)).await;
                    continue;
                }
                None => break,
            };
            let (cx, shared) = (cx.clone(), shared.clone());
            glommio::spawn_local(async move {
                let _permit = permit;
                let peer = stream.peer_addr().ok();
                if let Err(e) = serve_conn(&cx, stream, &shared).await {
                    tracing::debug!(?peer, error = %e, "piece connection closed");
                }
            })
            .detach();
        }
        // Peers connecting from here on are refused, not taken and reset.
        listener.stop_listening();
    })
    .detach();
    Ok(())
}

async fn write_frame(stream: &mut TcpStream, header: &[u8], body: &[u8]) -> std::io::Result<()> {
    let write = async {
        stream.write_all(header).await?;
        if !body.is_empty() {
            stream.write_all(body).await?;
        }
        stream.flush().await
    };
    match race(async { Some(write.await) }, async {
        glommio::timer::sleep(WRITE_TIMEOUT).await;
        None
    })
    .await
    {
        Some(r) => r,
        None => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "reply not taken within the write timeout")),
    }
}

async fn send(stream: &mut TcpStream, id: u64, reply: Reply) -> std::io::Result<()> {
    let (h, body) = reply.encode(id);
    write_frame(stream, &h, &body).await
}

/// Reads one frame; `Ok(None)` at a clean end of stream before a header.
async fn read_frame(stream: &mut TcpStream) -> Result<Option<(Header, Vec<u8>)>, wire::WireError> {
    let mut h = [0u8; HEADER_BYTES];
    let mut got = 0;
    while got < HEADER_BYTES {
        let n = stream.read(&mut h[got..]).await?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
        got += n;
    }
    let h = Header::decode(&h)?;
    let mut body = vec![0u8; h.len as usize];
    stream.read_exact(&mut body).await?;
    Ok(Some((h, body)))
}

async fn serve_conn(cx: &Rc<CoreCx>, mut stream: TcpStream, shared: &NodeShared) -> Result<(), wire::WireError> {
    stream.set_nodelay(true).map_err(std::io::Error::from)?;
    stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT)).map_err(std::io::Error::from)?;
    let nonce_s: [u8; NONCE_BYTES] = rand::random();
    write_frame(&mut stream, &Header::encode(Op::Hello, 0, NONCE_BYTES), &nonce_s).await?;
    let (h, body) = match read_frame(&mut stream).await {
        Ok(Some(f)) => f,
        Ok(None) => return Ok(()),
        Err(e) => {
            refuse(&mut stream, 0, Reply::error(ErrorCode::Unauthenticated, format!("no Auth frame: {e}"))).await;
            return Err(e);
        }
    };
    let authentic = h.op == Op::Auth as u8
        && body.len() == 2 * NONCE_BYTES
        && wire::check_client_proof(&shared.secret, &nonce_s, &body[..NONCE_BYTES], &body[NONCE_BYTES..]);
    if !authentic {
        refuse(&mut stream, h.id, Reply::error(ErrorCode::Unauthenticated, "cluster secret not proven")).await;
        return Err(wire::WireError::Refused);
    }
    let proof = wire::server_proof(&shared.secret, &nonce_s, &body[..NONCE_BYTES]);
    write_frame(&mut stream, &Header::encode(Op::AuthOk, h.id, proof.len()), &proof).await?;
    stream.set_read_timeout(Some(IDLE_TIMEOUT)).map_err(std::io::Error::from)?;
    loop {
        let (h, body) = match read_frame(&mut stream).await {
            Ok(Some(f)) => f,
            Ok(None) => return Ok(()),
            // A broken header cannot be skipped: say why, then close.
            Err(e @ (wire::WireError::BadMagic(_) | wire::WireError::BadVersion(_) | wire::WireError::TooLarge(_))) => {
                let code =
                    if matches!(e, wire::WireError::TooLarge(_)) { ErrorCode::TooLarge } else { ErrorCode::BadRequest };
                refuse(&mut stream, 0, Reply::error(code, e.to_string())).await;
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        let reply = match Request::decode(h.op, &body) {
            Ok(req) => {
                drop(body);
                handle(cx, shared, req).await
            }
            Err(e) => Reply::error(ErrorCode::BadRequest, e.to_string()),
        };
        send(&mut stream, h.id, reply).await?;
    }
}

/// Sends a last error and closes so the peer can read it: our side is shut for
/// writing, and what the peer still sends is read and dropped for a moment (a
/// close with unread input would reset the connection, and the peer might lose
/// the answer).
async fn refuse(stream: &mut TcpStream, id: u64, reply: Reply) {
    if send(stream, id, reply).await.is_err() {
        return;
    }
    let _ = stream.shutdown(std::net::Shutdown::Write).await;
    let _ = stream.set_read_timeout(Some(LINGER));
    let mut sink = [0u8; 4096];
    let mut drained = 0;
    while drained < LINGER_BYTES_MAX {
        match stream.read(&mut sink).await {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

/// A failure on the owning core, carried back across cores.
struct Failure(ErrorCode, String);

fn store_failure(e: StoreError) -> Failure {
    match e {
        StoreError::NotFound(k) => Failure(ErrorCode::NotFound, format!("no piece {k:?}")),
        StoreError::RangeOutOfBounds { .. } => Failure(ErrorCode::BadRequest, e.to_string()),
        StoreError::TooLarge { .. } => Failure(ErrorCode::TooLarge, e.to_string()),
        StoreError::Corrupt { .. } => Failure(ErrorCode::Corrupt, e.to_string()),
        StoreError::Closed => Failure(ErrorCode::Unavailable, e.to_string()),
        _ => Failure(ErrorCode::Io, e.to_string()),
    }
}

async fn handle(cx: &Rc<CoreCx>, shared: &NodeShared, req: Request) -> Reply {
    let (drive, partition) = match &req {
        Request::Ping => return Reply::Pong,
        Request::MetaGet { partition, .. }
        | Request::MetaWait { partition, .. }
        | Request::MetaList { partition, .. }
        | Request::MetaParts { partition, .. }
        | Request::MetaUploads { partition, .. } => {
            if *partition >= shared.partitions {
                return Reply::error(
                    ErrorCode::BadRequest,
                    format!("partition {partition}: the cluster has {}", shared.partitions),
                );
            }
            let core = core_for_partition(*partition, cx.handle.cores());
            let drives = shared.drives;
            return match cx.run_on(core, move |cx| async move { handle_meta(&cx, drives, req).await }).await {
                Ok(Ok(reply)) => reply,
                Ok(Err(Failure(code, message))) => Reply::error(code, message),
                Err(e) => Reply::error(ErrorCode::Unavailable, e.to_string()),
            };
        }
        Request::Put { drive, key, .. } | Request::Get { drive, key, .. } | Request::Delete { drive, key } => {
            (*drive, key.partition)
        }
        Request::List { drive, partition } => (*drive, *partition),
    };
    if drive as usize >= shared.drives {
        return Reply::error(ErrorCode::NoSuchDrive, format!("drive {drive}: this node has {}", shared.drives));
    }
    if partition >= shared.partitions {
        return Reply::error(
            ErrorCode::BadRequest,
            format!("partition {partition}: the cluster has {}", shared.partitions),
        );
    }
    let core = core_for_partition(partition, cx.handle.cores());
    let drive = drive as usize;
    let r = cx
        .run_on(core, move |cx| async move {
            let Some(store) = cx.stores.get(drive).and_then(Option::as_ref) else {
                return Err(Failure(ErrorCode::Unavailable, format!("drive {drive} is offline")));
            };
            match req {
                Request::Put { key, data, .. } => store.put(key, &data).await.map(|_| Reply::Ok).map_err(store_failure),
                Request::Get { key, offset, len, .. } => {
                    let len = if len == wire::TO_END {
                        let size =
                            store.len_of(key).ok_or(Failure(ErrorCode::NotFound, format!("no piece {key:?}")))?;
                        size.checked_sub(offset).ok_or_else(|| {
                            Failure(ErrorCode::BadRequest, format!("offset {offset} beyond the piece's {size} bytes"))
                        })?
                    } else {
                        len
                    };
                    if len > wire::BODY_MAX as u64 {
                        return Err(Failure(
                            ErrorCode::TooLarge,
                            format!("{len} bytes in one read; the limit is {}", wire::BODY_MAX),
                        ));
                    }
                    store.get_range(key, offset, len).await.map(|b| Reply::Data(b.to_vec())).map_err(store_failure)
                }
                Request::Delete { key, .. } => store.delete(key).await.map(|_| Reply::Ok).map_err(store_failure),
                Request::List { partition, .. } => {
                    let keys = store.list_partition(partition);
                    if keys.len() > wire::KEYS_MAX {
                        return Err(Failure(
                            ErrorCode::TooLarge,
                            format!(
                                "{} pieces in partition {partition}; one answer holds {}",
                                keys.len(),
                                wire::KEYS_MAX
                            ),
                        ));
                    }
                    Ok(Reply::Keys(keys))
                }
                Request::Ping => Ok(Reply::Pong),
                Request::MetaGet { .. }
                | Request::MetaWait { .. }
                | Request::MetaList { .. }
                | Request::MetaParts { .. }
                | Request::MetaUploads { .. } => {
                    unreachable!("metadata requests are answered by handle_meta")
                }
            }
        })
        .await;
    match r {
        Ok(Ok(reply)) => reply,
        Ok(Err(Failure(code, message))) => Reply::error(code, message),
        Err(e) => Reply::error(ErrorCode::Unavailable, e.to_string()),
    }
}

// ---------------------------------------------------------------------------
// The applied commit log: metadata records delivered from Kafka, per core.

/// Longest `MetaWait` a gateway may ask for.
const META_WAIT_MAX: Duration = Duration::from_secs(30);
/// Objects one `MetaList` answer carries at most.
const META_LIST_MAX: u32 = 1000;
/// Pause before retrying a record whose store write failed (the position must
/// not move past an unapplied record).
const APPLY_RETRY: Duration = Duration::from_millis(200);

/// A commit record as the log delivered it.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub partition: u32,
    pub position: u64,
    pub payload: Vec<u8>,
}

/// What one core of the node holds besides its stores.
struct NodeCore {
    index: std::cell::RefCell<AppliedIndex>,
    /// `MetaWait`s: (partition, position, wake-up).
    waiters: std::cell::RefCell<Vec<(u32, u64, futures::channel::oneshot::Sender<()>)>>,
}

thread_local! {
    static NODE_CORE: std::cell::RefCell<Option<Rc<NodeCore>>> = const { std::cell::RefCell::new(None) };
}

/// The data ids the current records of `partition` name (for the collector).
pub(crate) fn referenced(partition: u32) -> std::collections::HashSet<u128> {
    node_core().index.borrow().referenced(partition)
}

/// The live records of `partition` that name data, read from this core's store
/// (for a rescan when the node is given a slot of records it applied before).
pub(crate) async fn live_records(cx: &Rc<CoreCx>, partition: u32, drives: usize) -> Result<Vec<Vec<u8>>, String> {
    let keys = node_core().index.borrow().live_with_data(partition);
    let store = meta_store(cx, partition, drives).map_err(|Failure(_, why)| why)?;
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        match store.get(key).await {
            Ok(b) => out.push(b.to_vec()),
            // Replaced since the index was read: its successor is applied (and checked) too.
            Err(e) => tracing::debug!(partition, ?key, error = %e, "record gone during a rescan"),
        }
    }
    Ok(out)
}

/// The last log position applied of `partition` on this core.
pub(crate) fn applied(partition: u32) -> Option<u64> {
    node_core().index.borrow().applied(partition)
}

fn node_core() -> Rc<NodeCore> {
    NODE_CORE.with(|c| c.borrow().clone()).expect("the node's cores are set up before they serve")
}

/// The store holding `partition`'s metadata records on this core.
fn meta_store(
    cx: &Rc<CoreCx>,
    partition: u32,
    drives: usize,
) -> Result<&tessera_engine::store::ShardStore<tessera_engine::io::glommio_io::GlommioIo>, Failure> {
    let drive = meta_drive(partition, drives);
    cx.stores
        .get(drive)
        .and_then(Option::as_ref)
        .ok_or_else(|| Failure(ErrorCode::Unavailable, format!("metadata drive {drive} is offline")))
}

/// The drive a partition's metadata records are stored on.
fn meta_drive(partition: u32, drives: usize) -> usize {
    partition as usize % drives
}

/// Sets up this core's applied index from the metadata records in its stores.
/// Returns (records, partitions with an applied position).
pub async fn recover_core(cx: Rc<CoreCx>, keyspace: Keyspace) -> Result<(usize, usize), String> {
    let mut index = AppliedIndex::new(keyspace);
    let mut records = 0;
    for store in cx.stores.iter().flatten() {
        for p in (0..keyspace.partitions).filter(|p| core_for_partition(*p, cx.handle.cores()) == cx.core) {
            for (key, _) in store.list_partition(p).into_iter().filter(|(k, _)| k.piece == META_PIECE) {
                let bytes = store.get(key).await.map_err(|e| format!("reading metadata record {key:?}: {e}"))?;
                index.recover(&bytes).map_err(|e| format!("metadata record {key:?}: {e}"))?;
                records += 1;
            }
        }
    }
    let applied = index.partitions().count();
    let core = Rc::new(NodeCore { index: std::cell::RefCell::new(index), waiters: Default::default() });
    NODE_CORE.with(|c| *c.borrow_mut() = Some(core));
    Ok((records, applied))
}

/// The next log position to read, for each of `partitions` this core owns.
pub fn next_positions(partitions: &[u32]) -> Vec<(u32, u64)> {
    let core = node_core();
    let index = core.index.borrow();
    partitions.iter().map(|p| (*p, index.next_position(*p))).collect()
}

/// Applies the records of this core's partitions in log order until the log or the
/// runtime stops. Each record is durable in the store before the applied position
/// moves.
pub async fn apply_loop(cx: Rc<CoreCx>, drives: usize, consumer: Consumer) {
    let core = node_core();
    loop {
        let next = race(async { Some(consumer.recv().await) }, async {
            cx.stopping().await;
            None
        })
        .await;
        let d = match next {
            None | Some(Err(KafkaError::Stopped)) => return,
            // Records are missing between two positions: applying what follows would
            // break the log order. Stop here: the partitions of this core stop moving,
            // writes waiting on them fail (no quorum), and nothing is applied out of order.
            Some(Err(e @ KafkaError::Gap { .. })) => {
                tracing::error!(error = %e, "commit log gap: applying stopped on this core");
                return;
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "reading the commit log");
                glommio::timer::sleep(APPLY_RETRY).await;
                continue;
            }
            Some(Ok(r)) => Delivered { partition: r.partition, position: r.offset, payload: r.payload },
        };
        apply_one(&cx, &core, drives, d).await;
    }
}

async fn apply_one(cx: &Rc<CoreCx>, core: &NodeCore, drives: usize, d: Delivered) {
    let prepared = core.index.borrow().prepare(d.partition, d.position, &d.payload);
    match prepared {
        Apply::Duplicate => return,
        Apply::Skip(why) => {
            tracing::warn!(partition = d.partition, position = d.position, %why, "commit record skipped");
            core.index.borrow_mut().skip(d.partition, d.position);
        }
        Apply::Store(p) => {
            let drive = meta_drive(p.partition, drives);
            let Some(store) = cx.stores.get(drive).and_then(Option::as_ref) else {
                tracing::error!(drive, "metadata drive offline: the log cannot be applied");
                return;
            };
            while let Err(e) = store.put(p.store_key, &p.bytes).await {
                tracing::error!(partition = p.partition, position = p.position, error = %e, "storing a commit record failed; retrying");
                glommio::timer::sleep(APPLY_RETRY).await;
            }
            core.index.borrow_mut().commit(p);
            crate::repair::consider(cx, d.partition, &d.payload);
        }
    }
    wake_waiters(core, d.partition);
}

fn wake_waiters(core: &NodeCore, partition: u32) {
    let applied = core.index.borrow().applied(partition);
    let Some(applied) = applied else { return };
    let mut waiters = core.waiters.borrow_mut();
    let mut i = 0;
    while i < waiters.len() {
        let (p, pos, _) = &waiters[i];
        if *p == partition && *pos <= applied {
            let (_, _, tx) = waiters.swap_remove(i);
            let _ = tx.send(());
        } else if waiters[i].2.is_canceled() {
            waiters.swap_remove(i);
        } else {
            i += 1;
        }
    }
}

async fn handle_meta(cx: &Rc<CoreCx>, drives: usize, req: Request) -> Result<Reply, Failure> {
    let core = node_core();
    match req {
        Request::MetaGet { partition, id } => {
            let (applied, found) = {
                let index = core.index.borrow();
                (index.applied(partition), index.get(partition, &id).cloned())
            };
            let Some(summary) = found else { return Ok(Reply::Meta { applied, record: None }) };
            let store = meta_store(cx, partition, drives)?;
            let bytes = store.get(summary.store_key).await.map_err(store_failure)?;
            Ok(Reply::Meta { applied, record: Some(bytes.to_vec()) })
        }
        Request::MetaParts { partition, bucket, key, upload_id } => {
            let (applied, found) = {
                let index = core.index.borrow();
                (index.applied(partition), index.upload_parts(partition, &bucket, &key, &upload_id))
            };
            let store = meta_store(cx, partition, drives)?;
            let mut records = Vec::with_capacity(found.len());
            for (_, summary) in found {
                records.push(store.get(summary.store_key).await.map_err(store_failure)?.to_vec());
            }
            Ok(Reply::Records { applied, records })
        }
        Request::MetaUploads { partition, bucket, prefix, after_key, after_upload_id, limit } => {
            let (applied, found) = {
                let index = core.index.borrow();
                let after = (after_key.as_str(), after_upload_id.as_str());
                let found = index.list_uploads(partition, &bucket, &prefix, after, limit.min(META_LIST_MAX) as usize);
                (index.applied(partition), found)
            };
            let store = meta_store(cx, partition, drives)?;
            let mut records = Vec::with_capacity(found.len());
            for (_, _, summary) in found {
                records.push(store.get(summary.store_key).await.map_err(store_failure)?.to_vec());
            }
            Ok(Reply::Records { applied, records })
        }
        Request::MetaWait { partition, position, timeout_ms } => {
            let applied = core.index.borrow().applied(partition);
            if let Some(a) = applied.filter(|a| *a >= position) {
                return Ok(Reply::Applied(a));
            }
            let (tx, rx) = futures::channel::oneshot::channel();
            core.waiters.borrow_mut().push((partition, position, tx));
            let wait = Duration::from_millis(timeout_ms as u64).min(META_WAIT_MAX);
            let woken = race(async { rx.await.is_ok() }, async {
                glommio::timer::sleep(wait).await;
                false
            })
            .await;
            let applied = core.index.borrow().applied(partition);
            match applied {
                Some(a) if woken || a >= position => Ok(Reply::Applied(a)),
                _ => Err(Failure(
                    ErrorCode::Unavailable,
                    format!(
                        "partition {partition} not applied to position {position} within {wait:?} (at {applied:?})"
                    ),
                )),
            }
        }
        Request::MetaList { partition, bucket, prefix, start_after, limit } => {
            let index = core.index.borrow();
            let entries = index
                .list_objects(partition, &bucket, &prefix, &start_after, limit.min(META_LIST_MAX) as usize, true)
                .into_iter()
                .map(|(key, s)| wire::Listed {
                    key,
                    version: s.version,
                    size: s.size,
                    etag: s.etag,
                    modified_ms: s.modified_ms,
                    live: s.live,
                })
                .collect();
            Ok(Reply::Listing { applied: index.applied(partition), entries })
        }
        _ => unreachable!("only metadata requests come here"),
    }
}
