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
use crate::object::{Deployment, ObjectConfig, ObjectError, ObjectLayer};
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
    /// With a deployment, each core also opens an [`ObjectLayer`] over its stores,
    /// and drives the deployment found offline are skipped instead of refused.
    pub objects: Option<ObjectsConfig>,
}

#[derive(Debug, Clone)]
pub struct ObjectsConfig {
    pub deployment: Deployment,
    pub config: ObjectConfig,
    /// Per drive: false when the drive is offline (not opened).
    pub online: Vec<bool>,
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
            objects: None,
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
    #[error("core {core}: object layer: {source}")]
    Objects { core: usize, source: ObjectError },
    #[error("drive {0} is offline")]
    DriveOffline(usize),
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

/// Work for a core: a typed request on its stores, a closure run with the core's
/// context (Seastar's `submit_to`), or a step of the stop sequence.
enum Envelope {
    Req {
        req: Request,
        reply: flume::Sender<Result<Response, RuntimeError>>,
    },
    Task(Task),
    /// Wait until the core's services (e.g. its HTTP listener) have ended.
    Drain(flume::Sender<()>),
    Stop,
}

type Task = Box<dyn FnOnce(Rc<CoreCx>) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> + Send>;

/// What a core owns, handed to the closures run on it. Not `Send`.
pub struct CoreCx {
    pub core: usize,
    pub stores: Rc<Vec<Option<ShardStore<GlommioIo>>>>,
    pub objects: Option<Rc<ObjectLayer<GlommioIo>>>,
    /// For calls to other cores.
    pub handle: RuntimeHandle,
    stop: flume::Receiver<()>,
    services: std::cell::Cell<usize>,
    /// Tasks in flight on this core (`RuntimeConfig::in_flight_max`).
    limit: Rc<glommio::sync::Semaphore>,
}

impl CoreCx {
    /// Runs `f` on `core` and returns its result, like
    /// [`RuntimeHandle::submit`]; when `core` is this core, as a task of its own
    /// here, with no message and no cross-thread wake-up. Either way `f` runs to
    /// completion even if the caller stops waiting (a commit is never cut in two).
    pub async fn run_on<T, F, Fut>(self: &Rc<Self>, core: usize, f: F) -> Result<T, RuntimeError>
    where
        T: Send + 'static,
        F: FnOnce(Rc<CoreCx>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = T> + 'static,
    {
        if core != self.core {
            return self.handle.submit(core, f).await;
        }
        let permit = self.limit.acquire_static_permit(1).await.map_err(|_| RuntimeError::Stopped)?;
        let fut = f(self.clone());
        glommio::spawn_local(async move {
            let out = fut.await;
            drop(permit);
            out
        })
        .detach()
        .await
        .ok_or(RuntimeError::Stopped)
    }

    /// Resolves when the runtime begins to stop: services stop accepting work.
    pub async fn stopping(&self) {
        let _ = self.stop.recv_async().await;
    }

    /// Registers a long-running service (a listener); [`Runtime::stop`] waits for
    /// every guard to drop before stopping the cores.
    pub fn service(self: &Rc<Self>) -> ServiceGuard {
        self.services.set(self.services.get() + 1);
        ServiceGuard(self.clone())
    }

    /// The core's object layer; configured for every server runtime.
    pub fn objects(&self) -> &Rc<ObjectLayer<GlommioIo>> {
        self.objects.as_ref().expect("runtime started without a deployment")
    }
}

pub struct ServiceGuard(Rc<CoreCx>);

impl Drop for ServiceGuard {
    fn drop(&mut self) {
        self.0.services.set(self.0.services.get() - 1);
    }
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
        inbox.send_async(Envelope::Req { req, reply: tx }).await.map_err(|_| RuntimeError::Stopped)?;
        rx.recv_async().await.map_err(|_| RuntimeError::Stopped)?
    }

