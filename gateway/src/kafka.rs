//! The per-partition commit log on Kafka, for cluster mode (ARCHITECTURE.md §3, §6).
//!
//! Tessera partition `p` is Kafka partition `p` of one topic, created with the
//! cluster's partition count and never resized (a resize would remap keys). Records
//! are appended by an idempotent producer with `acks=all`; an append resolves to the
//! record's offset once the broker has acknowledged it. Consumers are assigned
//! partitions and start offsets by hand: no consumer group rebalancing and no
//! committed offsets, as each node stores the position it has applied.
//!
//! librdkafka brings threads of its own; its clients are owned by one non-pinned
//! control thread (`tessera-kafka`) that the cores reach through bounded flume
//! channels, so [`Appender::append`], [`KafkaLog::high_watermarks`] and
//! [`Consumer::recv`] can be awaited from a glommio executor (or any other).
//!
//! The control thread runs rdkafka's `FutureProducer` and `StreamConsumer` on a
//! tokio current-thread runtime rather than polling `BaseProducer`/`BaseConsumer`
//! in a loop: deliveries and fetched records wake it up, so there is no poll
//! interval to trade between latency and idle CPU, and a full record channel
//! back-pressures a consumer by simply not awaiting its next record.
//!
//! tansu 0.6 (the broker of the tests) answers a fetch with the batches that
//! *start* at or after the requested offset, where Kafka answers with the batch
//! that contains it, so a consumer starting in the middle of a batch would miss
//! the rest of it. Producer batches are therefore capped at [`BATCH_RECORDS_MAX`]
//! records, and a consumer starts up to that many records early (never below the
//! log's start) and skips what precedes the requested offset: on Kafka this costs
//! re-reading a few small records. Offsets in this topic are dense (no compaction,
//! no transactions), so a record past the expected offset is reported as
//! [`KafkaError::Gap`], never skipped silently. tansu 0.6 also answers ListOffsets
//! (latest) with the newest batch's *first* offset + 1, so against it
//! [`KafkaLog::high_watermarks`] falls short when that batch holds several records;
//! and it answers a fetch past the log's end with nothing, not an error.
//!
//! Limits: [`START_TIMEOUT`] to reach the brokers and ready the topic,
//! [`DELIVERY_TIMEOUT`] per append, [`APPENDS_IN_FLIGHT_MAX`] appends awaiting
//! acknowledgement, [`RECORD_BYTES_MAX`] per record, [`RECORDS_QUEUED_MAX`] records
//! fetched ahead of a slow applier (plus librdkafka's own bounded prefetch).
use std::collections::HashMap;
use std::future::Future;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::error::{KafkaError as RdError, RDKafkaErrorCode};
use rdkafka::message::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};
use tokio::task::JoinSet;

/// Reaching the brokers and creating or checking the topic gives up after this long.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// An append not acknowledged by then fails with [`KafkaError::Timeout`]
/// (librdkafka's `message.timeout.ms`: retries happen within it).
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on one request to the control thread that is not an append (assigning a
/// consumer, reading watermarks).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Appends still pending at stop are given this long to be acknowledged.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// Appends awaiting acknowledgement; more wait in the request channel.
pub const APPENDS_IN_FLIGHT_MAX: usize = 4096;
/// Requests queued for the control thread; a full queue makes `append` wait.
pub const REQUESTS_QUEUED_MAX: usize = 1024;
/// Records a consumer fetches ahead of its reader.
pub const RECORDS_QUEUED_MAX: usize = 1024;
/// Key plus payload of one record: commit records are small, and librdkafka's and
/// the brokers' default message size limit is about 1 MB.
pub const RECORD_BYTES_MAX: usize = 512 * 1024;
/// Records of one partition in one producer batch (librdkafka's
/// `batch.num.messages`), and how far before the requested offset a consumer
/// starts; see the module doc.
pub const BATCH_RECORDS_MAX: u64 = 64;
/// Partitions of the topic (Kafka's limits are far higher; Tessera uses hundreds).
pub const PARTITIONS_MAX: u32 = 4096;
/// Kafka's own limit on topic names.
const TOPIC_NAME_BYTES_MAX: usize = 249;

const _: () = assert!(APPENDS_IN_FLIGHT_MAX < 100_000, "below librdkafka's queue.buffering.max.messages");
const _: () = assert!(PARTITIONS_MAX <= i32::MAX as u32);

#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("cannot reach the Kafka brokers {brokers}: {why}")]
    Unreachable { brokers: String, why: String },
    #[error("{what}: no answer within {after_ms} ms")]
    Timeout { what: &'static str, after_ms: u64 },
    #[error("partition {partition} does not exist: the log has {partitions} partitions")]
    BadPartition { partition: u32, partitions: u32 },
    #[error(
        "topic {topic:?} exists with {existing} partitions, but this cluster has {wanted}: \
         a topic's partition count never changes (Tessera partition = Kafka partition)"
    )]
    PartitionCount { topic: String, existing: u32, wanted: u32 },
    #[error("record of {bytes} bytes (key + payload): the limit is {RECORD_BYTES_MAX}")]
    TooLarge { bytes: usize },
    #[error("consumer: {0} (the requested offset is not in the log)")]
    OffsetOutOfRange(String),
    #[error("partition {partition}: record at offset {got} where {expected} was expected: records are missing")]
    Gap { partition: u32, expected: u64, got: u64 },
    #[error("{0}")]
    Invalid(String),
    /// librdkafka counts a retried batch that the broker calls a duplicate as
    /// delivered, without an offset: the record is in the log, its position unknown.
    #[error(
        "partition {partition}: the record is stored (a retry was taken as a duplicate) but its offset is unknown"
    )]
    OffsetUnknown { partition: u32 },
    #[error("Kafka: {0}")]
    Broker(String),
    #[error("the Kafka log is stopped")]
    Stopped,
}

