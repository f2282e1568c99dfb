//! The Kafka commit log against a real Kafka-compatible broker: tansu (installed by
//! scripts/install-deps.sh) with in-memory storage. Appends come from plain threads
//! and from a glommio executor, as the cores will make them.
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tessera_gateway::kafka::{Appender, Consumer, KafkaError, KafkaLog, Record};

#[path = "common/tansu.rs"]
mod tansu;
use tansu::{free_port, Tansu};

const PARTITIONS: u32 = 8;
const TOPIC: &str = "tessera-test";

/// (partition, offset) -> (key, payload) of every acknowledged append.
type Appended = BTreeMap<(u32, u64), (Vec<u8>, Vec<u8>)>;

/// Appends `per_partition` records to every partition, partitions concurrently and
/// each partition's appends one after the other, so their offsets must increase.
async fn append_all(appender: Appender, writer: &str, per_partition: u32) -> Appended {
    let chains = (0..PARTITIONS).map(|p| {
        let appender = appender.clone();
        let writer = writer.to_string();
        async move {
            let mut out = Vec::new();
            let mut last: Option<u64> = None;
            for seq in 0..per_partition {
                let key = format!("{writer}/p{p}/{seq}").into_bytes();
                let payload = format!("payload {writer} {p} {seq} ").repeat(1 + seq as usize % 7).into_bytes();
                let offset = appender.append(p, key.clone(), payload.clone()).await.expect("append");
                assert!(last.is_none_or(|l| offset > l), "{writer} p{p}: offset {offset} after {last:?}");
                last = Some(offset);
                out.push(((p, offset), (key, payload)));
            }
            out
        }
    });
    futures::future::join_all(chains).await.into_iter().flatten().collect()
}

/// Runs `f` on a glommio executor on a thread of its own, as a core would.
fn on_glommio<T: Send + 'static, F: std::future::Future<Output = T> + 'static>(
    f: impl FnOnce() -> F + Send + 'static,
) -> std::thread::JoinHandle<T> {
    std::thread::spawn(move || {
        let ex = glommio::LocalExecutorBuilder::default().io_memory(1 << 20).make().expect("executor");
        ex.run(f())
    })
}

/// Reads exactly `n` records, then checks that nothing more arrives.
fn read_exactly(consumer: &Consumer, n: usize) -> Vec<Record> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut out: Vec<Record> = Vec::with_capacity(n);
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let got: Vec<(u32, u64)> = out.iter().map(|r| (r.partition, r.offset)).collect();
            panic!("read {} of {n} records within 30 s: {got:?}", out.len());
        }
        if let Some(r) = consumer.recv_timeout(left).expect("consume") {
            out.push(r);
        }
    }
    let extra = consumer.recv_timeout(Duration::from_millis(500)).expect("consume");
    assert!(extra.is_none(), "more records than appended: {extra:?}");
    out
}

/// Checks `records` are exactly the `appended` ones with offset >= `from[p]`, each
/// partition in log order.
fn assert_tail(records: &[Record], appended: &Appended, from: &[(u32, u64)]) {
    let mut last: BTreeMap<u32, u64> = BTreeMap::new();
    for r in records {
        let (key, payload) = appended.get(&(r.partition, r.offset)).unwrap_or_else(|| panic!("not appended: {r:?}"));
        assert_eq!((&r.key, &r.payload), (key, payload), "p{} offset {}", r.partition, r.offset);
        if let Some(&l) = last.get(&r.partition) {
            assert!(r.offset > l, "p{}: offset {} after {l}", r.partition, r.offset);
        }
        last.insert(r.partition, r.offset);
    }
    let wanted = from.iter().map(|&(p, start)| appended.range((p, start)..(p + 1, 0)).count()).sum::<usize>();
    assert_eq!(records.len(), wanted, "every record from the requested offsets, once");
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    futures::executor::block_on(f)
}