    /// Runs `f` on `core` with that core's context and returns its result: the one
    /// way work crosses cores besides [`Request`]s. `f` and its result are `Send`;
    /// the future it returns runs on `core` and need not be.
    pub async fn submit<T, F, Fut>(&self, core: usize, f: F) -> Result<T, RuntimeError>
    where
        T: Send + 'static,
        F: FnOnce(Rc<CoreCx>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = T> + 'static,
    {
        let inbox = self.inboxes.get(core).ok_or(RuntimeError::NoSuchCore(core))?;
        let (tx, rx) = flume::bounded(1);
        let task: Task = Box::new(move |cx| {
            Box::pin(async move {
                let out = f(cx).await;
                let _ = tx.send_async(out).await;
            })
        });
        inbox.send_async(Envelope::Task(task)).await.map_err(|_| RuntimeError::Stopped)?;
        rx.recv_async().await.map_err(|_| RuntimeError::Stopped)
    }

    /// [`submit`](Self::submit) from a plain thread.
    pub fn submit_blocking<T, F, Fut>(&self, core: usize, f: F) -> Result<T, RuntimeError>
    where
        T: Send + 'static,
        F: FnOnce(Rc<CoreCx>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = T> + 'static,
    {
        futures_lite::future::block_on(self.submit(core, f))
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
    stop_signals: Vec<flume::Sender<()>>,
    threads: Vec<glommio::ExecutorJoinHandle<Result<(), RuntimeError>>>,
    report: StartupReport,
}

/// glommio's task quota (its preemption timer). glommio polls its reactor (submits
/// queued IO, reaps completions, takes other cores' wake-ups) only when its run
/// queue empties or a quota ends, and its default quota is 100 ms. A task that never
/// waits holds its core for that long: a connection whose response chunks are always
/// queued and whose socket always has room was served to the end of its 64 MiB
/// response, often of the next one too, while the other connection on its core
/// waited for the wake-up that would let it go on. 64 MiB GETs of one hot object
/// (`tessera-bench -w get -s 64MiB -n 1`, interleaved rounds, 100 ms against 5 ms):
/// p99 215-238 ms against 93-97 at 4 connections, 407-412 against 126-144 at 8,
/// and 5.3-5.6 against 5.6-6.8 GB/s; 64 MiB PUTs at 8 connections unchanged
/// (1187 against 1205 MB/s, 3 rounds), 4 KiB GETs at 32 unchanged. Shorter quanta
/// cut the GET tail further (1-2 ms: p99 55-64 ms at 4 connections) but cost PUT
/// 4-9% (more reactor polls between hashing runs).
///
/// Long CPU loops still hand the reactor its turn themselves, far more often
/// (`Io::yield_to_reactor`, a 10 µs timer: only the reactor completes it, so the
/// run queue empties and glommio turns the reactor): every 128 KiB hashed and every
/// 1 MiB stripe encoded, it made 64 MiB PUTs ~30% faster (`tessera-bench -w put -s
/// 64MiB`, 3 interleaved rounds: 4 connections 356 -> 462 MB/s, 8 connections 418
/// -> 555 MB/s). A 0.5 ms quantum had made them ~20% faster then, but released
/// glommio 0.9.0 parks an executor that is preempted before it runs any task even
/// though tasks are runnable (2 of 20 servers hung at start); the copy in
/// `third_party/glommio` carries the fix (upstream glommio/glommio PR #53), which any
/// quantum shorter than the default needs.
const TASK_QUOTA: std::time::Duration = std::time::Duration::from_millis(5);

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
        // No drives is a core that only computes and talks to the network (a
        // cluster gateway); an object layer needs drives.
        if (cfg.drives.is_empty() && cfg.objects.is_some()) || cfg.drives.len() > DRIVES_MAX {
            return Err(RuntimeError::Config(format!("drives must be 1..={DRIVES_MAX}, not {}", cfg.drives.len())));
        }
        if cfg.inbox_max == 0 || cfg.in_flight_max == 0 {
            return Err(RuntimeError::Config("inbox_max and in_flight_max must be positive".into()));
        }
        check_layout(&cfg)?;
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let mut inboxes = Vec::with_capacity(cfg.cores);
        let mut receivers = Vec::with_capacity(cfg.cores);
        let mut stop_signals = Vec::with_capacity(cfg.cores);
        let mut stop_receivers = Vec::with_capacity(cfg.cores);
        for _ in 0..cfg.cores {
            let (tx, rx) = flume::bounded::<Envelope>(cfg.inbox_max);
            inboxes.push(tx);
            receivers.push(rx);
            let (stx, srx) = flume::bounded::<()>(1);
            stop_signals.push(stx);
            stop_receivers.push(srx);
        }
        let handle = RuntimeHandle { inboxes };
        let mut threads = Vec::with_capacity(cfg.cores);
        for (core, (rx, stop_rx)) in receivers.into_iter().zip(stop_receivers).enumerate() {
            let core_handle = handle.clone();
            let placement = if cfg.pin { Placement::Fixed(core % cpus) } else { Placement::Unbound };
            let cfg = cfg.clone();
            let ready = ready_tx.clone();
            let spawned = LocalExecutorBuilder::new(placement)
                .preempt_timer(TASK_QUOTA)
                .name(&format!("tessera-core-{core}"))
                .io_memory(cfg.io_memory_bytes)
                .spawn(move || async move { core_main(core, cfg, rx, ready, core_handle, stop_rx).await });
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    for tx in &handle.inboxes {
                        let _ = tx.try_send(Envelope::Stop);
                    }
                    for t in threads {
                        let _ = t.join();
                    }
                    return Err(RuntimeError::Executor { core, reason: e.to_string() });
                }
            }
        }
        drop(ready_tx);
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
            stop_signals,
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