pub type KafkaResult<T> = Result<T, KafkaError>;

/// One record of the log, as a consumer reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub partition: u32,
    pub offset: u64,
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
}

type Reply<T> = flume::Sender<KafkaResult<T>>;

/// What the cores ask of the control thread.
enum Request {
    Append {
        partition: u32,
        key: Vec<u8>,
        payload: Vec<u8>,
        reply: Reply<u64>,
    },
    Consume {
        from: Vec<(u32, u64)>,
        records: flume::Sender<KafkaResult<Record>>,
        stop: flume::Receiver<()>,
        reply: Reply<()>,
    },
    HighWatermarks {
        partitions: Vec<u32>,
        reply: Reply<Vec<u64>>,
    },
}

/// The commit log of one cluster: one topic, its control thread and clients.
/// Dropping it stops the thread, as [`KafkaLog::stop`] does.
pub struct KafkaLog {
    requests: flume::Sender<Request>,
    /// Dropped to tell the control thread to stop.
    stop: Option<flume::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    topic: String,
    partitions: u32,
}

/// Appends records; cheap to clone, one per core.
#[derive(Clone)]
pub struct Appender {
    requests: flume::Sender<Request>,
    partitions: u32,
}

/// Records of the assigned partitions, each partition in log order. Dropping it
/// stops the consumption.
pub struct Consumer {
    records: flume::Receiver<KafkaResult<Record>>,
    /// Never sent on: its drop tells the control thread to stop consuming.
    _stop: flume::Sender<()>,
}

/// Kafka topic names: 1-249 of `a-z A-Z 0-9 . _ -`, not `.` or `..`.
pub fn check_topic(topic: &str) -> KafkaResult<()> {
    let ok = !topic.is_empty()
        && topic.len() <= TOPIC_NAME_BYTES_MAX
        && topic != "."
        && topic != ".."
        && topic.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(KafkaError::Invalid(format!("topic name {topic:?}: 1-{TOPIC_NAME_BYTES_MAX} of a-z A-Z 0-9 . _ -")))
    }
}

fn check_partition(partition: u32, partitions: u32) -> KafkaResult<()> {
    if partition < partitions {
        Ok(())
    } else {
        Err(KafkaError::BadPartition { partition, partitions })
    }
}

fn check_start_args(brokers: &str, topic: &str, partitions: u32) -> KafkaResult<()> {
    if brokers.split(',').all(|b| b.trim().is_empty()) {
        return Err(KafkaError::Invalid("--kafka needs at least one broker (HOST:PORT)".into()));
    }
    check_topic(topic)?;
    if partitions == 0 || partitions > PARTITIONS_MAX {
        return Err(KafkaError::Invalid(format!("{partitions} partitions: must be 1..={PARTITIONS_MAX}")));
    }
    Ok(())
}