#[test]
fn appends_are_dense_in_order_and_read_back_from_any_position() {
    let broker = Tansu::start();
    let log = KafkaLog::start(&broker.brokers, TOPIC, PARTITIONS).unwrap_or_else(|e| panic!("start: {e}"));
    assert_eq!(block_on(log.high_watermarks(&(0..PARTITIONS).collect::<Vec<_>>())).unwrap(), vec![0; 8]);

    // Three writers at once: one glommio executor, two plain threads.
    let per_writer = 15;
    let a = log.appender();
    let glommio = on_glommio(move || append_all(a, "glommio", per_writer));
    let threads: Vec<_> = ["t1", "t2"]
        .into_iter()
        .map(|w| {
            let a = log.appender();
            std::thread::spawn(move || block_on(append_all(a, w, per_writer)))
        })
        .collect();
    let mut appended = glommio.join().unwrap();
    for t in threads {
        appended.extend(t.join().unwrap());
    }
    // One more record alone per partition, so each newest batch holds one record:
    // tansu 0.6 reports the newest batch's first offset + 1 as the high watermark,
    // and under load the producer packs the writers' last appends into one batch.
    appended.extend(block_on(append_all(log.appender(), "alone", 1)));
    let per_partition = 3 * per_writer as u64 + 1;
    assert_eq!(appended.len() as u64, per_partition * PARTITIONS as u64, "one offset per append");
    for p in 0..PARTITIONS {
        let offsets: Vec<u64> = appended.range((p, 0)..(p + 1, 0)).map(|(&(_, o), _)| o).collect();
        assert_eq!(offsets, (0..per_partition).collect::<Vec<_>>(), "p{p}: dense offsets from 0");
    }
    let all: Vec<u32> = (0..PARTITIONS).collect();
    assert_eq!(block_on(log.high_watermarks(&all)).unwrap(), vec![per_partition; 8]);
    assert_eq!(block_on(log.high_watermarks(&[5, 2])).unwrap(), vec![per_partition; 2]);

    // From the start: everything, per partition in order.
    let from: Vec<(u32, u64)> = all.iter().map(|&p| (p, 0)).collect();
    let c = log.consume(from.clone()).expect("consume");
    assert_tail(&read_exactly(&c, appended.len()), &appended, &from);
    drop(c);

    // A burst of appends to one partition, all in flight at once, so the producer
    // packs many records per batch (resuming in the middle of a batch is the case a
    // broker can get wrong: tansu 0.6 does).
    let a = log.appender();
    let burst: Vec<_> = (0..200u32).map(|i| a.append(6, i.to_be_bytes().to_vec(), vec![b'b'; 300])).collect();
    let burst = block_on(futures::future::join_all(burst));
    let mut offsets: Vec<u64> = Vec::new();
    for (i, r) in burst.into_iter().enumerate() {
        let offset = r.expect("burst append");
        offsets.push(offset);
        appended.insert((6, offset), ((i as u32).to_be_bytes().to_vec(), vec![b'b'; 300]));
    }
    offsets.sort_unstable();
    assert_eq!(offsets, (per_partition..per_partition + 200).collect::<Vec<_>>(), "dense after the burst");
    // A last append on its own, so the newest batch holds one record: tansu 0.6
    // reports the newest batch's first offset + 1 as the high watermark.
    let offset = block_on(a.append(6, b"last".to_vec(), b"l".to_vec())).unwrap();
    assert_eq!(offset, per_partition + 200);
    appended.insert((6, offset), (b"last".to_vec(), b"l".to_vec()));
    let end6 = per_partition + 201;
    assert_eq!(block_on(log.high_watermarks(&[6])).unwrap(), vec![end6]);

    // From the middle, from the end, from the last record: exactly the tails.
    let from = vec![(3, 20), (5, per_partition), (0, per_partition - 1), (6, per_partition + 101)];
    let c = log.consume(from.clone()).expect("consume");
    assert_tail(&read_exactly(&c, (per_partition - 20) as usize + 1 + 100), &appended, &from);
    drop(c);
    for start in [end6 - 1, end6 - 2, per_partition + 1, per_partition + 63, per_partition + 64] {
        let c = log.consume(vec![(6, start)]).expect("consume");
        assert_tail(&read_exactly(&c, (end6 - start) as usize), &appended, &[(6, start)]);
    }

    // A consumer at the end sees later appends, made from a glommio executor.
    let c = log.consume(vec![(2, per_partition)]).expect("consume");
    let a = log.appender();
    let offset = on_glommio(move || async move { a.append(2, b"late".to_vec(), b"x".to_vec()).await }).join().unwrap();
    assert_eq!(offset.unwrap(), per_partition);
    let r = c.recv_timeout(Duration::from_secs(10)).unwrap().expect("the late record");
    assert_eq!((r.partition, r.offset, &r.key[..], &r.payload[..]), (2, per_partition, &b"late"[..], &b"x"[..]));
    appended.insert((2, per_partition), (b"late".to_vec(), b"x".to_vec()));
    drop(c);

    // Bad requests are refused before anything reaches the broker.
    assert!(matches!(block_on(log.appender().append(8, vec![], vec![])), Err(KafkaError::BadPartition { .. })));
    assert!(matches!(log.consume(vec![(8, 0)]), Err(KafkaError::BadPartition { .. })));
    assert!(matches!(block_on(log.high_watermarks(&[9])), Err(KafkaError::BadPartition { .. })));

    // An offset past the log's end: Kafka reports it through the consumer
    // (auto.offset.reset=error); tansu 0.6 sends nothing, which is all this checks.
    let c = log.consume(vec![(1, per_partition + 1)]).expect("consume");
    match c.recv_timeout(Duration::from_millis(500)) {
        Ok(None) | Err(KafkaError::OffsetOutOfRange(_)) => {}
        other => panic!("offset past the end: {other:?}"),
    }
    drop(c);

    // A restarted node: fresh clients on the same topic resume from its stored
    // position, and appends continue the offsets.
    let appender = log.appender();
    log.stop();
    assert!(matches!(block_on(appender.append(0, vec![], vec![])), Err(KafkaError::Stopped)));
    let log = KafkaLog::start(&broker.brokers, TOPIC, PARTITIONS).expect("restart");
    assert_eq!(block_on(log.high_watermarks(&[0, 2])).unwrap(), vec![per_partition, per_partition + 1]);
    let a = log.appender();
    let more = on_glommio(move || async move {
        let mut more = Appended::new();
        for i in 0..3u8 {
            let offset = a.append(0, vec![i], vec![i; 100]).await.expect("append after restart");
            more.insert((0, offset), (vec![i], vec![i; 100]));
        }
        more
    })
    .join()
    .unwrap();
    assert_eq!(
        more.keys().map(|&(_, o)| o).collect::<Vec<_>>(),
        (per_partition..per_partition + 3).collect::<Vec<_>>()
    );
    appended.extend(more);
    let from = vec![(0, per_partition - 2), (2, per_partition)];
    let c = log.consume(from.clone()).expect("consume after restart");
    assert_tail(&read_exactly(&c, 2 + 3 + 1), &appended, &from);
    drop(c);
    log.stop();
}

