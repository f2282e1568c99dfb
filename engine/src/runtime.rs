//! Thread-per-core runtime: one glommio executor per core, pinned, each owning a
//! fixed set of partitions and, for those, one shard store per drive
//! (`<drive>/core-<n>/`). Nothing on the data path is shared between cores.
//!
//! Requests reach a core as typed messages on its bounded inbox (a `flume` channel:
//! senders may be other cores, the control thread or plain threads, which glommio's
//! own shared channels do not serve; flume's async side runs on any executor). The
//! single routing decision is [`core_for_partition`]. Replies come back on a
//! one-slot channel. Each core bounds the requests it runs at once with a semaphore,
//! so a full core pushes back on its inbox, and the inbox on its senders.
//!
//! Start-up and stop are explicit: [`Runtime::start`] returns only when every core
//! has opened (and recovered) its stores, or with the first error; [`Runtime::stop`]
//! drains the inboxes, closes the stores and joins the threads.
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::{LocalExecutorBuilder, Placement};

use crate::format::ShardKey;
use crate::io::glommio_io::GlommioIo;
use crate::store::{Applied, CompactionStats, RecoveryReport, ShardStore, StoreConfig, StoreError, StoreStats};

/// Upper bound on executors; a limit like every other.
pub const CORES_MAX: usize = 256;
/// Upper bound on drives one process serves.
pub const DRIVES_MAX: usize = 64;
/// io_uring rings glommio registers the IO memory with (main, poll, latency), each
/// counted against RLIMIT_MEMLOCK.
const RINGS_PER_EXECUTOR: u64 = 3;

/// The one routing function: which core owns a partition.
pub fn core_for_partition(partition: u32, cores: usize) -> usize {
    debug_assert!(cores > 0);
    partition as usize % cores
}

#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    pub cores: usize,
    pub drives: Vec<PathBuf>,
    pub store: StoreConfig,
    /// Pin executor n to CPU n (mod the CPUs online).
    pub pin: bool,
    /// Per-executor DMA memory glommio tries to register with io_uring.
    pub io_memory_bytes: usize,
    /// Messages waiting in one core's inbox.
    pub inbox_max: usize,
    /// Requests one core runs at once.
    pub in_flight_max: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            drives: vec![],
            store: StoreConfig::default(),
            pin: true,
            // Room for a window of 1 MiB shard records in registered memory; with
            // less, glommio silently falls back to fresh unregistered buffers.
            io_memory_bytes: 32 << 20,
            inbox_max: 1024,
            in_flight_max: 512,
        }
    }
}

/// An operation on the shard stores of the core that owns `key.partition`.
#[derive(Debug)]
pub enum Request {
    Put {
        drive: usize,
        key: ShardKey,
        data: Vec<u8>,
    },
    /// `len: None` reads to the end of the piece.
    Get {
        drive: usize,
        key: ShardKey,
        offset: u64,
        len: Option<u64>,
    },
    Delete {
        drive: usize,
        key: ShardKey,
    },
    /// Checkpoint every store of the core.
    Checkpoint,
    /// Compact every store of the core.
    Compact,
    Stats,
}

#[derive(Debug)]
pub enum Response {
    Applied(Applied),
    Data(Vec<u8>),
    Done,
    Compacted(Vec<CompactionStats>),
    Stats(Vec<StoreStats>),
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("core {core}, drive {drive}: {source}")]
    Store { core: usize, drive: usize, source: StoreError },
    #[error("no drive {0}")]
    NoSuchDrive(usize),
    #[error("no core {0}")]
    NoSuchCore(usize),
    #[error("invalid runtime configuration: {0}")]
    Config(String),
    #[error("data layout: {0}")]
    Layout(String),
    #[error("executor {core}: {reason}")]
    Executor { core: usize, reason: String },
    #[error("runtime stopped")]
    Stopped,
}

/// What start-up found, for the operator.
#[derive(Debug, Clone)]
pub struct StartupReport {
    pub cores: usize,
    pub pinned: bool,
    pub drives: Vec<PathBuf>,
    pub io_memory_bytes: usize,
    pub buffer_registration: BufferRegistration,
    /// (core, drive, what recovery did).
    pub recovered: Vec<(usize, usize, RecoveryReport)>,
}

