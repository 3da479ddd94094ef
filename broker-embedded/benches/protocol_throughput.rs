//! Produce and consume throughput over the Kafka protocol with librdkafka (report-only).
//!
//! `cargo bench -p broker-embedded --bench protocol_throughput` (options after `--`:
//! `--quick`). The broker (in-process `KafkaServer`, fsync left to the OS) and the librdkafka
//! clients share this machine's cores, as they would on a developer laptop.
//!
//! Measures: produce records/s (100 B and 1 KiB values, acks=1 and acks=all, 1 and 8
//! partitions), consume records/s of what was produced, and end-to-end latency p50/p99 (send
//! to receive, from a timestamp carried in the value) at a fixed rate of 100k records/s.
//!
//! `--transactions`: instead, the transactional producer (`transactional.id`, a transaction
//! committed every 100 ms) against the idempotent producer, 100-byte values, 1 and 8
//! partitions, in one run; then a `read_committed` consumer of the transactional topic.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::{Duration, Instant};

use broker_embedded::{Broker, BrokerConfig, KafkaServer, NewTopic, ServerConfig};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

fn client(addr: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", addr)
        .set("partitioner", "murmur2_random");
    c
}

fn produce(
    addr: &str,
    topic: &str,
    n: usize,
    size: usize,
    acks: &str,
    linger_ms: &str,
) -> Duration {
    let p: ThreadedProducer<DefaultProducerContext> = client(addr)
        .set("acks", acks)
        .set("linger.ms", linger_ms)
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap();
    let value = vec![b'v'; size];
    let t = Instant::now();
    for i in 0..n {
        let key = (i as u64).to_be_bytes();
        let mut rec = BaseRecord::to(topic).key(&key[..]).payload(&value[..]);
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((_, r)) => {
                    p.poll(Duration::from_millis(1));
                    rec = r;
                }
            }
        }
    }
    p.flush(Duration::from_secs(120)).unwrap();
    assert_eq!(p.in_flight_count(), 0);
    t.elapsed()
}

/// Produces `n` records of `size` bytes with the idempotent producer, or (`transactional`)
/// in transactions committed every `txn_every`.
fn produce_idempotent_or_transactional(
    addr: &str,
    topic: &str,
    n: usize,
    size: usize,
    transactional: bool,
    txn_every: Duration,
) -> (Duration, usize) {
    let mut config = client(addr);
    config
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000");
    if transactional {
        config.set("transactional.id", format!("bench-{topic}"));
    }
    let p: ThreadedProducer<DefaultProducerContext> = config.create().unwrap();
    if transactional {
        p.init_transactions(Duration::from_secs(30)).unwrap();
        p.begin_transaction().unwrap();
    }
    let value = vec![b'v'; size];
    let t = Instant::now();
    let mut last_commit = Instant::now();
    let mut transactions = 0;
    for i in 0..n {
        if transactional && last_commit.elapsed() >= txn_every {
            p.commit_transaction(Duration::from_secs(60)).unwrap();
            transactions += 1;
            p.begin_transaction().unwrap();
            last_commit = Instant::now();
        }
        let key = (i as u64).to_be_bytes();
        let mut rec = BaseRecord::to(topic).key(&key[..]).payload(&value[..]);
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((_, r)) => {
                    p.poll(Duration::from_millis(1));
                    rec = r;
                }
            }
        }
    }
    if transactional {
        p.commit_transaction(Duration::from_secs(60)).unwrap();
        transactions += 1;
    }
    p.flush(Duration::from_secs(120)).unwrap();
    assert_eq!(p.in_flight_count(), 0);
    (t.elapsed(), transactions)
}

fn consume(addr: &str, topic: &str, partitions: i32, n: usize) -> Duration {
    consume_isolated(addr, topic, partitions, n, "read_uncommitted")
}

fn consume_isolated(
    addr: &str,
    topic: &str,
    partitions: i32,
    n: usize,
    isolation: &str,
) -> Duration {
    let c: BaseConsumer = client(addr)
        .set("group.id", "bench")
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "10485760")
        // librdkafka >= 2.1 backs fetching off for 1 s whenever its local queue holds more
        // than queued.min.messages; a consumer that keeps up should not wait on that.
        .set("fetch.queue.backoff.ms", "0")
        .set("queued.min.messages", "1000000")
        .set("isolation.level", isolation)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let t = Instant::now();
    let mut seen = 0;
    while seen < n {
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            m.unwrap();
            seen += 1;
        }
        assert!(
            t.elapsed() < Duration::from_secs(300),
            "consume stalled at {seen}/{n}"
        );
    }
    t.elapsed()
}

