//! The pieces of the exactly-once system test (`tests/tests/eos_system.rs`), after Kafka's
//! `EosTestClient`, `EosTestDriver` and `streams_eos_test.py`:
//!
//! - [`topology`]: from the keyed-integer topic `data` (5 partitions) an echo (`echo`), the
//!   per-key sum (`sum`) and min (`min`), and through a repartition topic
//!   (`EosTest-repartition-repartition`) the per-key max (`max`) and count (`cnt`); every
//!   store uncached (the app runs with `cache.max.bytes.buffering = 0`), so each input record
//!   gives exactly one update per aggregate, as in Kafka's test.
//! - [`Driver`]: an idempotent librdkafka producer writing seeded random keyed integers to
//!   `data` until stopped, remembering every acknowledged record.
//! - [`verify`]: once the input stopped and the application drained, every partition of every
//!   output is checked record by record against the same partition of `data` (read
//!   `read_committed`): `echo` and the repartition topic hold exactly the input, in order;
//!   `sum`/`min`/`max`/`cnt` hold one update per input record, each the running aggregate of
//!   its key. A `read_uncommitted` read of the same topics counts the records of aborted
//!   transactions.
//!
//! Everything talks to the broker over the Kafka protocol (librdkafka), so the same code
//! drives the in-process server (embedded backend) and `broker serve` (wire backend).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use streams_core::{
    I32Serde, I64Serde, Nullable, ProcessingGuarantee, StreamsConfig, StringSerde, Topology,
};
use streams_dsl::{Consumed, Grouped, Materialized, Produced, Repartitioned, StreamsBuilder};

use super::XorShift;

/// The application id (Kafka's test uses the same).
pub(crate) const APP_ID: &str = "EosTest";
/// Partitions of every topic.
pub(crate) const PARTITIONS: i32 = 5;
/// The input topic.
pub(crate) const INPUT: &str = "data";
/// The output topics, created before the application starts.
pub(crate) const OUTPUTS: [&str; 5] = ["echo", "sum", "min", "max", "cnt"];
/// The repartition topic the max and count read (internal: created by the application).
pub(crate) const REPARTITION: &str = "EosTest-repartition-repartition";
/// The stores, each with its changelog `EosTest-<store>-changelog`.
pub(crate) const STORES: [&str; 4] = ["sum-store", "min-store", "max-store", "cnt-store"];

/// Every topic the application writes (outputs, the repartition topic, changelogs).
pub(crate) fn written_topics() -> Vec<String> {
    let mut t: Vec<String> = OUTPUTS.iter().map(|s| (*s).to_owned()).collect();
    t.push(REPARTITION.to_owned());
    t.extend(STORES.iter().map(|s| format!("{APP_ID}-{s}-changelog")));
    t
}

/// The EOS test topology (Kafka's `EosTestClient` with repartitioning).
pub(crate) fn topology() -> Topology {
    let builder = StreamsBuilder::new();
    let data = builder.stream(INPUT, Consumed::with(StringSerde, I32Serde));
    data.clone()
        .to("echo", Produced::with(StringSerde, I32Serde));
    data.clone()
        .group_by_key(Grouped::with(StringSerde, I32Serde))
        .aggregate(
            || 0i64,
            |_k: &String, v: i32, sum: i64| sum + i64::from(v),
            Materialized::as_store("sum-store").with_value_serde(I64Serde),
        )
        .to_stream()
        .to("sum", Produced::with(StringSerde, Nullable(I64Serde)));
    data.clone()
        .group_by_key(Grouped::with(StringSerde, I32Serde))
        .aggregate(
            || i32::MAX,
            |_k: &String, v: i32, min: i32| min.min(v),
            Materialized::as_store("min-store").with_value_serde(I32Serde),
        )
        .to_stream()
        .to("min", Produced::with(StringSerde, Nullable(I32Serde)));
    let repartitioned =
        data.repartition(Repartitioned::with(StringSerde, I32Serde).with_name("repartition"));
    repartitioned
        .clone()
        .group_by_key(Grouped::with(StringSerde, I32Serde))
        .aggregate(
            || i32::MIN,
            |_k: &String, v: i32, max: i32| max.max(v),
            Materialized::as_store("max-store").with_value_serde(I32Serde),
        )
        .to_stream()
        .to("max", Produced::with(StringSerde, Nullable(I32Serde)));
    repartitioned
        .group_by_key(Grouped::with(StringSerde, I32Serde))
        .count(Materialized::as_store("cnt-store"))
        .to_stream()
        .to("cnt", Produced::with(StringSerde, Nullable(I64Serde)));
    builder.build().unwrap()
}