fn check_from(from: &[(u32, u64)], partitions: u32) -> KafkaResult<()> {
    if from.is_empty() {
        return Err(KafkaError::Invalid("consume: no partitions given".into()));
    }
    let mut seen = vec![false; partitions as usize];
    for &(partition, offset) in from {
        check_partition(partition, partitions)?;
        if std::mem::replace(&mut seen[partition as usize], true) {
            return Err(KafkaError::Invalid(format!("consume: partition {partition} given twice")));
        }
        if offset > i64::MAX as u64 {
            return Err(KafkaError::Invalid(format!("consume: offset {offset} of partition {partition}")));
        }
    }
    Ok(())
}

fn check_record(partition: u32, partitions: u32, key: &[u8], payload: &[u8]) -> KafkaResult<()> {
    check_partition(partition, partitions)?;
    let bytes = key.len() + payload.len();
    if bytes > RECORD_BYTES_MAX {
        return Err(KafkaError::TooLarge { bytes });
    }
    Ok(())
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// Sends `request` and awaits its reply, from any runtime.
async fn call<T>(
    requests: &flume::Sender<Request>,
    request: Request,
    reply: flume::Receiver<KafkaResult<T>>,
) -> KafkaResult<T> {
    requests.send_async(request).await.map_err(|_| KafkaError::Stopped)?;
    // A dropped reply sender means the control thread stopped before answering.
    reply.recv_async().await.map_err(|_| KafkaError::Stopped)?
}

impl KafkaLog {
    /// Starts the control thread, reaches the brokers (`brokers`: comma-separated
    /// HOST:PORT), and creates `topic` with `partitions` partitions unless it exists,
    /// in which case its partition count must be `partitions`. Blocks until the topic
    /// is ready, at most [`START_TIMEOUT`] (and a little).
    pub fn start(brokers: &str, topic: &str, partitions: u32) -> KafkaResult<KafkaLog> {
        check_start_args(brokers, topic, partitions)?;
        let (requests, requests_rx) = flume::bounded(REQUESTS_QUEUED_MAX);
        let (stop, stop_rx) = flume::bounded::<()>(1);
        let (ready, ready_rx) = flume::bounded::<KafkaResult<()>>(1);
        let control = Control { brokers: brokers.to_string(), topic: topic.to_string(), partitions };
        let thread = std::thread::Builder::new()
            .name("tessera-kafka".into())
            .spawn(move || control.run(requests_rx, stop_rx, ready))
            .map_err(|e| KafkaError::Broker(format!("cannot start the control thread: {e}")))?;
        let log = KafkaLog { requests, stop: Some(stop), thread: Some(thread), topic: topic.to_string(), partitions };
        // Every step on the control thread is bounded by START_TIMEOUT; this bound only
        // catches a client that ignores its timeout.
        let backstop = START_TIMEOUT + Duration::from_secs(5);
        match ready_rx.recv_timeout(backstop) {
            Ok(Ok(())) => Ok(log),
            Ok(Err(e)) => Err(e),
            Err(flume::RecvTimeoutError::Timeout) => {
                // Detached, not joined: it is stuck in a client. It ends by itself,
                // as its `ready` send fails.
                let mut log = log;
                drop(log.thread.take());
                Err(KafkaError::Timeout { what: "starting the Kafka log", after_ms: ms(backstop) })
            }
            Err(flume::RecvTimeoutError::Disconnected) => Err(KafkaError::Stopped),
        }
        // On error `log` drops here, which stops and joins the thread (it has
        // returned already).
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    pub fn appender(&self) -> Appender {
        Appender { requests: self.requests.clone(), partitions: self.partitions }
    }

    /// Consumes the given partitions, each from its next offset to read (the
    /// position the caller has applied). Records arrive in log order per partition,
    /// starting exactly there. An offset below the log's start (records deleted by
    /// retention) is refused with [`KafkaError::OffsetOutOfRange`]; one past its end
    /// is reported so through the consumer by Kafka (not by tansu 0.6, which just
    /// sends nothing). Blocks until the partitions are assigned, at
    /// most [`REQUEST_TIMEOUT`] (and a little): call it at start-up, not on the data
    /// path.
    pub fn consume(&self, from: Vec<(u32, u64)>) -> KafkaResult<Consumer> {
        check_from(&from, self.partitions)?;
        let (records, records_rx) = flume::bounded(RECORDS_QUEUED_MAX);
        let (stop, stop_rx) = flume::bounded(1);
        let (reply, reply_rx) = flume::bounded(1);
        let request = Request::Consume { from, records, stop: stop_rx, reply };
        self.requests.send_timeout(request, REQUEST_TIMEOUT).map_err(|e| match e {
            flume::SendTimeoutError::Timeout(_) => {
                KafkaError::Timeout { what: "queueing a consume request", after_ms: ms(REQUEST_TIMEOUT) }
            }
            flume::SendTimeoutError::Disconnected(_) => KafkaError::Stopped,
        })?;
        // The control thread bounds its work by REQUEST_TIMEOUT; this only catches a
        // client that ignores its timeout.
        let backstop = REQUEST_TIMEOUT + Duration::from_secs(2);
        match reply_rx.recv_timeout(backstop) {
            Ok(Ok(())) => Ok(Consumer { records: records_rx, _stop: stop }),
            Ok(Err(e)) => Err(e),
            Err(flume::RecvTimeoutError::Timeout) => {
                Err(KafkaError::Timeout { what: "assigning partitions", after_ms: ms(backstop) })
            }
            Err(flume::RecvTimeoutError::Disconnected) => Err(KafkaError::Stopped),
        }
    }

    /// The next offset to be written in each of `partitions` (the log's end), in the
    /// order given: a consumer that has read up to there is caught up. Awaitable from
    /// any runtime; bounded by [`REQUEST_TIMEOUT`] in all. Against tansu 0.6 it can
    /// fall short by up to [`BATCH_RECORDS_MAX`] - 1 (see the module doc).
    pub fn high_watermarks(&self, partitions: &[u32]) -> impl Future<Output = KafkaResult<Vec<u64>>> + Send + 'static {
        let requests = self.requests.clone();
        let checked = partitions.iter().try_for_each(|&p| check_partition(p, self.partitions));
        let partitions = partitions.to_vec();
        async move {
            checked?;
            let (reply, reply_rx) = flume::bounded(1);
            call(&requests, Request::HighWatermarks { partitions, reply }, reply_rx).await
        }
    }

    /// Stops the control thread: appends still pending get up to [`FLUSH_TIMEOUT`]
    /// to be acknowledged, consumers end, later calls fail with
    /// [`KafkaError::Stopped`].
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the Kafka control thread panicked");
            }
        }
    }
}