/// Whether glommio can register its IO memory with io_uring (fixed buffers).
/// Pinned memory counts against RLIMIT_MEMLOCK unless the process is privileged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BufferRegistration {
    Privileged,
    WithinLimit {
        memlock_bytes: u64,
        needed_bytes: u64,
    },
    /// Registration will fail; glommio falls back to unregistered buffers.
    OverLimit {
        memlock_bytes: u64,
        needed_bytes: u64,
    },
}

impl std::fmt::Display for BufferRegistration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BufferRegistration::Privileged => write!(f, "registered (privileged: RLIMIT_MEMLOCK does not apply)"),
            BufferRegistration::WithinLimit { memlock_bytes, needed_bytes } => {
                write!(f, "registered ({needed_bytes} B pinned within RLIMIT_MEMLOCK {memlock_bytes} B)")
            }
            BufferRegistration::OverLimit { memlock_bytes, needed_bytes } => write!(
                f,
                "NOT registered: {needed_bytes} B needed > RLIMIT_MEMLOCK {memlock_bytes} B; unregistered buffers \
                 (lower --io-memory to at most {} B per core)",
                memlock_bytes / RINGS_PER_EXECUTOR
            ),
        }
    }
}

fn buffer_registration(io_memory_bytes: usize, cores: usize) -> BufferRegistration {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return BufferRegistration::Privileged;
    }
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `lim` is a valid, writable rlimit.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } == 0;
    let memlock = if ok { lim.rlim_cur } else { 0 };
    let needed = io_memory_bytes as u64 * RINGS_PER_EXECUTOR * cores as u64;
    if memlock == libc::RLIM_INFINITY || memlock >= needed {
        BufferRegistration::WithinLimit { memlock_bytes: memlock, needed_bytes: needed }
    } else {
        BufferRegistration::OverLimit { memlock_bytes: memlock, needed_bytes: needed }
    }
}

struct Envelope {
    req: Request,
    reply: flume::Sender<Result<Response, RuntimeError>>,
}

/// A cheap, cloneable, `Send` handle for submitting requests from any thread or core.
#[derive(Clone)]
pub struct RuntimeHandle {
    inboxes: Vec<flume::Sender<Envelope>>,
}

impl RuntimeHandle {
    pub fn cores(&self) -> usize {
        self.inboxes.len()
    }

    /// The core that owns `partition`.
    pub fn route(&self, partition: u32) -> usize {
        core_for_partition(partition, self.inboxes.len())
    }

    /// Sends a keyed request to the core that owns its partition.
    pub async fn call(&self, req: Request) -> Result<Response, RuntimeError> {
        let core = match &req {
            Request::Put { key, .. } | Request::Get { key, .. } | Request::Delete { key, .. } => {
                self.route(key.partition)
            }
            Request::Checkpoint | Request::Compact | Request::Stats => 0,
        };
        self.call_core(core, req).await
    }

    pub async fn call_core(&self, core: usize, req: Request) -> Result<Response, RuntimeError> {
        let inbox = self.inboxes.get(core).ok_or(RuntimeError::NoSuchCore(core))?;
        let (tx, rx) = flume::bounded(1);
        inbox.send_async(Envelope { req, reply: tx }).await.map_err(|_| RuntimeError::Stopped)?;
        rx.recv_async().await.map_err(|_| RuntimeError::Stopped)?
    }

    /// For plain threads (CLI, tests): blocks until the reply comes.
    pub fn call_blocking(&self, req: Request) -> Result<Response, RuntimeError> {
        futures_lite::future::block_on(self.call(req))
    }

    pub fn call_core_blocking(&self, core: usize, req: Request) -> Result<Response, RuntimeError> {
        futures_lite::future::block_on(self.call_core(core, req))
    }
}

pub struct Runtime {
    handle: RuntimeHandle,
    threads: Vec<glommio::ExecutorJoinHandle<Result<(), RuntimeError>>>,
    report: StartupReport,
}