fn latency(addr: &str, topic: &str, rate: usize, secs: u64) -> (Duration, Duration, usize) {
    let consumer: BaseConsumer = client(addr)
        .set("group.id", "lat")
        .set("fetch.wait.max.ms", "5")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::End).unwrap();
    consumer.assign(&tpl).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let origin = Instant::now();
    let total = rate * secs as usize;
    let addr2 = addr.to_string();
    let topic2 = topic.to_string();
    let producer_thread = std::thread::spawn(move || {
        let p: ThreadedProducer<DefaultProducerContext> = client(&addr2)
            .set("acks", "1")
            .set("linger.ms", "1")
            .create()
            .unwrap();
        let per_ms = (rate / 1000).max(1);
        let mut sent = 0;
        while sent < total {
            let due = Duration::from_micros((sent as u64 * 1_000_000) / rate as u64);
            let now = origin.elapsed();
            if now < due {
                std::thread::sleep(due - now);
            }
            for _ in 0..per_ms.min(total - sent) {
                let payload = (origin.elapsed().as_nanos() as u64).to_be_bytes();
                let mut rec = BaseRecord::<[u8], [u8]>::to(&topic2)
                    .payload(&payload[..])
                    .partition(0);
                loop {
                    match p.send(rec) {
                        Ok(()) => break,
                        Err((_, r)) => {
                            p.poll(Duration::from_millis(1));
                            rec = r;
                        }
                    }
                }
                sent += 1;
            }
        }
        p.flush(Duration::from_secs(30)).unwrap();
    });
    let mut lats = Vec::with_capacity(total);
    let deadline = Instant::now() + Duration::from_secs(secs + 30);
    while lats.len() < total && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
            let v = m.payload().unwrap();
            let mut b = [0u8; 8];
            b.copy_from_slice(&v[..8]);
            let sent = Duration::from_nanos(u64::from_be_bytes(b));
            lats.push(origin.elapsed().saturating_sub(sent));
        }
    }
    producer_thread.join().unwrap();
    lats.sort_unstable();
    let pct = |p: f64| lats[((lats.len() as f64 - 1.0) * p) as usize];
    (pct(0.5), pct(0.99), lats.len())
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir =
        tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| "/tmp".into())).unwrap();
    let mut cfg = BrokerConfig::new(dir.path());
    cfg.cleaner_interval = None;
    let broker = Broker::open(cfg).unwrap();
    let server = rt
        .block_on(KafkaServer::start(
            broker.clone(),
            ServerConfig {
                listen: "127.0.0.1:0".into(),
                ..ServerConfig::default()
            },
        ))
        .unwrap();
    let addr = server.local_addr().to_string();
    let scale = if quick { 4 } else { 1 };
    if std::env::args().any(|a| a == "--transactions") {
        let n = 2_000_000 / scale;
        for partitions in [1i32, 8] {
            for transactional in [false, true] {
                let topic = format!("txn-bench-{transactional}-{partitions}");
                broker
                    .create_topic(NewTopic::new(&topic, partitions as u32))
                    .unwrap();
                let (pt, txns) = produce_idempotent_or_transactional(
                    &addr,
                    &topic,
                    n,
                    100,
                    transactional,
                    Duration::from_millis(100),
                );
                let ct = consume_isolated(&addr, &topic, partitions, n, "read_committed");
                println!(
                    "value=100B partitions={partitions} {}  produce {:>9.0} rec/s ({txns} transactions)   consume read_committed {:>9.0} rec/s",
                    if transactional { "transactional (100 ms)" } else { "idempotent            " },
                    n as f64 / pt.as_secs_f64(),
                    n as f64 / ct.as_secs_f64(),
                );
            }
        }
        rt.block_on(server.shutdown());
        broker.shutdown().unwrap();
        return;
    }
    for &(size, n) in &[(100usize, 2_000_000usize / scale), (1024, 500_000 / scale)] {
        for acks in ["1", "all"] {
            for partitions in [1i32, 8] {
                let topic = format!("bench-{size}-{acks}-{partitions}");
                broker
                    .create_topic(NewTopic::new(&topic, partitions as u32))
                    .unwrap();
                let pt = produce(&addr, &topic, n, size, acks, "5");
                let ct = consume(&addr, &topic, partitions, n);
                println!(
                    "value={size:>5}B acks={acks:<3} partitions={partitions}  produce {:>9.0} rec/s {:>7.1} MB/s   consume {:>9.0} rec/s {:>7.1} MB/s",
                    n as f64 / pt.as_secs_f64(),
                    (n * size) as f64 / 1e6 / pt.as_secs_f64(),
                    n as f64 / ct.as_secs_f64(),
                    (n * size) as f64 / 1e6 / ct.as_secs_f64(),
                );
            }
        }
    }
    broker.create_topic(NewTopic::new("latency", 1)).unwrap();
    for rate in [10_000usize, 100_000] {
        let (p50, p99, n) = latency(&addr, "latency", rate, if quick { 2 } else { 5 });
        println!("end-to-end latency at {rate} rec/s (acks=1, linger.ms=1): p50 {p50:.2?}  p99 {p99:.2?}  ({n} records)");
    }
    rt.block_on(server.shutdown());
    broker.shutdown().unwrap();
}