#[test]
fn a_topic_with_another_partition_count_is_refused() {
    let broker = Tansu::start();
    let log = KafkaLog::start(&broker.brokers, "tessera-fixed", PARTITIONS).expect("start");
    // Same count: accepted (another node, or a restart).
    let second = KafkaLog::start(&broker.brokers, "tessera-fixed", PARTITIONS).expect("same count");
    drop(second);
    for wrong in [4, 16] {
        match KafkaLog::start(&broker.brokers, "tessera-fixed", wrong) {
            Err(e @ KafkaError::PartitionCount { existing: 8, .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("exists with 8 partitions") && msg.contains(&format!("{wrong}")), "{msg}");
            }
            Err(e) => panic!("{wrong} partitions: wrong error {e}"),
            Ok(_) => panic!("{wrong} partitions: accepted a topic with 8"),
        }
    }
    // The refusal changed nothing.
    assert_eq!(block_on(log.appender().append(7, b"k".to_vec(), b"v".to_vec())).unwrap(), 0);
}

#[test]
fn an_unreachable_broker_is_an_error_not_a_hang() {
    // Nobody listens there.
    let t = Instant::now();
    let r = KafkaLog::start(&format!("127.0.0.1:{}", free_port()), TOPIC, PARTITIONS);
    let took = t.elapsed();
    match r {
        Err(e @ KafkaError::Unreachable { .. }) => assert!(e.to_string().contains("cannot reach"), "{e}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("started without a broker"),
    }
    assert!(took < Duration::from_secs(30), "start gave up after {took:?}");

    // The broker dies under a running log: appends and watermark reads fail in
    // bounded time, and the log still stops cleanly.
    let mut broker = Tansu::start();
    let log = KafkaLog::start(&broker.brokers, TOPIC, PARTITIONS).expect("start");
    assert_eq!(block_on(log.appender().append(1, b"k".to_vec(), b"v".to_vec())).unwrap(), 0);
    broker.kill();
    let t = Instant::now();
    let r = block_on(log.appender().append(1, b"k".to_vec(), b"v".to_vec()));
    let took = t.elapsed();
    assert!(r.is_err(), "append acknowledged by a dead broker: {r:?}");
    eprintln!("append with the broker gone: {} after {took:?}", r.unwrap_err());
    assert!(took < Duration::from_secs(30), "append gave up after {took:?}");
    let t = Instant::now();
    let r = block_on(log.high_watermarks(&[1]));
    assert!(r.is_err(), "watermarks from a dead broker: {r:?}");
    assert!(t.elapsed() < Duration::from_secs(30), "watermarks gave up after {:?}", t.elapsed());
    let t = Instant::now();
    log.stop();
    assert!(t.elapsed() < Duration::from_secs(15), "stop took {:?}", t.elapsed());
}