/// The application's config: exactly-once v2 (or `EOS_GUARANTEE`, e.g. `at_least_once`
/// to see the verifier catch what at-least-once does after a kill), no record cache (one update per record and
/// aggregate), `commit_interval` (long enough that kills land in open transactions),
/// `transaction.timeout.ms` well above it, a 6 s session timeout (the broker's minimum), and
/// `bootstrap.servers` when given (the wire backend).
pub(crate) fn app_config(
    bootstrap: Option<&str>,
    state_dir: &Path,
    commit_interval: Duration,
    threads: usize,
) -> StreamsConfig {
    let mut props: Vec<(String, String)> = vec![
        ("application.id".into(), APP_ID.into()),
        ("state.dir".into(), state_dir.display().to_string()),
        ("processing.guarantee".into(), guarantee()),
        (
            "commit.interval.ms".into(),
            commit_interval.as_millis().to_string(),
        ),
        ("statestore.cache.max.bytes".into(), "0".into()),
        ("num.stream.threads".into(), threads.to_string()),
        ("session.timeout.ms".into(), "6000".into()),
        (
            "producer.transaction.timeout.ms".into(),
            (commit_interval.as_millis() * 4).max(5000).to_string(),
        ),
    ];
    if let Some(b) = bootstrap {
        props.push(("bootstrap.servers".into(), b.into()));
    }
    let config = StreamsConfig::from_properties(props).unwrap();
    if guarantee() == "exactly_once_v2" {
        assert_eq!(
            config.processing_guarantee_value(),
            ProcessingGuarantee::ExactlyOnceV2
        );
    }
    config
}

/// `processing.guarantee` of the application: `exactly_once_v2` unless `EOS_GUARANTEE`
/// says otherwise.
pub(crate) fn guarantee() -> String {
    std::env::var("EOS_GUARANTEE").unwrap_or_else(|_| "exactly_once_v2".to_owned())
}

// ---------------------------------------------------------------------------------------------
// Topics

fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap()
}

/// Creates `data` and the output topics with [`PARTITIONS`] partitions.
pub(crate) fn create_topics(bootstrap: &str) {
    let admin = admin(bootstrap);
    let names: Vec<&str> = std::iter::once(INPUT).chain(OUTPUTS).collect();
    let topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|t| NewTopic::new(t, PARTITIONS, TopicReplication::Fixed(1)))
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let results = rt
        .block_on(admin.create_topics(&topics, &AdminOptions::new()))
        .unwrap();
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => panic!("creating topic {name}: {code:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The driver

/// A record of `data` as the driver produced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Input {
    pub(crate) key: String,
    pub(crate) value: i32,
}

/// Delivery reports of the driver's producer.
#[derive(Default)]
struct Deliveries {
    /// (index of the record, partition, offset) of each acknowledged record.
    acked: Vec<(usize, i32, i64)>,
    /// Failed deliveries: index and error.
    failed: Vec<(usize, String)>,
}

struct DriverContext {
    deliveries: Arc<Mutex<Deliveries>>,
}

impl ClientContext for DriverContext {}

impl ProducerContext for DriverContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, index: usize) {
        let mut d = self.deliveries.lock();
        match result {
            Ok(m) => d.acked.push((index, m.partition(), m.offset())),
            Err((e, _)) => d.failed.push((index, e.to_string())),
        }
    }
}