    /// Stops the services (listeners) on every core and waits for them, then stops
    /// taking requests, finishes those running, closes every store and joins.
    pub fn stop(self) -> Result<(), RuntimeError> {
        drop(self.stop_signals);
        let mut acks = Vec::new();
        for tx in &self.handle.inboxes {
            let (ack, done) = flume::bounded(1);
            if tx.send(Envelope::Drain(ack)).is_ok() {
                acks.push(done);
            }
        }
        for done in acks {
            let _ = done.recv();
        }
        for tx in &self.handle.inboxes {
            let _ = tx.send(Envelope::Stop);
        }
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

/// Longest a stopping core waits for its services and running requests.
const STOP_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(30);

async fn core_main(
    core: usize,
    cfg: RuntimeConfig,
    inbox: flume::Receiver<Envelope>,
    ready: Ready,
    handle: RuntimeHandle,
    stop: flume::Receiver<()>,
) -> Result<(), RuntimeError> {
    let mut stores = Vec::with_capacity(cfg.drives.len());
    let mut reports = Vec::with_capacity(cfg.drives.len());
    let online = |d: usize| cfg.objects.as_ref().is_none_or(|o| o.online.get(d).copied().unwrap_or(false));
    let mut failure = None;
    for (drive, root) in cfg.drives.iter().enumerate() {
        if !online(drive) {
            stores.push(None);
            continue;
        }
        match ShardStore::open(GlommioIo, &core_dir(root, core), cfg.store.clone()).await {
            Ok((store, committer)) => {
                glommio::spawn_local(committer).detach();
                reports.push((core, drive, store.recovery()));
                stores.push(Some(store));
            }
            Err(source) if cfg.objects.is_some() => {
                // A server keeps serving from the other drives (degraded) rather than
                // refusing to start over one bad drive.
                tracing::error!(core, drive, error = %source, "drive offline: its store did not open");
                stores.push(None);
            }
            Err(source) => {
                failure = Some(RuntimeError::Store { core, drive, source });
                break;
            }
        }
    }
    let stores = Rc::new(stores);
    let mut objects = None;
    if failure.is_none() {
        if let Some(oc) = &cfg.objects {
            match ObjectLayer::open(core, oc.deployment.clone(), oc.config.clone(), stores.clone()).await {
                Ok((layer, deleter)) => {
                    glommio::spawn_local(deleter).detach();
                    objects = Some(layer);
                }
                Err(source) => failure = Some(RuntimeError::Objects { core, source }),
            }
        }
    }
    if let Some(e) = failure {
        let _ = ready.send(Err(e));
        drop(objects);
        if let Ok(stores) = Rc::try_unwrap(stores) {
            for s in stores.into_iter().flatten() {
                let _ = s.close().await;
            }
        }
        return Ok(()); // reported through `ready`
    }
    let _ = ready.send(Ok(reports));
    let limit = Rc::new(glommio::sync::Semaphore::new(cfg.in_flight_max as u64));
    let cx = Rc::new(CoreCx {
        core,
        stores,
        objects,
        handle,
        stop,
        services: std::cell::Cell::new(0),
        limit: limit.clone(),
    });
    while let Ok(env) = inbox.recv_async().await {
        match env {
            Envelope::Stop => break,
            Envelope::Drain(ack) => {
                let cx = cx.clone();
                glommio::spawn_local(async move {
                    let deadline = std::time::Instant::now() + STOP_WAIT_MAX;
                    while cx.services.get() > 0 && std::time::Instant::now() < deadline {
                        glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
                    }
                    let _ = ack.send_async(()).await;
                })
                .detach();
            }
            Envelope::Req { req, reply } => {
                let Ok(permit) = limit.acquire_static_permit(1).await else { break };
                let cx = cx.clone();
                glommio::spawn_local(async move {
                    let r = serve(core, &cx.stores, req).await;
                    let _ = reply.send_async(r).await;
                    // Release the context before the permit: stop waits on the
                    // permits and then needs to be the stores' only owner.
                    drop(cx);
                    drop(permit);
                })
                .detach();
            }
            Envelope::Task(task) => {
                let Ok(permit) = limit.acquire_static_permit(1).await else { break };
                let fut = task(cx.clone());
                glommio::spawn_local(async move {
                    fut.await;
                    drop(permit);
                })
                .detach();
            }
        }
    }
    // Stopping: wait for the requests still running, then close the stores.
    let _all = limit.acquire_permit(cfg.in_flight_max as u64).await;
    if let Some(o) = &cx.objects {
        o.shutdown();
    }
    let cx = sole_owner(cx, core, "core context").await?;
    let CoreCx { stores, objects, .. } = cx;
    drop(objects);
    let stores = sole_owner(stores, core, "stores").await?;
    for (drive, s) in stores.into_iter().enumerate() {
        if let Some(s) = s {
            s.close().await.map_err(|source| RuntimeError::Store { core, drive, source })?;
        }
    }
    Ok(())
}

/// Waits (bounded) until `rc` has no other owner, then unwraps it: tasks finishing
/// on this core still hold clones for a moment after stop begins.
async fn sole_owner<T>(mut rc: Rc<T>, core: usize, what: &str) -> Result<T, RuntimeError> {
    let deadline = std::time::Instant::now() + STOP_WAIT_MAX;
    loop {
        match Rc::try_unwrap(rc) {
            Ok(v) => return Ok(v),
            Err(back) if std::time::Instant::now() < deadline => {
                glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
                rc = back;
            }
            Err(_) => return Err(RuntimeError::Executor { core, reason: format!("{what} still shared at stop") }),
        }
    }
}

async fn serve(core: usize, stores: &[Option<ShardStore<GlommioIo>>], req: Request) -> Result<Response, RuntimeError> {
    let store = |drive: usize| {
        stores.get(drive).ok_or(RuntimeError::NoSuchDrive(drive))?.as_ref().ok_or(RuntimeError::DriveOffline(drive))
    };
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
                if let Some(s) = s {
                    s.checkpoint().await.map_err(wrap(d))?;
                }
            }
            Ok(Response::Done)
        }
        Request::Compact => {
            let mut out = Vec::with_capacity(stores.len());
            for (d, s) in stores.iter().enumerate() {
                if let Some(s) = s {
                    out.push(s.compact().await.map_err(wrap(d))?);
                }
            }
            Ok(Response::Compacted(out))
        }
        Request::Stats => Ok(Response::Stats(stores.iter().flatten().map(|s| s.stats()).collect())),
    }
}
