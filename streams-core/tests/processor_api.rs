#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The Processor API through the test driver and the runtime: topology validation,
//! description, punctuation, stores, error handling, co-partitioning.

use std::time::Duration;

use broker_embedded::{Broker, BrokerConfig, NewTopic, ProduceRecord};
use streams_core::*;

struct Upper;
impl Processor<String, String> for Upper {
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, String>,
        r: Record<String, String>,
    ) -> Result<()> {
        let v = r.value.to_uppercase();
        ctx.forward(r.with_value(v))
    }
}

/// Sums values per key in a store; emits the sums on stream-time punctuation every 10 ms
/// and counts wall-clock punctuations in a second store.
struct Summer;
impl Processor<String, i64, String, i64> for Summer {
    fn init(&mut self, ctx: &mut ProcessorContext<'_, String, i64>) -> Result<()> {
        ctx.schedule(Duration::from_millis(10), PunctuationType::StreamTime)?;
        ctx.schedule(Duration::from_secs(1), PunctuationType::WallClockTime)?;
        Ok(())
    }
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, i64>,
        r: Record<String, i64>,
    ) -> Result<()> {
        let mut store = ctx.key_value_store::<String, i64>("sums")?;
        let old = store.get(&r.key)?.unwrap_or(0);
        store.put(&r.key, &(old + r.value))
    }
    fn punctuate(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, i64>,
        _s: ScheduleId,
        ts: i64,
    ) -> Result<()> {
        if ctx.record_metadata().is_some() {
            return Err(StreamsError::user("metadata inside a punctuation"));
        }
        if ts > 1_000_000 {
            // wall clock: count it
            let mut store = ctx.key_value_store::<Vec<u8>, Vec<u8>>("ticks")?;
            let n = store.get(&b"n".to_vec())?.map_or(0, |b| b[0]);
            return store.put(&b"n".to_vec(), &vec![n + 1]);
        }
        let all: Vec<(String, i64)> = ctx
            .key_value_store::<String, i64>("sums")?
            .all(Direction::Forward)?
            .collect::<Result<_>>()?;
        for (key, sum) in all {
            ctx.forward(Record::new(key, sum, ts))?;
        }
        Ok(())
    }
}

#[test]
fn validation_errors_are_typed() {
    let mut t = Topology::new();
    t.add_source(Source::<String, String>::new("in", ["a"]))
        .unwrap();
    assert!(matches!(
        t.add_source(Source::<String, String>::new("in", ["b"]))
            .unwrap_err(),
        StreamsError::Topology(TopologyError::NameClash(_))
    ));
    assert!(matches!(
        t.add_processor("p", || Upper, &["nope"]).unwrap_err(),
        StreamsError::Topology(TopologyError::UnknownParent { .. })
    ));
    // Type mismatch: Summer takes Record<String, i64>, the source gives <String, String>.
    assert!(matches!(
        t.add_processor("s", || Summer, &["in"]).unwrap_err(),
        StreamsError::Topology(TopologyError::TypeMismatch { .. })
    ));
    // Same topic twice.
    assert!(t
        .add_source(Source::<String, String>::new("in2", ["a"]))
        .is_err());
    // Unconnected store is reported by describe().
    t.add_state_store(StoreBuilder::key_value("lonely"), &[])
        .unwrap();
    assert!(matches!(
        t.describe().unwrap_err(),
        StreamsError::Topology(TopologyError::UnconnectedStore(_))
    ));
    // A store connected to a non-processor.
    assert!(t.connect_processor_and_store("in", "lonely").is_err());
    assert!(matches!(
        Topology::new().describe().unwrap_err(),
        StreamsError::Topology(TopologyError::Empty)
    ));
}