impl Drop for KafkaLog {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Appender {
    /// Appends a record to `partition` and resolves to its offset there once the
    /// brokers have acknowledged it (`acks=all`), or to an error after at most
    /// [`DELIVERY_TIMEOUT`] (plus the wait for a place in the request queue).
    /// Awaitable from any runtime.
    pub fn append(
        &self,
        partition: u32,
        key: Vec<u8>,
        payload: Vec<u8>,
    ) -> impl Future<Output = KafkaResult<u64>> + Send + 'static {
        let requests = self.requests.clone();
        let checked = check_record(partition, self.partitions, &key, &payload);
        async move {
            checked?;
            let (reply, reply_rx) = flume::bounded(1);
            call(&requests, Request::Append { partition, key, payload, reply }, reply_rx).await
        }
    }

    pub fn partitions(&self) -> u32 {
        self.partitions
    }
}

impl Consumer {
    /// The next record; [`KafkaError::Stopped`] once the log is stopped. Awaitable
    /// from any runtime.
    pub async fn recv(&self) -> KafkaResult<Record> {
        self.records.recv_async().await.map_err(|_| KafkaError::Stopped)?
    }

    /// The next record, waiting at most `timeout` (`Ok(None)` then). Blocks the thread.
    pub fn recv_timeout(&self, timeout: Duration) -> KafkaResult<Option<Record>> {
        match self.records.recv_timeout(timeout) {
            Ok(r) => r.map(Some),
            Err(flume::RecvTimeoutError::Timeout) => Ok(None),
            Err(flume::RecvTimeoutError::Disconnected) => Err(KafkaError::Stopped),
        }
    }

    /// The next record if one is queued.
    pub fn try_recv(&self) -> KafkaResult<Option<Record>> {
        match self.records.try_recv() {
            Ok(r) => r.map(Some),
            Err(flume::TryRecvError::Empty) => Ok(None),
            Err(flume::TryRecvError::Disconnected) => Err(KafkaError::Stopped),
        }
    }
}

/// What the control thread owns.
struct Control {
    brokers: String,
    topic: String,
    partitions: u32,
}

/// The librdkafka settings every client shares.
fn base_config(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("client.id", "tessera")
        // The topic is created here with the cluster's partition count, never by a
        // broker's auto-creation with its default count.
        .set("allow.auto.create.topics", "false")
        .set("socket.timeout.ms", "5000");
    c
}

fn rd_why(e: &RdError) -> String {
    e.to_string()
}

