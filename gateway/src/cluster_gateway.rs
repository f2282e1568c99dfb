//! `tessera gateway`: a stateless S3 gateway of a cluster. The S3 surface is the
//! embedded server's ([`crate::s3`]) on every core (SO_REUSEPORT), with objects
//! stored on the cluster's nodes ([`crate::cluster_client`]) and buckets in etcd.
//!
//! Threads: one glommio executor per core serves S3; the control thread holds the
//! etcd client (tokio) and the Kafka client (its own thread, reached through
//! `Appender`s), and answers the cores through bounded flume channels. It reads
//! the topology (placement, members, liveness) and the bucket catalogue every
//! [`REFRESH_EVERY`] and hands changes to the cores.
//!
//! Start-up barrier: S3 requests are answered 503 until the cluster is ready (a
//! placement exists and every partition has at least `k` live slots); then the
//! gateway prints "ready" and serves from then on (a partition that loses too many
//! nodes later fails its own requests fast, with 503).
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tessera_engine::runtime::{Runtime, RuntimeConfig, RuntimeHandle};

use crate::cluster::Cluster;
use crate::cluster_client::{ClusterClient, Topology, ViewClock};
use crate::credentials::Credentials;
use crate::kafka::KafkaLog;
use crate::s3::cluster::{ClusterCx, ClusterShared, ControlReq};
use crate::server::Shared;

/// How often the topology and the bucket catalogue are read from etcd.
const REFRESH_EVERY: Duration = Duration::from_millis(500);
/// Requests from the cores to the control thread waiting at once.
const CONTROL_QUEUE_MAX: usize = 1024;

pub struct GatewayOptions {
    pub etcd: String,
    pub kafka: String,
    pub cluster: String,
    pub listen: SocketAddr,
    pub secret_file: Option<PathBuf>,
    pub cores: Option<usize>,
    pub pin: bool,
    pub io_memory_bytes: usize,
    pub vhost_domain: Option<String>,
}

thread_local! {
    /// This core's cluster view, for topology updates from the control thread.
    static CORE_CLUSTER: RefCell<Option<Rc<ClusterCx>>> = const { RefCell::new(None) };
}

/// The S3 key pair: a gateway keeps no state, so it comes from the environment.
fn credentials() -> Result<Credentials, String> {
    match (std::env::var("TESSERA_ACCESS_KEY"), std::env::var("TESSERA_SECRET_KEY")) {
        (Ok(a), Ok(s)) if !a.is_empty() && !s.is_empty() => {
            crate::credentials::check(&a, &s)?;
            Ok(Credentials { access_key: a, secret_key: s })
        }
        _ => {
            Err("a gateway needs TESSERA_ACCESS_KEY and TESSERA_SECRET_KEY (every gateway of a cluster the same)"
                .into())
        }
    }
}

/// What decides whether the cores need a new topology.
type Fingerprint =
    ((Option<u64>, Option<(u64, crate::cluster_client::MovePhase)>), Vec<String>, BTreeMap<String, SocketAddr>);

fn fingerprint(t: &Topology) -> Fingerprint {
    (t.layout(), t.alive.iter().cloned().collect(), t.addrs.iter().map(|(k, v)| (k.clone(), *v)).collect())
}

/// Whether every partition has at least `k` live slots.
fn serviceable(t: &Topology) -> bool {
    t.read_placement()
        .is_some_and(|p| p.sets.iter().all(|set| set.iter().filter(|s| t.alive.contains(&s.node)).count() >= t.k))
}

async fn push_topology(handle: &RuntimeHandle, t: &Topology) {
    for core in 0..handle.cores() {
        let t = t.clone();
        let r = handle
            .submit(core, move |_| async move {
                CORE_CLUSTER.with(|c| {
                    if let Some(c) = c.borrow().as_ref() {
                        c.client.set_topology(t);
                    }
                })
            })
            .await;
        if let Err(e) = r {
            tracing::warn!(core, error = %e, "cannot hand the topology to a core");
        }
    }
}

async fn serve_control(etcd: &mut Cluster, req: ControlReq) {
    fn reply<T>(tx: flume::Sender<Result<T, String>>, r: Result<T, crate::cluster::ClusterError>) {
        let _ = tx.send(r.map_err(|e| e.to_string()));
    }
    match req {
        ControlReq::CreateBucket(name, tx) => reply(tx, etcd.create_bucket(&name).await),
        ControlReq::DeleteBucket(name, tx) => reply(tx, etcd.delete_bucket(&name).await),
        ControlReq::Bucket(name, tx) => reply(tx, etcd.bucket(&name).await),
        ControlReq::Buckets(tx) => reply(tx, etcd.buckets().await),
    }
}