#[test]
fn describe_text_and_dot() {
    let mut t = Topology::new();
    t.add_source(Source::<String, String>::new("in", ["a"]))
        .unwrap();
    t.add_processor("upper", || Upper, &["in"]).unwrap();
    t.add_sink(Sink::<String, String>::new("out", "b"), &["upper"])
        .unwrap();
    t.add_source(Source::<String, i64>::new("nums", ["n"]))
        .unwrap();
    t.add_processor("sum", || Summer, &["nums"]).unwrap();
    t.add_state_store(StoreBuilder::key_value("sums"), &["sum"])
        .unwrap();
    t.add_state_store(StoreBuilder::key_value("ticks").in_memory(), &["sum"])
        .unwrap();
    let d = t.describe().unwrap();
    assert_eq!(d.subtopologies.len(), 2);
    let text = d.to_string();
    assert!(text.contains("Sub-topology: 0"), "{text}");
    assert!(
        text.contains("Source: in (topics: [a])\n      --> upper"),
        "{text}"
    );
    assert!(
        text.contains("Sink: out (topic: b)\n      <-- upper"),
        "{text}"
    );
    assert!(
        text.contains("Processor: sum (stores: [sums, ticks])"),
        "{text}"
    );
    let dot = d.to_dot();
    assert!(dot.starts_with("digraph topology {"));
    assert!(dot.contains("\"in\" -> \"upper\";"), "{dot}");
    assert!(dot.contains("shape=cylinder"), "{dot}");
}

#[test]
fn punctuation_stream_time_and_wall_clock() {
    let mut t = Topology::new();
    t.add_source(Source::<String, i64>::new("nums", ["n"]))
        .unwrap();
    t.add_processor("sum", || Summer, &["nums"]).unwrap();
    t.add_state_store(StoreBuilder::key_value("sums"), &["sum"])
        .unwrap();
    t.add_state_store(
        StoreBuilder::key_value("ticks")
            .in_memory()
            .with_logging(false),
        &["sum"],
    )
    .unwrap();
    t.add_sink(Sink::<String, i64>::new("out", "sums-out"), &["sum"])
        .unwrap();
    let driver =
        TopologyTestDriver::with_wall_clock(t, StreamsConfig::new("punct"), 10_000_000).unwrap();
    let input = driver
        .create_input_topic("n", StringSerde, I64Serde)
        .unwrap();
    let out = driver.create_output_topic("sums-out", StringSerde, I64Serde);
    // The first record triggers the first stream-time punctuation (after processing it).
    input.pipe_input_with_timestamp("a".into(), 1, 100).unwrap();
    assert_eq!(
        out.read_key_values_to_vec().unwrap(),
        vec![("a".to_owned(), 1)]
    );
    // Stream time 105 < 110: nothing.
    input.pipe_input_with_timestamp("a".into(), 2, 105).unwrap();
    assert!(out.is_empty());
    // An older record does not move stream time.
    input.pipe_input_with_timestamp("b".into(), 5, 50).unwrap();
    assert!(out.is_empty());
    // 125 >= 110: one punctuation with both sums.
    input.pipe_input_with_timestamp("a".into(), 1, 125).unwrap();
    assert_eq!(
        out.read_key_values_to_vec().unwrap(),
        vec![("a".to_owned(), 4), ("b".to_owned(), 5)]
    );
    assert_eq!(driver.stream_time(0), Some(125));
    // Wall clock: 2.5 s in one step fires once (missed intervals are skipped, as in Kafka).
    driver
        .advance_wall_clock_time(Duration::from_millis(2500))
        .unwrap();
    driver
        .advance_wall_clock_time(Duration::from_millis(1000))
        .unwrap();
    let ticks: Vec<(Vec<u8>, Vec<u8>)> = driver.read_key_value_store("ticks").unwrap();
    assert_eq!(ticks, vec![(b"n".to_vec(), vec![2])]);
}