/// What the driver produced: every record sent and where each acknowledged one landed.
#[derive(Debug)]
pub(crate) struct DriverReport {
    /// Records sent, in order.
    pub(crate) sent: Vec<Input>,
    /// `(partition, offset) -> record` of every acknowledged record.
    pub(crate) acked: BTreeMap<(i32, i64), Input>,
    /// Failed deliveries (index into `sent`, error).
    pub(crate) failed: Vec<(usize, String)>,
}

/// The input generator: keyed integers to `data` at about `rate` records per second until
/// stopped (Kafka's `EosTestDriver.generate`), through an idempotent producer with the Java
/// partitioner and a long delivery timeout (the broker may be restarted meanwhile).
pub(crate) struct Driver {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    handle: Option<JoinHandle<DriverReport>>,
}

/// Keys are `0`..`KEYS` as text.
pub(crate) const KEYS: u64 = 300;

impl Driver {
    /// Starts producing to `bootstrap`, seeded with `seed`.
    pub(crate) fn start(bootstrap: &str, seed: u64, rate: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let sent_count = Arc::new(AtomicU64::new(0));
        let deliveries = Arc::new(Mutex::new(Deliveries::default()));
        let producer: BaseProducer<DriverContext> = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("client.id", "EosTest-driver")
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "300000")
            .set("retry.backoff.ms", "100")
            .create_with_context(DriverContext {
                deliveries: Arc::clone(&deliveries),
            })
            .unwrap();
        let handle = {
            let stop = Arc::clone(&stop);
            let sent_count = Arc::clone(&sent_count);
            std::thread::spawn(move || {
                let mut rng = XorShift::new(seed);
                let mut sent = Vec::new();
                let per_ms = f64::from(rate.max(1)) / 1000.0;
                let started = Instant::now();
                while !stop.load(Ordering::SeqCst) {
                    // Keep to the rate: send what is due, then sleep a little.
                    let due = (started.elapsed().as_secs_f64() * 1000.0 * per_ms) as usize;
                    while sent.len() < due {
                        let input = Input {
                            key: (rng.next() % KEYS).to_string(),
                            value: (rng.next() % 10_000) as i32,
                        };
                        let value = input.value.to_be_bytes();
                        let index = sent.len();
                        loop {
                            let record = BaseRecord::with_opaque_to(INPUT, index)
                                .key(input.key.as_bytes())
                                .payload(&value[..]);
                            match producer.send(record) {
                                Ok(()) => break,
                                Err((
                                    KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull),
                                    _,
                                )) => {
                                    producer.poll(Duration::from_millis(20));
                                }
                                Err((e, _)) => panic!("driver: producing: {e}"),
                            }
                        }
                        sent.push(input);
                        sent_count.fetch_add(1, Ordering::Relaxed);
                    }
                    producer.poll(Duration::from_millis(5));
                }
                // Every record acknowledged (or failed) before reporting.
                producer.flush(Duration::from_secs(300)).unwrap();
                let d = std::mem::take(&mut *deliveries.lock());
                let acked = d
                    .acked
                    .iter()
                    .map(|(i, p, o)| ((*p, *o), sent[*i].clone()))
                    .collect();
                DriverReport {
                    sent,
                    acked,
                    failed: d.failed,
                }
            })
        };
        Driver {
            stop,
            sent: sent_count,
            handle: Some(handle),
        }
    }

    /// Records sent so far.
    pub(crate) fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Stops producing, waits for every acknowledgement and reports.
    pub(crate) fn stop(mut self) -> DriverReport {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.take().unwrap().join().unwrap()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------------------------
// Reading

/// A record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rec {
    pub(crate) offset: i64,
    pub(crate) key: Option<Vec<u8>>,
    pub(crate) value: Option<Vec<u8>>,
}

impl Rec {
    fn key_text(&self) -> String {
        String::from_utf8(self.key.clone().expect("a key")).expect("a UTF-8 key")
    }
    fn i32_value(&self) -> i32 {
        i32::from_be_bytes(
            self.value
                .as_deref()
                .expect("a value")
                .try_into()
                .expect("4 bytes"),
        )
    }
    fn i64_value(&self) -> i64 {
        i64::from_be_bytes(
            self.value
                .as_deref()
                .expect("a value")
                .try_into()
                .expect("8 bytes"),
        )
    }
}

