//! The clients that run while faults are injected, and what they record for the checker:
//! an idempotent acks=all producer, transactional producers (some transactions aborted on
//! purpose), a consumer group committing offsets, and a sampler of the group's committed
//! offsets. All of them go through the brokers' proxies, as clients.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{
    BaseRecord, DefaultProducerContext, FutureProducer, FutureRecord, Producer, ThreadedProducer,
};
use rdkafka::{Offset, TopicPartitionList};

use crate::checker::{acked_value, txn_value, Ack, OffsetSample, Outcome, Txn};

/// The idempotent producer's topic.
pub(crate) const ACKED_TOPIC: &str = "chaos-acked";
/// Its partitions.
pub(crate) const ACKED_PARTITIONS: i32 = 3;
/// The transactional producers' topic.
pub(crate) const TXN_TOPIC: &str = "chaos-txn";
/// Its partitions.
pub(crate) const TXN_PARTITIONS: i32 = 4;
/// Group members.
pub(crate) const MEMBERS: usize = 3;
/// Transactional producers (`chaos-txn-<i>`).
pub(crate) const TXN_PRODUCERS: u32 = 2;

/// The consumer group's id (it consumes [`ACKED_TOPIC`]) and the transactional ids: variant
/// `k` is `chaos-group-<k>` and `chaos-txn-<i>-<k>` (the variant last: ids differing only in
/// their last character hash to neighbouring coordinator partitions). The soak picks a variant whose
/// coordinators share one broker, so that sparing the coordinators spares one broker only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Names {
    /// `group.id`.
    pub(crate) group: String,
    /// `transactional.id` of each transactional producer.
    pub(crate) txn_ids: Vec<String>,
}

impl Names {
    /// Variant `k`.
    pub(crate) fn variant(k: u32) -> Self {
        Names {
            group: format!("chaos-group-{k}"),
            txn_ids: (0..TXN_PRODUCERS)
                .map(|i| format!("chaos-txn-{i}-{k}"))
                .collect(),
        }
    }
}

/// Everything the workload observed, shared between its threads.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// The group and transactional ids.
    pub(crate) names: Names,
    /// Set to stop every client.
    pub(crate) stop: AtomicBool,
    /// Records acknowledged to the idempotent producer.
    pub(crate) acked: Mutex<Vec<Ack>>,
    /// Records whose delivery failed (not acknowledged; they may or may not be in the log).
    pub(crate) produce_failed: AtomicU64,
    /// Idempotent producers replaced after a fatal error.
    pub(crate) producer_sessions: AtomicU64,
    /// Transactions and how they ended.
    pub(crate) txns: Mutex<Vec<Txn>>,
    /// Transactional producers replaced after a fatal error.
    pub(crate) txn_producer_restarts: AtomicU64,
    /// Committed-offset samples of the group, in time order.
    pub(crate) samples: Mutex<Vec<OffsetSample>>,
    /// The highest offset a commit of which was acknowledged to a member, per partition.
    pub(crate) acked_commits: Mutex<BTreeMap<i32, i64>>,
    /// Commits acknowledged / failed.
    pub(crate) commits_ok: AtomicU64,
    /// Commits that failed.
    pub(crate) commits_failed: AtomicU64,
    /// `(partition, offset, value)` of every record a group member consumed.
    pub(crate) group_reads: Mutex<Vec<(i32, i64, String)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Default for Names {
    fn default() -> Self {
        Names::variant(0)
    }
}