#[test]
fn deserialization_errors_fail_or_skip_to_a_dead_letter_topic() {
    let build = || {
        let mut t = Topology::new();
        t.add_source(Source::<String, i64>::new("in", ["n"]))
            .unwrap();
        t.add_sink(Sink::<String, i64>::new("out", "copy"), &["in"])
            .unwrap();
        t
    };
    // Default: fail, naming the partition and offset.
    let driver = TopologyTestDriver::new(build(), StreamsConfig::new("fail")).unwrap();
    let input = driver
        .create_input_topic("n", StringSerde, I64Serde)
        .unwrap();
    let err = input
        .pipe_raw(Some(b"k".to_vec()), Some(vec![1, 2, 3]), 1, vec![])
        .unwrap_err();
    assert!(err.to_string().contains("offset 0"), "{err}");

    // Log and continue with a dead-letter topic: the bad record is skipped, counted and
    // copied with error headers; good records still flow.
    let config =
        StreamsConfig::new("dlq").deserialization_handler(DeserializationHandler::LogAndContinue {
            dead_letter_topic: Some("dead".into()),
        });
    let driver = TopologyTestDriver::new(build(), config).unwrap();
    let input = driver
        .create_input_topic("n", StringSerde, I64Serde)
        .unwrap();
    input
        .pipe_raw(Some(b"k".to_vec()), Some(vec![1, 2, 3]), 7, vec![])
        .unwrap();
    input.pipe_input_with_timestamp("k".into(), 42, 8).unwrap();
    assert_eq!(driver.skipped_records(), 1);
    let copy = driver.create_output_topic("copy", StringSerde, I64Serde);
    assert_eq!(
        copy.read_key_values_to_vec().unwrap(),
        vec![("k".to_owned(), 42)]
    );
    let dead = driver.create_output_topic("dead", BytesSerde, BytesSerde);
    let r = dead.read_record().unwrap();
    assert_eq!(
        (r.key, r.value, r.timestamp),
        (b"k".to_vec(), vec![1, 2, 3], 7)
    );
    let header = |k: &str| {
        r.headers
            .iter()
            .find(|h| h.key == k)
            .and_then(|h| h.value.clone())
            .map(|v| String::from_utf8(v.to_vec()).unwrap())
    };
    assert_eq!(header("__streams.errors.topic").as_deref(), Some("n"));
    assert_eq!(header("__streams.errors.offset").as_deref(), Some("0"));
    assert!(header("__streams.errors.message").unwrap().contains("Long"));
}

#[test]
fn invalid_timestamps_follow_the_policy() {
    let build = || {
        let mut t = Topology::new();
        t.add_source(
            Source::<String, i64>::new("in", ["n"])
                .timestamp_extractor(std::sync::Arc::new(|_k: &String, v: &i64, _ts, _pt| *v)),
        )
        .unwrap();
        t.add_sink(Sink::<String, i64>::new("out", "copy"), &["in"])
            .unwrap();
        t
    };
    let driver = TopologyTestDriver::new(build(), StreamsConfig::new("ts")).unwrap();
    let input = driver
        .create_input_topic("n", StringSerde, I64Serde)
        .unwrap();
    assert!(matches!(
        input.pipe_input("k".into(), -5).unwrap_err(),
        StreamsError::InvalidTimestamp { timestamp: -5, .. }
    ));
    let config =
        StreamsConfig::new("ts").invalid_timestamp_policy(InvalidTimestampPolicy::UsePartitionTime);
    let driver = TopologyTestDriver::new(build(), config).unwrap();
    let input = driver
        .create_input_topic("n", StringSerde, I64Serde)
        .unwrap();
    input.pipe_input("k".into(), 100).unwrap();
    input.pipe_input("k".into(), -1).unwrap();
    let out = driver.create_output_topic("copy", StringSerde, I64Serde);
    let ts: Vec<i64> = out
        .read_records_to_vec()
        .unwrap()
        .iter()
        .map(|r| r.timestamp)
        .collect();
    assert_eq!(ts, vec![100, 100]);
}

#[test]
fn store_access_is_checked() {
    struct Sneaky;
    impl Processor<String, String> for Sneaky {
        fn process(
            &mut self,
            ctx: &mut ProcessorContext<'_, String, String>,
            _r: Record<String, String>,
        ) -> Result<()> {
            ctx.key_value_store::<String, String>("other").map(|_| ())
        }
    }
    struct Owner;
    impl Processor<String, String> for Owner {
        fn process(
            &mut self,
            _: &mut ProcessorContext<'_, String, String>,
            _r: Record<String, String>,
        ) -> Result<()> {
            Ok(())
        }
    }
    let mut t = Topology::new();
    t.add_source(Source::<String, String>::new("in", ["a"]))
        .unwrap();
    t.add_processor("sneaky", || Sneaky, &["in"]).unwrap();
    t.add_processor("owner", || Owner, &["in"]).unwrap();
    t.add_state_store(StoreBuilder::key_value("other").in_memory(), &["owner"])
        .unwrap();
    let driver = TopologyTestDriver::new(t, StreamsConfig::new("acc")).unwrap();
    let input = driver
        .create_input_topic("a", StringSerde, StringSerde)
        .unwrap();
    let err = input.pipe_input("k".into(), "v".into()).unwrap_err();
    assert!(matches!(err, StreamsError::StoreAccess { .. }), "{err}");
}