fn consumer(bootstrap: &str, isolation: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        // librdkafka assigns only with a group id; this one never joins nor commits.
        .set("group.id", "EosTest-verifier")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("fetch.wait.max.ms", "20")
        .set("isolation.level", isolation)
        .create()
        .unwrap()
}

/// Every record of every partition of `topic` read with `isolation` (`read_committed` or
/// `read_uncommitted`) from the beginning to the end (the first end-of-partition).
pub(crate) fn read_topic(bootstrap: &str, topic: &str, isolation: &str) -> Vec<Vec<Rec>> {
    let consumer = consumer(bootstrap, isolation);
    let mut list = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        list.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&list).unwrap();
    let mut out: Vec<Vec<Rec>> = vec![Vec::new(); PARTITIONS as usize];
    let mut at_end = [false; PARTITIONS as usize];
    let deadline = Instant::now() + Duration::from_secs(120);
    while !at_end.iter().all(|e| *e) {
        assert!(
            Instant::now() < deadline,
            "reading {topic} ({isolation}): partitions at their end {at_end:?}"
        );
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => at_end[p as usize] = true,
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            Some(Ok(m)) => {
                let p = m.partition() as usize;
                assert!(!at_end[p], "{topic}-{p}: a record after the end");
                out[p].push(Rec {
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().map(<[u8]>::to_vec),
                });
            }
        }
    }
    out
}