impl Shared {
    /// Nothing observed yet.
    pub(crate) fn new(names: Names) -> Self {
        Shared {
            names,
            ..Shared::default()
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// A client configuration for the cluster.
pub(crate) fn client_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("topic.metadata.refresh.interval.ms", "2000")
        .set("reconnect.backoff.max.ms", "1000")
        .set("log_level", "3");
    c
}

/// The running clients.
pub(crate) struct Workload {
    threads: Vec<std::thread::JoinHandle<()>>,
    producer: tokio::task::JoinHandle<()>,
}

impl Workload {
    /// Starts every client.
    pub(crate) fn start(bootstrap: &str, shared: &Arc<Shared>, seed: u64) -> Self {
        let producer = tokio::spawn(run_producer(bootstrap.to_owned(), Arc::clone(shared)));
        let mut threads = Vec::new();
        for i in 0..TXN_PRODUCERS {
            let (b, s) = (bootstrap.to_owned(), Arc::clone(shared));
            threads.push(std::thread::spawn(move || {
                run_txn_producer(&b, &s, i, seed.wrapping_add(u64::from(i) + 1));
            }));
        }
        for m in 0..MEMBERS {
            let (b, s) = (bootstrap.to_owned(), Arc::clone(shared));
            threads.push(std::thread::spawn(move || run_member(&b, &s, m)));
        }
        let (b, s) = (bootstrap.to_owned(), Arc::clone(shared));
        threads.push(std::thread::spawn(move || run_sampler(&b, &s)));
        Workload { threads, producer }
    }

    /// Stops every client and waits for them.
    pub(crate) async fn stop(self, shared: &Shared) {
        shared.stop.store(true, Ordering::Relaxed);
        let _ = self.producer.await;
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}

fn idempotent_producer(bootstrap: &str) -> Result<FutureProducer, KafkaError> {
    client_config(bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .set("retry.backoff.ms", "100")
        .create()
}

/// One record per partition every 20 ms, values `{session}:{seq}` with `seq` counting per
/// partition; each acknowledgement recorded with its offset. A fatal producer error starts a
/// new producer (a new session).
async fn run_producer(bootstrap: String, shared: Arc<Shared>) {
    let mut session = 0u32;
    let mut producer = None;
    let mut seq = [0u64; ACKED_PARTITIONS as usize];
    let mut inflight = tokio::task::JoinSet::new();
    while !shared.stopped() {
        if producer.is_none() {
            match idempotent_producer(&bootstrap) {
                Ok(p) => {
                    shared.producer_sessions.fetch_add(1, Ordering::Relaxed);
                    session += 1;
                    producer = Some(p);
                }
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            }
        }
        let Some(p) = &producer else { continue };
        for (partition, next) in (0..ACKED_PARTITIONS).zip(seq.iter_mut()) {
            let value = acked_value(session, *next);
            let record = FutureRecord::<(), _>::to(ACKED_TOPIC)
                .partition(partition)
                .payload(&value);
            let Ok(delivery) = p.send_result(record) else {
                // The local queue is full: try this partition again next round.
                continue;
            };
            let (shared, s) = (Arc::clone(&shared), *next);
            inflight.spawn(async move {
                match delivery.await {
                    Ok(Ok(d)) => lock(&shared.acked).push(Ack {
                        partition: d.partition,
                        session,
                        seq: s,
                        offset: d.offset,
                    }),
                    _ => {
                        shared.produce_failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
            *next += 1;
        }
        if p.client().fatal_error().is_some() {
            producer = None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        while inflight.len() > 3000 {
            inflight.join_next().await;
        }
        while inflight.try_join_next().is_some() {}
    }
    if let Some(p) = &producer {
        let _ = p.flush(Duration::from_secs(35));
    }
    while inflight.join_next().await.is_some() {}
}

fn txn_producer(
    bootstrap: &str,
    transactional_id: &str,
) -> Result<ThreadedProducer<DefaultProducerContext>, KafkaError> {
    let p: ThreadedProducer<DefaultProducerContext> = client_config(bootstrap)
        .set("transactional.id", transactional_id)
        .set("transaction.timeout.ms", "20000")
        .set("message.timeout.ms", "15000")
        .set("linger.ms", "5")
        .create()?;
    p.init_transactions(Duration::from_secs(15))?;
    Ok(p)
}

fn is_fatal(e: &KafkaError) -> bool {
    matches!(e, KafkaError::Transaction(r) if r.is_fatal())
}

/// Transactions of 2–6 records over random partitions of [`TXN_TOPIC`]; about a third are
/// aborted on purpose. Outcomes as the producer saw them: a commit (abort) that returned Ok
/// is Committed (Aborted); a failed commit that required an abort is Aborted once the abort
/// returns Ok; anything else is Unknown and the producer is replaced (which fences the old
/// one: its open transaction is aborted by the coordinator).
fn run_txn_producer(bootstrap: &str, shared: &Shared, id: u32, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut producer = None;
    let mut n = 0u64;
    let timeout = Duration::from_secs(10);
    while !shared.stopped() {
        if producer.is_none() {
            match txn_producer(bootstrap, &shared.names.txn_ids[id as usize]) {
                Ok(p) => {
                    shared.txn_producer_restarts.fetch_add(1, Ordering::Relaxed);
                    producer = Some(p);
                }
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(500));
                    continue;
                }
            }
        }
        let Some(p) = &producer else { continue };
        if let Err(e) = p.begin_transaction() {
            if is_fatal(&e) {
                producer = None;
            } else {
                let _ = p.abort_transaction(timeout);
            }
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        let want: u32 = rng.random_range(2..=6);
        let mut count = 0;
        for i in 0..want {
            let partition = rng.random_range(0..TXN_PARTITIONS);
            let value = txn_value(id, n, i, want);
            let record = BaseRecord::<(), _>::to(TXN_TOPIC)
                .partition(partition)
                .payload(&value);
            if p.send(record).is_err() {
                break;
            }
            count += 1;
        }
        // The values carry `want`: a transaction cut short is recorded with the records sent
        // and must be aborted.
        let abort = count < want || rng.random_bool(0.3);
        let outcome = if abort {
            match p.abort_transaction(timeout) {
                Ok(()) => Outcome::Aborted,
                Err(_) => Outcome::Unknown,
            }
        } else {
            let mut outcome = Outcome::Unknown;
            for _ in 0..3 {
                match p.commit_transaction(timeout) {
                    Ok(()) => {
                        outcome = Outcome::Committed;
                        break;
                    }
                    Err(KafkaError::Transaction(e)) if e.txn_requires_abort() => {
                        if p.abort_transaction(timeout).is_ok() {
                            outcome = Outcome::Aborted;
                        }
                        break;
                    }
                    Err(KafkaError::Transaction(e)) if e.is_retriable() => continue,
                    Err(_) => break,
                }
            }
            outcome
        };
        lock(&shared.txns).push(Txn {
            producer: id,
            n,
            count,
            outcome,
        });
        n += 1;
        if outcome == Outcome::Unknown {
            producer = None;
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(20..120)));
    }
}

/// A group member: consumes [`ACKED_TOPIC`] (read_committed), commits its position every
/// second (synchronously) and records what it read and which commits were acknowledged.
fn run_member(bootstrap: &str, shared: &Shared, member: usize) {
    let consumer: BaseConsumer = match client_config(bootstrap)
        .set("group.id", &shared.names.group)
        .set("client.id", format!("chaos-member-{member}"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000")
        .create()
    {
        Ok(c) => c,
        Err(_) => return,
    };
    if consumer.subscribe(&[ACKED_TOPIC]).is_err() {
        return;
    }
    let mut last_commit = Instant::now();
    let mut reads = Vec::new();
    while !shared.stopped() {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let value = m
                .payload()
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default();
            reads.push((m.partition(), m.offset(), value));
        }
        if last_commit.elapsed() >= Duration::from_secs(1) {
            last_commit = Instant::now();
            lock(&shared.group_reads).append(&mut reads);
            let Ok(position) = consumer.position() else {
                continue;
            };
            let mut tpl = TopicPartitionList::new();
            let mut offsets = Vec::new();
            for e in position.elements_for_topic(ACKED_TOPIC) {
                if let Offset::Offset(o) = e.offset() {
                    if tpl
                        .add_partition_offset(ACKED_TOPIC, e.partition(), Offset::Offset(o))
                        .is_ok()
                    {
                        offsets.push((e.partition(), o));
                    }
                }
            }
            if offsets.is_empty() {
                continue;
            }
            match consumer.commit(&tpl, CommitMode::Sync) {
                Ok(()) => {
                    shared.commits_ok.fetch_add(1, Ordering::Relaxed);
                    let mut acked = lock(&shared.acked_commits);
                    for (p, o) in offsets {
                        let e = acked.entry(p).or_insert(o);
                        *e = (*e).max(o);
                    }
                }
                Err(_) => {
                    shared.commits_failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
    lock(&shared.group_reads).append(&mut reads);
}

/// The group's committed offsets of [`ACKED_TOPIC`] (OffsetFetch), `None` per partition
/// without one; `Err` when the coordinator did not answer.
pub(crate) fn committed_offsets(consumer: &BaseConsumer) -> Result<OffsetSample, KafkaError> {
    let mut tpl = TopicPartitionList::new();
    for p in 0..ACKED_PARTITIONS {
        tpl.add_partition(ACKED_TOPIC, p);
    }
    let got = consumer.committed_offsets(tpl, Duration::from_secs(3))?;
    let mut out = OffsetSample::new();
    for e in got.elements_for_topic(ACKED_TOPIC) {
        if e.error().is_err() {
            continue;
        }
        match e.offset() {
            Offset::Offset(o) => {
                out.insert(e.partition(), Some(o));
            }
            Offset::Invalid => {
                out.insert(e.partition(), None);
            }
            _ => {}
        }
    }
    Ok(out)
}

/// A consumer in `group` that never joins it, for OffsetFetch.
pub(crate) fn offsets_reader(bootstrap: &str, group: &str) -> Result<BaseConsumer, KafkaError> {
    client_config(bootstrap)
        .set("group.id", group)
        .set("client.id", "chaos-offsets-sampler")
        .set("enable.auto.commit", "false")
        .create()
}

/// Samples the group's committed offsets every 500 ms.
fn run_sampler(bootstrap: &str, shared: &Shared) {
    let Ok(consumer) = offsets_reader(bootstrap, &shared.names.group) else {
        return;
    };
    while !shared.stopped() {
        if let Ok(sample) = committed_offsets(&consumer) {
            if !sample.is_empty() {
                lock(&shared.samples).push(sample);
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