#[test]
fn missing_serde_is_reported_at_start() {
    #[derive(Clone)]
    struct Custom;
    struct Pass;
    impl Processor<String, Custom> for Pass {
        fn process(
            &mut self,
            ctx: &mut ProcessorContext<'_, String, Custom>,
            r: Record<String, Custom>,
        ) -> Result<()> {
            ctx.forward(r)
        }
    }
    let mut t = Topology::new();
    t.add_source(Source::<String, Custom>::new("in", ["a"]))
        .unwrap();
    t.add_processor("p", || Pass, &["in"]).unwrap();
    let err = TopologyTestDriver::new(t, StreamsConfig::new("serde")).unwrap_err();
    assert!(
        matches!(err, StreamsError::MissingSerde { what: "value", .. }),
        "{err}"
    );
}

#[test]
fn runtime_checks_source_topics_and_copartitioning() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(BrokerConfig::new(dir.path().join("log"))).unwrap();
    let mut t = Topology::new();
    t.add_source(Source::<String, String>::new("in", ["a", "b"]))
        .unwrap();
    t.add_sink(Sink::<String, String>::new("out", "c"), &["in"])
        .unwrap();
    let config = StreamsConfig::new("copart").state_dir(dir.path().join("state"));
    let mut app = StreamsApp::new(t, config.clone(), EmbeddedCluster::new(broker.clone())).unwrap();
    assert!(matches!(app.start().unwrap_err(), StreamsError::MissingSourceTopic(t) if t == "a"));
    assert_eq!(app.state(), StreamsState::Created);
    broker.create_topic(NewTopic::new("a", 2)).unwrap();
    broker.create_topic(NewTopic::new("b", 3)).unwrap();
    let err = app.start().unwrap_err();
    assert!(
        matches!(err, StreamsError::NotCopartitioned { .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("a: 2") && err.to_string().contains("b: 3"),
        "{err}"
    );
}

#[test]
fn runtime_runs_stores_changelogs_and_state_listener() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(BrokerConfig::new(dir.path().join("log"))).unwrap();
    broker.create_topic(NewTopic::new("n", 2)).unwrap();
    broker.create_topic(NewTopic::new("sums-out", 2)).unwrap();
    for p in 0..2 {
        let recs: Vec<ProduceRecord> = (0..50i64)
            .map(|i| {
                ProduceRecord::new(format!("k{p}"), i.to_be_bytes().to_vec())
                    .with_timestamp(1000 + i)
            })
            .collect();
        broker.produce("n", p, &recs).unwrap();
    }
    let mut t = Topology::new();
    t.add_source(Source::<String, i64>::new("nums", ["n"]))
        .unwrap();
    t.add_processor("sum", || Summer, &["nums"]).unwrap();
    t.add_state_store(StoreBuilder::key_value("sums"), &["sum"])
        .unwrap();
    t.add_state_store(StoreBuilder::key_value("ticks").in_memory(), &["sum"])
        .unwrap();
    t.add_sink(Sink::<String, i64>::new("out", "sums-out"), &["sum"])
        .unwrap();
    let config = StreamsConfig::new("sums")
        .state_dir(dir.path().join("state"))
        .num_stream_threads(2)
        .commit_interval(Duration::from_millis(50));
    let mut app = StreamsApp::new(t, config, EmbeddedCluster::new(broker.clone())).unwrap();
    let states = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
    let s = states.clone();
    app.set_state_listener(move |new, _old| s.lock().push(new));
    app.start().unwrap();
    assert!(
        app.wait_for_state(StreamsState::Running, Duration::from_secs(60)),
        "{:?}",
        app.errors()
    );
    assert!(app.wait_until_caught_up(Duration::from_secs(60)).unwrap());
    app.close();
    assert_eq!(
        *states.lock(),
        vec![
            StreamsState::Rebalancing,
            StreamsState::Running,
            StreamsState::PendingShutdown,
            StreamsState::NotRunning
        ]
    );
    // Changelog topics named as Kafka Streams names them, compacted, one partition per task.
    let d = broker.describe_topic("sums-sums-changelog").unwrap();
    assert_eq!(d.partitions.len(), 2);
    assert!(broker.topic_exists("sums-ticks-changelog"));
    let policy = d
        .configs
        .iter()
        .find(|c| c.name == "cleanup.policy")
        .map(|c| c.value.clone());
    assert_eq!(policy.as_deref(), Some("compact"));
    // Each task wrote a checkpoint for its persistent store.
    for task in ["0_0", "0_1"] {
        let cp = dir.path().join("state/sums").join(task).join(".checkpoint");
        let text = std::fs::read_to_string(&cp).unwrap();
        assert!(text.contains("sums-sums-changelog"), "{text}");
        assert!(
            !text.contains("ticks"),
            "in-memory stores are not checkpointed: {text}"
        );
    }
    // Committed offsets of the group = end of the input.
    for p in 0..2 {
        let tp = broker_embedded::TopicPartition::new("n", p);
        assert_eq!(broker.committed_offset("sums", &tp).unwrap().offset, 50);
    }
    // The output: each task's stream-time punctuation (every 10 ms of stream time, first
    // at the first record) emits its key's running sum with the punctuation's timestamp.
    // Records 0..=i have timestamps 1000..=1000+i, so at 1000, 1010, ..., 1040 the sum is
    // 0 + 1 + ... + i; 1041..1049 reach no further punctuation.
    let mut out: std::collections::BTreeMap<String, Vec<(i64, i64)>> = Default::default();
    for p in 0..2 {
        let data = broker
            .read_partition(
                "sums-out",
                p,
                0,
                1 << 20,
                broker_embedded::IsolationLevel::ReadCommitted,
            )
            .unwrap();
        for r in broker_embedded::decode_fetched("sums-out", &data.records, 0).unwrap() {
            let key = String::from_utf8(r.key.unwrap().to_vec()).unwrap();
            let sum = i64::from_be_bytes(r.value.unwrap().as_ref().try_into().unwrap());
            out.entry(key).or_default().push((sum, r.timestamp));
        }
    }
    let expected: Vec<(i64, i64)> = (0..5)
        .map(|n| {
            let i = n * 10;
            (i * (i + 1) / 2, 1000 + i)
        })
        .collect();
    assert_eq!(
        out,
        std::collections::BTreeMap::from([
            ("k0".to_owned(), expected.clone()),
            ("k1".to_owned(), expected)
        ])
    );
}