pub fn run(opts: GatewayOptions) -> Result<(), String> {
    let secret = crate::wire::load_secret(opts.secret_file.as_deref())?;
    let credentials = credentials()?;
    let control = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the control runtime: {e}"))?;
    let clock = ViewClock::new();
    let (mut etcd, config, topology, buckets) = control.block_on(async {
        let mut c = Cluster::connect(&opts.etcd, &opts.cluster).await.map_err(|e| e.to_string())?;
        let started = Instant::now();
        let config = c.config().await.map_err(|e| e.to_string())?;
        let t = c.topology().await.map_err(|e| e.to_string())?;
        clock.refreshed(started);
        let b = c.buckets().await.map_err(|e| e.to_string())?;
        Ok::<_, String>((c, config, t, b))
    })?;
    let topic = crate::node::commit_topic(&opts.cluster);
    let log = KafkaLog::start(&opts.kafka, &topic, config.partitions)
        .map_err(|e| format!("commit log {topic:?} on {}: {e}", opts.kafka))?;

    let (stop_tx, stop_rx) = flume::bounded::<i32>(1);
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            let _ = stop_tx.send(sig);
        }
    });

    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let rt = Runtime::start(RuntimeConfig {
        cores: opts.cores.unwrap_or(cpus),
        drives: vec![],
        pin: opts.pin,
        io_memory_bytes: opts.io_memory_bytes,
        objects: None,
        ..RuntimeConfig::default()
    })
    .map_err(|e| e.to_string())?;
    let handle = rt.handle();
    let (control_tx, control_rx) = flume::bounded::<ControlReq>(CONTROL_QUEUE_MAX);
    let cluster_shared =
        Arc::new(ClusterShared { control: control_tx, buckets: RwLock::new(buckets.into_iter().collect()) });
    let shared = Arc::new(Shared {
        credentials: credentials.clone(),
        deployment: None,
        vhost_domain: opts.vhost_domain.clone(),
        ready: AtomicBool::new(false),
        address: opts.listen,
    });
    let balances = crate::http::balance(handle.cores(), crate::http::CONNECTIONS_PER_CORE_MAX_DEFAULT);
    for (core, balance) in balances.into_iter().enumerate() {
        let (shared, cs, t, secret, appender, clock) =
            (shared.clone(), cluster_shared.clone(), topology.clone(), secret.clone(), log.appender(), clock.clone());
        let r = handle.submit_blocking(core, move |cx| async move {
            let client = ClusterClient::new(t, secret, appender).fenced(clock);
            let cc = Rc::new(ClusterCx { client, shared: cs });
            CORE_CLUSTER.with(|c| *c.borrow_mut() = Some(cc.clone()));
            crate::s3::service::start(cx, shared, Some(cc), balance)
        });
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = rt.stop();
                return Err(format!("cannot listen on {}: {e}", opts.listen));
            }
            Err(e) => {
                let _ = rt.stop();
                return Err(e.to_string());
            }
        }
    }
    println!("tessera {} S3 gateway of cluster {:?}", env!("CARGO_PKG_VERSION"), opts.cluster);
    println!("  cores     {} glommio executors serving S3", handle.cores());
    println!("  cluster   RS {}+{}, {} partitions; etcd {}", config.k, config.m, config.partitions, opts.etcd);
    println!("  log       Kafka topic {topic:?} on {}", opts.kafka);
    println!("  s3        http://{}", opts.listen);
    println!("  access key {}", credentials.access_key);

    let mut current = fingerprint(&topology);
    let mut ready = false;
    let mut last = topology;
    let sig = control.block_on(async {
        let mut tick = tokio::time::interval(REFRESH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if !ready {
                if serviceable(&last) {
                    ready = true;
                    shared.ready.store(true, Ordering::Release);
                    println!("ready");
                } else {
                    tracing::info!("waiting for the cluster: a placement and k live slots in every partition");
                }
            }
            tokio::select! {
                sig = stop_rx.recv_async() => return sig.ok(),
                req = control_rx.recv_async() => {
                    if let Ok(req) = req {
                        serve_control(&mut etcd, req).await;
                    }
                    continue;
                }
                _ = tick.tick() => {}
            }
            let started = Instant::now();
            match etcd.topology().await {
                Ok(t) => {
                    let f = fingerprint(&t);
                    if f != current {
                        push_topology(&handle, &t).await;
                        current = f;
                    }
                    // The cores' views are as young as this read (any change is with them).
                    clock.refreshed(started);
                    last = t;
                }
                Err(e) => tracing::warn!(error = %e, "cannot read the topology; keeping the last one"),
            }
            match etcd.buckets().await {
                Ok(b) => *cluster_shared.buckets.write().expect("not poisoned") = b.into_iter().collect(),
                Err(e) => tracing::warn!(error = %e, "cannot read the bucket catalogue"),
            }
        }
    });
    if let Some(sig) = sig {
        println!("signal {sig}: stopping");
    }
    shared.ready.store(false, Ordering::Release);
    drop(handle);
    rt.stop().map_err(|e| e.to_string())?;
    log.stop();
    println!("stopped");
    Ok(())
}