/// [`read_topic`] of several topics, each by its own consumer (in parallel), in the order
/// given.
pub(crate) fn read_topics(
    bootstrap: &str,
    topics: &[String],
    isolation: &str,
) -> Vec<Vec<Vec<Rec>>> {
    std::thread::scope(|s| {
        let handles: Vec<_> = topics
            .iter()
            .map(|t| s.spawn(move || read_topic(bootstrap, t, isolation)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// The high watermark and (`read_committed`) last stable offset of each partition of each
/// of `topics`.
fn watermarks(bootstrap: &str, topics: &[String]) -> Vec<Vec<(i64, i64)>> {
    let uncommitted = consumer(bootstrap, "read_uncommitted");
    let committed = consumer(bootstrap, "read_committed");
    let t = Duration::from_secs(10);
    topics
        .iter()
        .map(|topic| {
            (0..PARTITIONS)
                .map(|p| {
                    let hw = uncommitted.fetch_watermarks(topic, p, t).unwrap().1;
                    let lso = committed.fetch_watermarks(topic, p, t).unwrap().1;
                    (hw, lso)
                })
                .collect()
        })
        .collect()
}

/// Waits (at most `timeout`) until no transaction is open on any partition the application
/// writes: the last stable offset equals the high watermark everywhere (Kafka's
/// `verifyAllTransactionFinished`).
pub(crate) fn wait_for_transactions_to_finish(bootstrap: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let topics = written_topics();
    loop {
        let open: Vec<(String, i32, i64, i64)> = watermarks(bootstrap, &topics)
            .into_iter()
            .zip(&topics)
            .flat_map(|(w, t)| {
                w.into_iter()
                    .enumerate()
                    .filter(|(_, (hw, lso))| hw != lso)
                    .map(|(p, (hw, lso))| (t.clone(), p as i32, hw, lso))
                    .collect::<Vec<_>>()
            })
            .collect();
        if open.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "transactions still open (topic, partition, high watermark, last stable offset): {open:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The offsets the application's group committed on `topic`, per partition (-1: none).
pub(crate) fn committed_offsets(bootstrap: &str, topic: &str) -> Vec<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", APP_ID)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        list.add_partition(topic, p);
    }
    let got = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .unwrap();
    (0..PARTITIONS)
        .map(|p| match got.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            _ => -1,
        })
        .collect()
}

/// The end offset (high watermark) of each partition of `topic`.
pub(crate) fn end_offsets(bootstrap: &str, topic: &str) -> Vec<i64> {
    watermarks(bootstrap, &[topic.to_owned()])
        .pop()
        .unwrap()
        .into_iter()
        .map(|w| w.0)
        .collect()
}

/// Waits until the application processed all the input: `data` committed to its end, and
/// `cnt` (the last stage) holding, read committed, as many records per partition as `data`
/// (more is a failure the verifier reports in detail, so the wait stops there too).
pub(crate) fn wait_until_drained(bootstrap: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let data_ends = end_offsets(bootstrap, INPUT);
    let data: Vec<usize> = read_topic(bootstrap, INPUT, "read_committed")
        .iter()
        .map(Vec::len)
        .collect();
    loop {
        let committed = committed_offsets(bootstrap, INPUT);
        if committed == data_ends {
            let cnt: Vec<usize> = read_topic(bootstrap, "cnt", "read_committed")
                .iter()
                .map(Vec::len)
                .collect();
            if cnt.iter().zip(&data).all(|(c, d)| c >= d) {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the application did not drain: data ends {data_ends:?}, committed {committed:?}"
        );
        std::thread::sleep(Duration::from_millis(1000));
    }
}

// ---------------------------------------------------------------------------------------------
// Verification

/// Expected (key, aggregate) records per partition.
type Expected = Vec<Vec<(String, i64)>>;

/// What the verifier saw.
#[derive(Debug, Default)]
pub(crate) struct Verified {
    /// Records in `data`.
    pub(crate) inputs: usize,
    /// Committed records per written topic.
    pub(crate) committed: BTreeMap<String, usize>,
    /// Records of aborted transactions per written topic (read uncommitted minus read
    /// committed).
    pub(crate) aborted: BTreeMap<String, usize>,
}

impl Verified {
    /// Records of aborted transactions over every written topic.
    pub(crate) fn aborted_total(&self) -> usize {
        self.aborted.values().sum()
    }
}

/// Checks `got` (one output partition, read committed) against the expected sequence,
/// failing with the first difference.
fn check_partition<T: PartialEq + std::fmt::Debug>(
    topic: &str,
    partition: usize,
    inputs: &[Rec],
    got: &[(String, T)],
    expected: &[(String, T)],
) {
    for (i, (g, e)) in got.iter().zip(expected).enumerate() {
        if g != e {
            // A record equal to an earlier expected one is most likely processed twice.
            let earlier = expected[..i]
                .iter()
                .rposition(|x| x == g)
                .map(|j| {
                    format!(
                        "; it is the expected record of input offset {} again (a duplicate?)",
                        inputs[j].offset
                    )
                })
                .unwrap_or_default();
            panic!(
                "{topic}-{partition}: record #{i} is {g:?}, expected {e:?} (input data-{partition} \
                 offset {}){earlier}",
                inputs[i].offset
            );
        }
    }
    assert_eq!(
        got.len(),
        expected.len(),
        "{topic}-{partition}: {} records for {} inputs ({})",
        got.len(),
        expected.len(),
        if got.len() > expected.len() {
            format!("duplicates; first extra {:?}", got[expected.len()])
        } else {
            format!("lost; first missing {:?}", expected[got.len()])
        }
    );
}

/// Kafka's `EosTestDriver.verify`, partition by partition: `data-p` is the truth (and every
/// record the driver had acknowledged is in it, once, where it was acknowledged); `echo-p`
/// and the repartition topic's partition `p` are exactly `data-p`; `sum-p`, `min-p`, `max-p`
/// and `cnt-p` hold one update per record of `data-p`, in order, each the running aggregate
/// of its key. (Every topic has as many partitions and the Java partitioner, so a key's
/// records stay in the same partition number throughout.) Then counts what `read_uncommitted`
/// sees beyond the committed records: the aborted transactions.
pub(crate) fn verify(bootstrap: &str, driver: &DriverReport) -> Verified {
    let mut topics = written_topics();
    topics.push(INPUT.to_owned());
    let (committed, uncommitted) = std::thread::scope(|s| {
        let c = s.spawn(|| read_topics(bootstrap, &topics, "read_committed"));
        let u = s.spawn(|| read_topics(bootstrap, &topics, "read_uncommitted"));
        (c.join().unwrap(), u.join().unwrap())
    });
    let committed_of = |t: &str| &committed[topics.iter().position(|x| x == t).unwrap()];
    let data = committed_of(INPUT);
    // The input is exactly what the driver had acknowledged.
    let mut in_data = 0;
    for (p, records) in data.iter().enumerate() {
        for r in records {
            let acked = driver.acked.get(&(p as i32, r.offset));
            let got = Input {
                key: r.key_text(),
                value: r.i32_value(),
            };
            assert_eq!(
                acked,
                Some(&got),
                "data-{p} offset {}: not what the driver had acknowledged there",
                r.offset
            );
            in_data += 1;
        }
    }
    assert_eq!(
        in_data,
        driver.acked.len(),
        "records the driver had acknowledged are missing from data"
    );
    assert!(
        driver.failed.is_empty(),
        "the driver's deliveries failed: {:?}",
        &driver.failed[..driver.failed.len().min(5)]
    );

    let mut verified = Verified {
        inputs: in_data,
        ..Verified::default()
    };
    let inputs: Vec<Vec<(String, i32)>> = data
        .iter()
        .map(|rs| rs.iter().map(|r| (r.key_text(), r.i32_value())).collect())
        .collect();

    for topic in ["echo", REPARTITION] {
        let out = committed_of(topic);
        for p in 0..PARTITIONS as usize {
            let got: Vec<(String, i32)> = out[p]
                .iter()
                .map(|r| (r.key_text(), r.i32_value()))
                .collect();
            check_partition(topic, p, &data[p], &got, &inputs[p]);
        }
    }
    let running = |f: &dyn Fn(Option<i64>, i32) -> i64| -> Expected {
        inputs
            .iter()
            .map(|rs| {
                let mut agg: HashMap<&str, i64> = HashMap::new();
                rs.iter()
                    .map(|(k, v)| {
                        let a = f(agg.get(k.as_str()).copied(), *v);
                        agg.insert(k, a);
                        (k.clone(), a)
                    })
                    .collect()
            })
            .collect()
    };
    let expected: [(&str, Expected, bool); 4] = [
        ("sum", running(&|a, v| a.unwrap_or(0) + i64::from(v)), true),
        (
            "min",
            running(&|a, v| a.unwrap_or(i64::MAX).min(i64::from(v))),
            false,
        ),
        (
            "max",
            running(&|a, v| a.unwrap_or(i64::MIN).max(i64::from(v))),
            false,
        ),
        ("cnt", running(&|a, _| a.unwrap_or(0) + 1), true),
    ];
    for (topic, expected, long) in expected {
        let out = committed_of(topic);
        for p in 0..PARTITIONS as usize {
            let got: Vec<(String, i64)> = out[p]
                .iter()
                .map(|r| {
                    let v = if long {
                        r.i64_value()
                    } else {
                        i64::from(r.i32_value())
                    };
                    (r.key_text(), v)
                })
                .collect();
            check_partition(topic, p, &data[p], &got, &expected[p]);
        }
    }

    // Aborted transactions: what read_uncommitted sees beyond the committed records.
    for (t, topic) in topics.iter().enumerate() {
        let mut aborted = 0;
        for p in 0..PARTITIONS as usize {
            let c = &committed[t][p];
            let u = &uncommitted[t][p];
            assert!(
                u.len() >= c.len(),
                "{topic}-{p}: fewer records read uncommitted than committed"
            );
            // The committed records are among the uncommitted ones, same offsets and bytes.
            let mut it = u.iter();
            for r in c {
                assert!(
                    it.any(|x| x == r),
                    "{topic}-{p}: committed record at offset {} not seen read_uncommitted",
                    r.offset
                );
            }
            aborted += u.len() - c.len();
        }
        verified
            .committed
            .insert(topic.clone(), committed[t].iter().map(Vec::len).sum());
        if topic != INPUT {
            verified.aborted.insert(topic.clone(), aborted);
        } else {
            assert_eq!(aborted, 0, "data is not written transactionally");
        }
    }
    verified
}