#[test]
fn a_processing_error_stops_the_application_with_the_error() {
    struct Picky;
    impl Processor<String, String> for Picky {
        fn process(
            &mut self,
            ctx: &mut ProcessorContext<'_, String, String>,
            r: Record<String, String>,
        ) -> Result<()> {
            if r.value == "poison" {
                return Err(StreamsError::user("cannot handle poison"));
            }
            ctx.forward(r)
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(BrokerConfig::new(dir.path().join("log"))).unwrap();
    broker.create_topic(NewTopic::new("in", 1)).unwrap();
    broker.create_topic(NewTopic::new("out", 1)).unwrap();
    broker
        .produce(
            "in",
            0,
            &[
                ProduceRecord::new("k", "fine"),
                ProduceRecord::new("k", "poison"),
            ],
        )
        .unwrap();
    let mut t = Topology::new();
    t.add_source(Source::<String, String>::new("src", ["in"]))
        .unwrap();
    t.add_processor("picky", || Picky, &["src"]).unwrap();
    t.add_sink(Sink::<String, String>::new("sink", "out"), &["picky"])
        .unwrap();
    let config = StreamsConfig::new("picky").state_dir(dir.path().join("state"));
    let mut app = StreamsApp::new(t, config, EmbeddedCluster::new(broker.clone())).unwrap();
    app.start().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while app.state() != StreamsState::Error && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(app.state(), StreamsState::Error);
    let errors = app.errors();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("picky") && e.contains("cannot handle poison")),
        "{errors:?}"
    );
    app.close();
    assert_eq!(app.state(), StreamsState::Error);
    // The poison record was not committed: a fixed application would process it again.
    let committed =
        broker.committed_offset("picky", &broker_embedded::TopicPartition::new("in", 0));
    assert!(
        committed.as_ref().is_none_or(|o| o.offset <= 1),
        "{committed:?}"
    );
}