fn core_dir(drive: &Path, core: usize) -> PathBuf {
    drive.join(format!("core-{core}"))
}

/// Refuses to start with fewer cores than the data was written with: partitions
/// would route to cores that do not look in the directories holding them.
fn check_layout(cfg: &RuntimeConfig) -> Result<(), RuntimeError> {
    for drive in &cfg.drives {
        let Ok(entries) = std::fs::read_dir(drive) else { continue };
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(n) = name.to_str().and_then(|s| s.strip_prefix("core-")).and_then(|s| s.parse::<usize>().ok())
            else {
                continue;
            };
            if n >= cfg.cores {
                return Err(RuntimeError::Layout(format!(
                    "{} holds data of core {n}, but only {} cores are configured; start with --cores {} or more",
                    drive.display(),
                    cfg.cores,
                    n + 1
                )));
            }
        }
    }
    Ok(())
}

impl Runtime {
    pub fn start(cfg: RuntimeConfig) -> Result<Runtime, RuntimeError> {
        if cfg.cores == 0 || cfg.cores > CORES_MAX {
            return Err(RuntimeError::Config(format!("cores must be 1..={CORES_MAX}, not {}", cfg.cores)));
        }
        if cfg.drives.is_empty() || cfg.drives.len() > DRIVES_MAX {
            return Err(RuntimeError::Config(format!("drives must be 1..={DRIVES_MAX}, not {}", cfg.drives.len())));
        }
        if cfg.inbox_max == 0 || cfg.in_flight_max == 0 {
            return Err(RuntimeError::Config("inbox_max and in_flight_max must be positive".into()));
        }
        check_layout(&cfg)?;
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let mut inboxes = Vec::with_capacity(cfg.cores);
        let mut threads = Vec::with_capacity(cfg.cores);
        for core in 0..cfg.cores {
            let (tx, rx) = flume::bounded::<Envelope>(cfg.inbox_max);
            inboxes.push(tx);
            let placement = if cfg.pin { Placement::Fixed(core % cpus) } else { Placement::Unbound };
            let cfg = cfg.clone();
            let ready = ready_tx.clone();
            let spawned = LocalExecutorBuilder::new(placement)
                .name(&format!("tessera-core-{core}"))
                .io_memory(cfg.io_memory_bytes)
                .spawn(move || async move { core_main(core, cfg, rx, ready).await });
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    drop(inboxes);
                    for t in threads {
                        let _ = t.join();
                    }
                    return Err(RuntimeError::Executor { core, reason: e.to_string() });
                }
            }
        }
        drop(ready_tx);
        let handle = RuntimeHandle { inboxes };
        let mut recovered = Vec::new();
        let mut first_err = None;
        for _ in 0..cfg.cores {
            match ready_rx.recv() {
                Ok(Ok(mut r)) => recovered.append(&mut r),
                Ok(Err(e)) => {
                    first_err.get_or_insert(e);
                }
                Err(_) => {
                    first_err
                        .get_or_insert(RuntimeError::Executor { core: usize::MAX, reason: "died during start".into() });
                }
            }
        }
        recovered.sort_by_key(|(c, d, _)| (*c, *d));
        let rt = Runtime {
            handle,
            threads,
            report: StartupReport {
                cores: cfg.cores,
                pinned: cfg.pin,
                drives: cfg.drives.clone(),
                io_memory_bytes: cfg.io_memory_bytes,
                buffer_registration: buffer_registration(cfg.io_memory_bytes, cfg.cores),
                recovered,
            },
        };
        if let Some(e) = first_err {
            let _ = rt.stop();
            return Err(e);
        }
        Ok(rt)
    }

    pub fn handle(&self) -> RuntimeHandle {
        self.handle.clone()
    }

    pub fn report(&self) -> &StartupReport {
        &self.report
    }

    /// Stops accepting requests, finishes those queued, closes every store, joins.
    pub fn stop(self) -> Result<(), RuntimeError> {
        drop(self.handle);
        let mut first_err = None;
        for (core, t) in self.threads.into_iter().enumerate() {
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    first_err.get_or_insert(e);
                }
                Err(e) => {
                    first_err.get_or_insert(RuntimeError::Executor { core, reason: e.to_string() });
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

type Ready = std::sync::mpsc::Sender<Result<Vec<(usize, usize, RecoveryReport)>, RuntimeError>>;

async fn core_main(
    core: usize,
    cfg: RuntimeConfig,
    inbox: flume::Receiver<Envelope>,
    ready: Ready,
) -> Result<(), RuntimeError> {
    let mut stores = Vec::with_capacity(cfg.drives.len());
    let mut reports = Vec::with_capacity(cfg.drives.len());
    for (drive, root) in cfg.drives.iter().enumerate() {
        match ShardStore::open(GlommioIo, &core_dir(root, core), cfg.store.clone()).await {
            Ok((store, committer)) => {
                glommio::spawn_local(committer).detach();
                reports.push((core, drive, store.recovery()));
                stores.push(store);
            }
            Err(source) => {
                let _ = ready.send(Err(RuntimeError::Store { core, drive, source }));
                for s in stores {
                    let _ = s.close().await;
                }
                return Ok(()); // reported through `ready`
            }
        }
    }
    let _ = ready.send(Ok(reports));
    let stores = Rc::new(stores);
    let limit = Rc::new(glommio::sync::Semaphore::new(cfg.in_flight_max as u64));
    while let Ok(env) = inbox.recv_async().await {
        let Ok(permit) = limit.acquire_static_permit(1).await else { break };
        let stores = stores.clone();
        glommio::spawn_local(async move {
            let r = serve(core, &stores, env.req).await;
            let _ = env.reply.send_async(r).await;
            // Release the stores before the permit: stop waits on the permits and
            // then needs to be the stores' only owner.
            drop(stores);
            drop(permit);
        })
        .detach();
    }
    // Inbox closed: wait for the requests still running, then close the stores.
    let _all = limit.acquire_permit(cfg.in_flight_max as u64).await;
    let stores = Rc::try_unwrap(stores)
        .map_err(|_| RuntimeError::Executor { core, reason: "stores still shared at stop".into() })?;
    for (drive, s) in stores.into_iter().enumerate() {
        s.close().await.map_err(|source| RuntimeError::Store { core, drive, source })?;
    }
    Ok(())
}

async fn serve(core: usize, stores: &[ShardStore<GlommioIo>], req: Request) -> Result<Response, RuntimeError> {
    let store = |drive: usize| stores.get(drive).ok_or(RuntimeError::NoSuchDrive(drive));
    let wrap = |drive: usize| move |source| RuntimeError::Store { core, drive, source };
    match req {
        Request::Put { drive, key, data } => {
            Ok(Response::Applied(store(drive)?.put(key, &data).await.map_err(wrap(drive))?))
        }
        Request::Delete { drive, key } => Ok(Response::Applied(store(drive)?.delete(key).await.map_err(wrap(drive))?)),
        Request::Get { drive, key, offset, len } => {
            let s = store(drive)?;
            let len = match len {
                Some(l) => l,
                None => {
                    let size =
                        s.len_of(key).ok_or(RuntimeError::Store { core, drive, source: StoreError::NotFound(key) })?;
                    size.saturating_sub(offset)
                }
            };
            // Crossing back to another thread needs owned bytes; the same-core path
            // (the gateway's streaming) uses the store's zero-copy buffers directly.
            Ok(Response::Data(s.get_range(key, offset, len).await.map_err(wrap(drive))?.to_vec()))
        }
        Request::Checkpoint => {
            for (d, s) in stores.iter().enumerate() {
                s.checkpoint().await.map_err(wrap(d))?;
            }
            Ok(Response::Done)
        }
        Request::Compact => {
            let mut out = Vec::with_capacity(stores.len());
            for (d, s) in stores.iter().enumerate() {
                out.push(s.compact().await.map_err(wrap(d))?);
            }
            Ok(Response::Compacted(out))
        }
        Request::Stats => Ok(Response::Stats(stores.iter().map(|s| s.stats()).collect())),
    }
}