/// Maps a delivery failure to the error `append` reports.
fn delivery_error(e: &RdError, brokers: &str, partition: u32, partitions: u32) -> KafkaError {
    match e.rdkafka_error_code() {
        Some(RDKafkaErrorCode::MessageTimedOut) => {
            KafkaError::Timeout { what: "append (delivery)", after_ms: ms(DELIVERY_TIMEOUT) }
        }
        Some(RDKafkaErrorCode::UnknownPartition) => KafkaError::BadPartition { partition, partitions },
        Some(RDKafkaErrorCode::AllBrokersDown) => {
            KafkaError::Unreachable { brokers: brokers.to_string(), why: rd_why(e) }
        }
        Some(RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight) => KafkaError::Stopped,
        _ => KafkaError::Broker(rd_why(e)),
    }
}

/// The topic as the brokers' metadata shows it.
enum TopicState {
    Missing,
    Exists(u32),
    /// Being created, leader elections, ...: ask again.
    NotReady(String),
}

impl Control {
    fn run(self, requests: flume::Receiver<Request>, stop: flume::Receiver<()>, ready: flume::Sender<KafkaResult<()>>) {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_time().build() {
            Ok(rt) => rt,
            Err(e) => {
                let _ = ready.send(Err(KafkaError::Broker(format!("cannot build the control runtime: {e}"))));
                return;
            }
        };
        let producer = match rt.block_on(self.open()) {
            Ok(p) => p,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        if ready.send(Ok(())).is_err() {
            return; // `start` gave up waiting.
        }
        tracing::info!(topic = %self.topic, partitions = self.partitions, brokers = %self.brokers, "Kafka log ready");
        rt.block_on(self.serve(&producer, requests, stop));
        // Tasks still running (consumers, watermark reads) end with the runtime.
        rt.shutdown_timeout(Duration::from_secs(1));
        if let Err(e) = producer.flush(Duration::from_millis(500)) {
            tracing::warn!("Kafka producer flush at stop: {e}");
        }
    }

    /// Reaches the brokers, readies the topic, and makes the producer.
    async fn open(&self) -> KafkaResult<FutureProducer> {
        let deadline = Instant::now() + START_TIMEOUT;
        let unreachable = |why: String| KafkaError::Unreachable { brokers: self.brokers.clone(), why };
        let producer: FutureProducer = base_config(&self.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", ms(DELIVERY_TIMEOUT).to_string())
            .set("request.timeout.ms", "5000")
            // A PUT waits for its commit record: linger little; batches still form
            // from the requests in flight.
            .set("linger.ms", "1")
            .set("batch.num.messages", BATCH_RECORDS_MAX.to_string())
            .create()
            .map_err(|e| KafkaError::Invalid(format!("Kafka producer: {e}")))?;
        let admin: AdminClient<DefaultClientContext> =
            base_config(&self.brokers).create().map_err(|e| KafkaError::Invalid(format!("Kafka admin client: {e}")))?;
        let mut created = false;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(KafkaError::Timeout { what: "readying the topic", after_ms: ms(START_TIMEOUT) });
            }
            // Blocking, bounded by `left`; nothing else runs on this thread yet.
            let metadata =
                producer.client().fetch_metadata(Some(&self.topic), left).map_err(|e| unreachable(rd_why(&e)))?;
            let state = match metadata.topics().iter().find(|t| t.name() == self.topic) {
                None => TopicState::Missing,
                Some(t) => match t.error() {
                    None if !t.partitions().is_empty() => TopicState::Exists(t.partitions().len() as u32),
                    None => TopicState::NotReady("no partitions yet".into()),
                    Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) => TopicState::Missing,
                    Some(e) => TopicState::NotReady(format!("{e:?}")),
                },
            };
            match state {
                TopicState::Exists(existing) if existing == self.partitions => return Ok(producer),
                TopicState::Exists(existing) => {
                    return Err(KafkaError::PartitionCount {
                        topic: self.topic.clone(),
                        existing,
                        wanted: self.partitions,
                    })
                }
                TopicState::Missing if !created => {
                    self.create_topic(&admin, left).await?;
                    created = true;
                }
                TopicState::Missing | TopicState::NotReady(_) => {
                    if let TopicState::NotReady(why) = state {
                        tracing::debug!(topic = %self.topic, "topic not ready: {why}");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    async fn create_topic(&self, admin: &AdminClient<DefaultClientContext>, left: Duration) -> KafkaResult<()> {
        // -1: the brokers' default replication factor, which their operator sets.
        let new = NewTopic::new(&self.topic, self.partitions as i32, TopicReplication::Fixed(-1));
        let opts = AdminOptions::new().request_timeout(Some(left)).operation_timeout(Some(left));
        let results = tokio::time::timeout(left, admin.create_topics([&new], &opts))
            .await
            .map_err(|_| KafkaError::Timeout { what: "creating the topic", after_ms: ms(left) })?
            .map_err(|e| KafkaError::Broker(format!("creating topic {:?}: {e}", self.topic)))?;
        for result in results {
            match result {
                Ok(_) => tracing::info!(topic = %self.topic, partitions = self.partitions, "created the Kafka topic"),
                // Another node created it meanwhile: its count is checked next.
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => return Err(KafkaError::Broker(format!("creating topic {:?}: {code}", self.topic))),
            }
        }
        Ok(())
    }

    /// Answers requests until told to stop, then gives pending appends
    /// [`FLUSH_TIMEOUT`].
    async fn serve(&self, producer: &FutureProducer, requests: flume::Receiver<Request>, stop: flume::Receiver<()>) {
        let mut appends = JoinSet::new();
        let mut others = JoinSet::new();
        loop {
            tokio::select! {
                // Disconnected: the KafkaLog was stopped or dropped.
                _ = stop.recv_async() => break,
                request = requests.recv_async(), if appends.len() < APPENDS_IN_FLIGHT_MAX => {
                    let Ok(request) = request else { break };
                    self.handle(producer, request, &mut appends, &mut others);
                }
                Some(_) = appends.join_next(), if !appends.is_empty() => {}
                Some(_) = others.join_next(), if !others.is_empty() => {}
            }
        }
        let flushed = tokio::time::timeout(FLUSH_TIMEOUT, async { while appends.join_next().await.is_some() {} }).await;
        if flushed.is_err() {
            tracing::warn!(pending = appends.len(), "Kafka log stopped with appends not acknowledged");
        }
        // Dropping the sets aborts the consumers and the pending appends (their
        // callers see `Stopped`).
    }

    fn handle(&self, producer: &FutureProducer, request: Request, appends: &mut JoinSet<()>, others: &mut JoinSet<()>) {
        match request {
            Request::Append { partition, key, payload, reply } => {
                let producer = producer.clone();
                let topic = self.topic.clone();
                let brokers = self.brokers.clone();
                let partitions = self.partitions;
                appends.spawn(async move {
                    let record = FutureRecord::to(&topic).partition(partition as i32).key(&key).payload(&payload);
                    // Appends in flight stay far below librdkafka's queue bound, so a
                    // full queue is not waited for.
                    let result = match producer.send(record, Duration::ZERO).await {
                        Ok(delivery) => {
                            assert_eq!(delivery.partition, partition as i32, "delivered to another partition");
                            u64::try_from(delivery.offset).map_err(|_| KafkaError::OffsetUnknown { partition })
                        }
                        Err((e, _)) => Err(delivery_error(&e, &brokers, partition, partitions)),
                    };
                    // A caller that stopped waiting dropped its receiver: nothing to tell.
                    let _ = reply.send(result);
                });
            }
            Request::Consume { from, records, stop, reply } => {
                let producer = producer.clone();
                let (brokers, topic) = (self.brokers.clone(), self.topic.clone());
                others.spawn(async move {
                    // Watermark reads block: off this thread.
                    let assigned = tokio::task::spawn_blocking(move || {
                        assign(&producer, &brokers, &topic, &from).map(|c| (c, from))
                    })
                    .await
                    .unwrap_or_else(|e| Err(KafkaError::Broker(format!("assigning partitions: {e}"))));
                    match assigned {
                        Ok((consumer, from)) => {
                            if reply.send(Ok(())).is_ok() {
                                consume(consumer, from, records, stop).await;
                            }
                        }
                        Err(e) => {
                            let _ = reply.send(Err(e));
                        }
                    }
                });
            }
            Request::HighWatermarks { partitions, reply } => {
                let producer = producer.clone();
                let topic = self.topic.clone();
                others.spawn(async move {
                    // rd_kafka_query_watermark_offsets blocks: off this thread.
                    let read = tokio::task::spawn_blocking(move || {
                        let marks = watermarks(&producer, &topic, &partitions)?;
                        Ok(marks.into_iter().map(|(_, high)| high).collect())
                    });
                    let result = read.await.unwrap_or_else(|e| Err(KafkaError::Broker(format!("watermarks: {e}"))));
                    let _ = reply.send(result);
                });
            }
        }
    }
}

/// `(low, high)` watermarks of `partitions`: the log's first offset and the next
/// one to be written. Blocks, at most [`REQUEST_TIMEOUT`] in all.
fn watermarks(producer: &FutureProducer, topic: &str, partitions: &[u32]) -> KafkaResult<Vec<(u64, u64)>> {
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let mut marks = Vec::with_capacity(partitions.len());
    for &p in partitions {
        let left = deadline.saturating_duration_since(Instant::now());
        let (low, high) =
            producer.client().fetch_watermarks(topic, p as i32, left).map_err(|e| match e.rdkafka_error_code() {
                Some(RDKafkaErrorCode::OperationTimedOut) => {
                    KafkaError::Timeout { what: "reading watermarks", after_ms: ms(REQUEST_TIMEOUT) }
                }
                _ => KafkaError::Broker(format!("watermarks of partition {p}: {e}")),
            })?;
        let (Ok(low), Ok(high)) = (u64::try_from(low), u64::try_from(high)) else {
            return Err(KafkaError::Broker(format!("watermarks ({low}, {high}) of partition {p}")));
        };
        marks.push((low, high));
    }
    Ok(marks)
}

/// A consumer of its own (one librdkafka client) assigned `from`, each partition
/// up to [`BATCH_RECORDS_MAX`] records early (see the module doc). Blocks, at most
/// about [`REQUEST_TIMEOUT`].
fn assign(producer: &FutureProducer, brokers: &str, topic: &str, from: &[(u32, u64)]) -> KafkaResult<StreamConsumer> {
    let partitions: Vec<u32> = from.iter().map(|&(p, _)| p).collect();
    let marks = watermarks(producer, topic, &partitions)?;
    let consumer: StreamConsumer = base_config(brokers)
        // librdkafka's assign() needs a group id; nothing is ever committed to it
        // and no rebalancing happens without subscribe().
        .set("group.id", format!("tessera-{topic}"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // An offset outside the log is an error the node must see, never a silent
        // jump to the start or the end.
        .set("auto.offset.reset", "error")
        // Bounds the wait for new records should a broker not wake fetches early.
        .set("fetch.wait.max.ms", "100")
        .set("queued.max.messages.kbytes", "16384")
        .create()
        .map_err(|e| KafkaError::Invalid(format!("Kafka consumer: {e}")))?;
    let mut list = TopicPartitionList::with_capacity(from.len());
    for (&(partition, offset), &(low, high)) in from.iter().zip(&marks) {
        // Not `offset > high`: tansu's `high` can fall short (see the module doc).
        if offset < low {
            return Err(KafkaError::OffsetOutOfRange(format!(
                "partition {partition}: offset {offset} is below the log's start {low} (high watermark {high})"
            )));
        }
        let start = offset.saturating_sub(BATCH_RECORDS_MAX - 1).max(low);
        // check_from bounded both.
        list.add_partition_offset(topic, partition as i32, Offset::Offset(start as i64))
            .map_err(|e| KafkaError::Broker(format!("assigning partition {partition}: {e}")))?;
    }
    consumer.assign(&list).map_err(|e| KafkaError::Broker(format!("assigning partitions: {e}")))?;
    Ok(consumer)
}

/// Feeds `records` from `consumer` until the reader drops its [`Consumer`] or a
/// fatal error is reported.
async fn consume(
    consumer: StreamConsumer,
    from: Vec<(u32, u64)>,
    records: flume::Sender<KafkaResult<Record>>,
    stop: flume::Receiver<()>,
) {
    let mut next: HashMap<u32, u64> = from.into_iter().collect();
    loop {
        let received = tokio::select! {
            _ = stop.recv_async() => return,
            m = consumer.recv() => m,
        };
        let item = match received {
            Ok(m) => {
                let partition = m.partition() as u32;
                let offset = m.offset() as u64;
                let Some(expected) = next.get_mut(&partition) else {
                    tracing::error!(partition, "record of a partition not assigned");
                    continue;
                };
                // Below the position: read again on purpose (the early start) or
                // after a broker error; delivered already or not wanted.
                if offset < *expected {
                    continue;
                }
                if offset > *expected {
                    Err(KafkaError::Gap { partition, expected: *expected, got: offset })
                } else {
                    *expected = offset + 1;
                    Ok(Record {
                        partition,
                        offset,
                        key: m.key().unwrap_or_default().to_vec(),
                        payload: m.payload().unwrap_or_default().to_vec(),
                    })
                }
            }
            Err(e) => match e.rdkafka_error_code() {
                Some(RDKafkaErrorCode::AutoOffsetReset | RDKafkaErrorCode::OffsetOutOfRange) => {
                    Err(KafkaError::OffsetOutOfRange(e.to_string()))
                }
                _ if matches!(e, RdError::MessageConsumptionFatal(_)) => Err(KafkaError::Broker(e.to_string())),
                // Transient (a broker restarting): librdkafka retries by itself.
                _ => {
                    tracing::warn!("Kafka consumer: {e}");
                    continue;
                }
            },
        };
        let fatal = item.is_err();
        tokio::select! {
            _ = stop.recv_async() => return,
            sent = records.send_async(item) => if sent.is_err() { return },
        }
        if fatal {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_arguments_are_checked_before_any_thread_starts() {
        let e = |r: KafkaResult<KafkaLog>| r.err().expect("refused").to_string();
        assert!(e(KafkaLog::start("", "t", 8)).contains("at least one broker"));
        assert!(e(KafkaLog::start(" , ", "t", 8)).contains("at least one broker"));
        assert!(e(KafkaLog::start("127.0.0.1:1", "", 8)).contains("topic name"));
        assert!(e(KafkaLog::start("127.0.0.1:1", "a/b", 8)).contains("topic name"));
        assert!(e(KafkaLog::start("127.0.0.1:1", "..", 8)).contains("topic name"));
        assert!(e(KafkaLog::start("127.0.0.1:1", &"x".repeat(250), 8)).contains("topic name"));
        assert!(e(KafkaLog::start("127.0.0.1:1", "t", 0)).contains("partitions"));
        assert!(e(KafkaLog::start("127.0.0.1:1", "t", PARTITIONS_MAX + 1)).contains("partitions"));
    }

    #[test]
    fn topic_names() {
        for ok in ["tessera-default", "a", "A.b_c-9", &"x".repeat(249)] {
            check_topic(ok).unwrap();
        }
        for bad in ["", ".", "..", "a b", "é", "a:b", &"x".repeat(250)] {
            assert!(check_topic(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn records_are_checked() {
        check_record(7, 8, b"k", b"v").unwrap();
        assert!(matches!(
            check_record(8, 8, b"k", b"v"),
            Err(KafkaError::BadPartition { partition: 8, partitions: 8 })
        ));
        check_record(0, 8, &[0; 16], &vec![0; RECORD_BYTES_MAX - 16]).unwrap();
        assert!(matches!(
            check_record(0, 8, &[0; 16], &vec![0; RECORD_BYTES_MAX - 15]),
            Err(KafkaError::TooLarge { bytes }) if bytes == RECORD_BYTES_MAX + 1
        ));
    }

    #[test]
    fn consume_positions_are_checked() {
        check_from(&[(0, 0), (7, 5)], 8).unwrap();
        assert!(check_from(&[], 8).unwrap_err().to_string().contains("no partitions"));
        assert!(matches!(check_from(&[(8, 0)], 8), Err(KafkaError::BadPartition { partition: 8, .. })));
        assert!(check_from(&[(1, 0), (1, 3)], 8).unwrap_err().to_string().contains("twice"));
        assert!(check_from(&[(1, u64::MAX)], 8).is_err());
    }

    /// An appender whose control thread is gone reports `Stopped` and never hangs;
    /// a bad partition is refused before anything is sent.
    #[test]
    fn appender_without_a_control_thread() {
        let (requests, rx) = flume::bounded(1);
        let appender = Appender { requests, partitions: 4 };
        let r = futures::executor::block_on(appender.append(4, vec![], vec![]));
        assert!(matches!(r, Err(KafkaError::BadPartition { partition: 4, partitions: 4 })));
        assert!(rx.is_empty(), "nothing sent for a bad partition");
        // A control thread that drops the request without answering.
        let t = std::thread::spawn(move || drop(rx.recv()));
        let r = futures::executor::block_on(appender.append(0, b"k".to_vec(), b"v".to_vec()));
        assert!(matches!(r, Err(KafkaError::Stopped)), "{r:?}");
        t.join().unwrap();
        let r = futures::executor::block_on(appender.append(0, vec![], vec![]));
        assert!(matches!(r, Err(KafkaError::Stopped)), "{r:?}");
    }
}
