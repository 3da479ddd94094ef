#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The real runtime (`StreamsApp` on an embedded `Broker`, not the test driver) fed bad
//! input and faults: invalid UTF-8, tombstones, null keys on the repartition path, a record
//! too large for its output topic, and a failing processor with two stream threads. Each
//! case follows the configured handler, and the output topics, the dead-letter topic and
//! the committed offsets are read back to prove that nothing is silently lost.
//!
//! Deterministic inputs, no randomness; every wait is bounded by [`WAIT`]; the broker binds
//! no port (in-process); temporary directories are removed when each test ends.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::error::Error as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use broker_embedded::record::{Header, Record as RawRecord};
use broker_embedded::{BrokerError, NewTopic, ProduceRecord};
use common::{text, Env, Patience};
use streams_core::{
    ClusterErrorKind, I64Serde, Nullable, Processor, ProcessorContext, Record, Sink, Source,
    StreamsApp, StreamsConfig, StreamsError, StreamsState, StringSerde, TaskId, Topology,
    UncaughtErrorPolicy,
};
use streams_dsl::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};

/// Bound of every wait.
const WAIT: Duration = Duration::from_secs(30);

/// The config of the applications of these tests: state in the [`Env`]'s directory, a
/// commit every 50 ms, a poll at least every 10 s.
fn config(env: &Env, app: &str) -> StreamsConfig {
    common::config(app, &env.state_dir())
        .commit_interval(Duration::from_millis(50))
        .max_poll_interval(Duration::from_secs(10))
}

/// Key and value of each record as text (nulls as `None`).
fn key_values(records: &[RawRecord]) -> Vec<(Option<String>, Option<String>)> {
    records
        .iter()
        .map(|r| (text(&r.key), text(&r.value)))
        .collect()
}

fn wait_until(what: &str, check: impl FnMut() -> bool) {
    Patience::new(WAIT, Duration::from_millis(10)).wait_for(what, check);
}

fn wait_running(app: &StreamsApp) {
    common::wait_running(app, WAIT);
}

fn wait_caught_up(app: &StreamsApp) {
    assert!(app.wait_until_caught_up(WAIT).unwrap(), "not caught up");
}

fn wait_error(app: &StreamsApp) {
    wait_until("the application to reach ERROR", || {
        app.state() == StreamsState::Error
    });
}

/// Upper-cases values (the stateless step of the UTF-8 and too-large tests).
struct Upper;
impl Processor<String, String> for Upper {
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, String>,
        r: Record<String, String>,
    ) -> streams_core::Result<()> {
        let v = r.value.to_uppercase();
        ctx.forward(r.with_value(v))
    }
}

fn upper_topology(input: &str, output: &str) -> Topology {
    let mut t = Topology::new();
    t.add_source(Source::<String, String>::new("src", [input]))
        .unwrap();
    t.add_processor("upper", || Upper, &["src"]).unwrap();
    t.add_sink(Sink::<String, String>::new("sink", output), &["upper"])
        .unwrap();
    t
}

fn good(p: i32, i: i64) -> ProduceRecord {
    ProduceRecord::new(format!("k{p}-{i}"), format!("v{p}-{i}"))
}

/// Invalid UTF-8 in a value (partition 0) and in a key (partition 1) read with the String
/// serde, and a tombstone read as a `String` value (partition 1, after the bad key).
///
/// `fail` (the default): the application stops at the first bad record with a typed
/// `Deserialization` error naming topic, partition and offset, and commits nothing past it
/// (not even good records after it) — a restart with `fail` stops there again. Restarted
/// with `log-and-continue` and a dead-letter topic (Kafka's property keys): the two bad
/// records are skipped, counted, and written to the dead-letter topic with their original
/// bytes and headers plus `__streams.errors.*` headers; every good record is in the output
/// exactly once and the offsets are committed to the end. The tombstone is not a bad record
/// (Kafka's `StringDeserializer` reads null bytes as null): a `String` cannot hold the
/// null, so it is skipped and counted as dropped, but never sent to the dead-letter topic.
#[test]
fn invalid_utf8_follows_the_deserialization_handler() {
    let env = Env::new(&[("utf-in", 2), ("utf-out", 2), ("utf-dlq", 1)]);
    let app_id = "utf";
    // Phase 1: five good records per partition, processed and committed.
    for p in 0..2 {
        let recs: Vec<ProduceRecord> = (0..5).map(|i| good(p, i)).collect();
        env.produce("utf-in", p, &recs);
    }
    let mut app = env.start(upper_topology("utf-in", "utf-out"), config(&env, app_id));
    wait_running(&app);
    wait_caught_up(&app);
    assert_eq!(app.dropped_records(), 0);

    // Phase 2: bad records at offset 5 of both partitions, good ones after them.
    let bad_value = ProduceRecord {
        key: Some("k0-5".into()),
        value: Some(bytes::Bytes::from_static(&[b'v', 0xff, 0xfe])),
        headers: vec![Header {
            key: "trace".into(),
            value: Some("abc".into()),
        }],
        timestamp: None,
    };
    let bad_key = ProduceRecord {
        key: Some(bytes::Bytes::from_static(&[0xc3, 0x28])),
        value: Some("v1-5".into()),
        headers: Vec::new(),
        timestamp: None,
    };
    let tombstone = ProduceRecord {
        key: Some("k1-6".into()),
        value: None,
        headers: Vec::new(),
        timestamp: None,
    };
    let mut p0 = vec![bad_value];
    p0.extend((6..10).map(|i| good(0, i)));
    let mut p1 = vec![bad_key, tombstone];
    p1.extend((7..10).map(|i| good(1, i)));
    env.produce("utf-in", 0, &p0);
    env.produce("utf-in", 1, &p1);

    wait_error(&app);
    let errors = app.thread_errors();
    assert_eq!(errors.len(), 1, "{:?}", app.errors());
    match &*errors[0] {
        StreamsError::Deserialization {
            topic,
            partition,
            offset,
            source,
            ..
        } => {
            assert_eq!((topic.as_str(), *offset), ("utf-in", 5));
            let what = if *partition == 0 { "value" } else { "key" };
            assert!(
                matches!(&**source, StreamsError::Serde { what: w, .. } if w == what),
                "{source:?}"
            );
            assert!(source.to_string().contains("invalid UTF-8"), "{source}");
        }
        other => panic!("expected a deserialization error, got {other:?}"),
    }
    app.close();
    assert_eq!(app.state(), StreamsState::Error);
    // Nothing committed past the bad records; nothing after them was written.
    for p in 0..2 {
        assert_eq!(env.committed(app_id, "utf-in", p), Some(5), "partition {p}");
    }
    assert_eq!(env.read_all("utf-out").len(), 10);

    // A restart with `fail` stops at the same record again: it is never skipped silently.
    let mut again = env.start(upper_topology("utf-in", "utf-out"), config(&env, app_id));
    wait_error(&again);
    assert!(matches!(
        &*again.thread_errors()[0],
        StreamsError::Deserialization { offset: 5, .. }
    ));
    again.close();
    assert_eq!(env.read_all("utf-out").len(), 10);

    // Phase 3: log-and-continue with a dead-letter topic, configured with Kafka's keys.
    let config = StreamsConfig::from_properties([
        ("application.id", app_id),
        ("state.dir", env.dir.path().join("state").to_str().unwrap()),
        ("commit.interval.ms", "50"),
        (
            "default.deserialization.exception.handler",
            "org.apache.kafka.streams.errors.LogAndContinueExceptionHandler",
        ),
        ("errors.dead.letter.queue.topic.name", "utf-dlq"),
    ])
    .unwrap();
    let mut app = env.start(upper_topology("utf-in", "utf-out"), config);
    wait_running(&app);
    wait_caught_up(&app);
    // Two bad records and the tombstone.
    assert_eq!(app.dropped_records(), 3);
    app.close();
    assert!(app.errors().is_empty(), "{:?}", app.errors());
    assert_eq!(app.state(), StreamsState::NotRunning);

    // Every good record exactly once.
    let mut got = key_values(&env.read_all("utf-out"));
    got.sort();
    let mut want: Vec<(Option<String>, Option<String>)> = (0..2)
        .flat_map(|p| (0..10).map(move |i| (p, i)))
        .filter(|&(p, i)| !(i == 5 || (p == 1 && i == 6)))
        .map(|(p, i)| (Some(format!("k{p}-{i}")), Some(format!("V{p}-{i}"))))
        .collect();
    want.sort();
    assert_eq!(got, want);
    for p in 0..2 {
        assert_eq!(
            env.committed(app_id, "utf-in", p),
            Some(10),
            "partition {p}"
        );
    }

    // The dead-letter topic holds the two bad records, as read, with what failed (not the
    // tombstone: a null the value type cannot hold is skipped, not a deserialization error).
    let dlq = env.read("utf-dlq", 0);
    assert_eq!(dlq.len(), 2, "{dlq:?}");
    let by_origin: BTreeMap<(String, String), &RawRecord> = dlq
        .iter()
        .map(|r| {
            let h = |k: &str| {
                r.headers
                    .iter()
                    .find(|h| h.key == k)
                    .and_then(|h| text(&h.value))
                    .unwrap_or_else(|| panic!("no header {k} on {r:?}"))
            };
            assert_eq!(h("__streams.errors.topic"), "utf-in");
            assert_eq!(h("__streams.errors.exception"), "DeserializationException");
            assert!(!h("__streams.errors.message").is_empty());
            (
                (
                    h("__streams.errors.partition"),
                    h("__streams.errors.offset"),
                ),
                r,
            )
        })
        .collect();
    assert_eq!(
        by_origin.keys().cloned().collect::<Vec<_>>(),
        [("0", "5"), ("1", "5")].map(|(p, o)| (p.to_owned(), o.to_owned()))
    );
    let v = by_origin[&("0".to_owned(), "5".to_owned())];
    assert_eq!(v.value.as_deref(), Some(&[b'v', 0xff, 0xfe][..]));
    assert_eq!(v.key.as_deref(), Some(&b"k0-5"[..]));
    assert!(
        v.headers
            .iter()
            .any(|h| h.key == "trace" && h.value.as_deref() == Some(&b"abc"[..])),
        "the original headers are kept: {:?}",
        v.headers
    );
    let k = by_origin[&("1".to_owned(), "5".to_owned())];
    assert_eq!(k.key.as_deref(), Some(&[0xc3, 0x28][..]));
    env.broker.shutdown().unwrap();
}

/// Tombstones through the DSL, as Kafka Streams treats them with a nullable value serde:
/// a stateless `map_values` / `filter` sees the null and forwards it (the output holds the
/// tombstones, in order), while `count` after a `group_by` (through a repartition topic
/// that carries the nulls) ignores null values — Kafka's `KStreamAggregate` "Skipping
/// record due to null key or value" — and counts them as dropped.
#[test]
fn tombstones_pass_stateless_operations_and_aggregations_skip_them() {
    let env = Env::new(&[("tomb-in", 2), ("tomb-mapped", 2), ("tomb-counts", 2)]);
    let builder = StreamsBuilder::new();
    let input = builder.stream(
        "tomb-in",
        Consumed::with(StringSerde, Nullable(StringSerde)),
    );
    input
        .clone()
        .map_values(|v: Option<String>| v.map(|s| s.to_uppercase()))
        .filter(|k: &String, _v: &Option<String>| !k.starts_with("skip"))
        .to(
            "tomb-mapped",
            Produced::with(StringSerde, Nullable(StringSerde)),
        );
    input
        .group_by(
            |k: &String, _v: &Option<String>| k.to_uppercase(),
            Grouped::with(StringSerde, Nullable(StringSerde)),
        )
        .count(Materialized::as_store("tomb-store"))
        .to_stream()
        .to(
            "tomb-counts",
            Produced::with(StringSerde, Nullable(I64Serde)),
        );
    // Per key: values with tombstones in between.
    let inputs: [(i32, &str, &[Option<&str>]); 4] = [
        (0, "a", &[Some("x"), None, Some("y"), None, Some("z")]),
        (0, "skip-b", &[None, Some("q")]),
        (1, "c", &[None, None]),
        (1, "d", &[Some("w"), None]),
    ];
    for (p, key, values) in inputs {
        let recs: Vec<ProduceRecord> = values
            .iter()
            .map(|v| ProduceRecord {
                key: Some(key.to_owned().into()),
                value: v.map(|s| s.to_owned().into()),
                headers: Vec::new(),
                timestamp: None,
            })
            .collect();
        env.produce("tomb-in", p, &recs);
    }
    let config = config(&env, "tomb").cache_max_bytes(0);
    let mut app = env.start(builder.build().unwrap(), config);
    wait_running(&app);
    wait_caught_up(&app);
    // Six tombstones reached the aggregation: each dropped with a warning and counted.
    assert_eq!(app.dropped_records(), 6);
    app.close();
    assert!(app.errors().is_empty(), "{:?}", app.errors());

    // Stateless: every record but the filtered key, tombstones included, in order per key.
    let mut mapped: BTreeMap<String, Vec<Option<String>>> = BTreeMap::new();
    for (k, v) in key_values(&env.read_all("tomb-mapped")) {
        mapped.entry(k.unwrap()).or_default().push(v);
    }
    let s = |v: &str| Some(v.to_owned());
    assert_eq!(
        mapped,
        BTreeMap::from([
            ("a".to_owned(), vec![s("X"), None, s("Y"), None, s("Z")]),
            ("c".to_owned(), vec![None, None]),
            ("d".to_owned(), vec![s("W"), None]),
        ])
    );

    // Aggregation: one update per non-null value; keys with only tombstones never appear.
    let mut counts: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for r in env.read_all("tomb-counts") {
        let v = r.value.as_deref().expect("counts are never null");
        counts
            .entry(text(&r.key).unwrap())
            .or_default()
            .push(i64::from_be_bytes(v.try_into().unwrap()));
    }
    assert_eq!(
        counts,
        BTreeMap::from([
            ("A".to_owned(), vec![1, 2, 3]),
            ("SKIP-B".to_owned(), vec![1]),
            ("D".to_owned(), vec![1]),
        ])
    );
    env.broker.shutdown().unwrap();
}

/// Null keys on the repartition path: a `select_key` that yields a null key before
/// `group_by_key` (the repartition sink drops it, as Kafka's repartition filter does), and
/// source records with a null key into `group_by_key` without a repartition (the
/// aggregation drops them, as Kafka's `KStreamAggregate` does). Each drop is logged with a
/// warning and counted in `dropped_records`; every keyed record is counted exactly once and
/// the input offsets are committed to the end (no record holds the application back).
#[test]
fn null_keys_on_the_repartition_path_are_dropped_counted_and_nothing_else_is_lost() {
    let env = Env::new(&[("nk-words", 2), ("nk-raw", 2), ("nk-counts", 2)]);
    let builder = StreamsBuilder::new();
    // "orphan" words get a null key.
    builder
        .stream("nk-words", Consumed::with(StringSerde, StringSerde))
        .select_key(|_k: &String, word: &String| {
            (!word.starts_with("orphan")).then(|| word.clone())
        })
        .group_by_key(Grouped::with(Nullable(StringSerde), StringSerde))
        .count(Materialized::as_store("nk-word-counts"))
        .to_stream()
        .to(
            "nk-counts",
            Produced::with(Nullable(StringSerde), Nullable(I64Serde)),
        );
    builder
        .stream("nk-raw", Consumed::with(Nullable(StringSerde), StringSerde))
        .group_by_key(Grouped::with(Nullable(StringSerde), StringSerde))
        .count(Materialized::as_store("nk-raw-counts"))
        .to_stream()
        .to(
            "nk-counts",
            Produced::with(Nullable(StringSerde), Nullable(I64Serde)),
        );
    let words = ["apple", "orphan-1", "pear", "apple", "orphan-2", "fig"];
    for (i, w) in words.iter().enumerate() {
        let p = (i % 2) as i32;
        env.produce(
            "nk-words",
            p,
            &[ProduceRecord::new(format!("line{i}"), w.to_string())],
        );
    }
    let raw = [
        (Some("r1"), "x"),
        (None, "y"),
        (Some("r1"), "z"),
        (None, "w"),
    ];
    for (i, (k, v)) in raw.iter().enumerate() {
        let p = (i % 2) as i32;
        let rec = ProduceRecord {
            key: k.map(|k| k.to_owned().into()),
            value: Some(v.to_string().into()),
            headers: Vec::new(),
            timestamp: None,
        };
        env.produce("nk-raw", p, &[rec]);
    }
    let config = config(&env, "nk").cache_max_bytes(0);
    let mut app = env.start(builder.build().unwrap(), config);
    wait_running(&app);
    wait_caught_up(&app);
    assert_eq!(app.dropped_records(), 4, "2 orphans + 2 null source keys");
    app.close();
    assert!(app.errors().is_empty(), "{:?}", app.errors());

    let mut finals: BTreeMap<String, i64> = BTreeMap::new();
    let mut updates = 0;
    for r in env.read_all("nk-counts") {
        let k = text(&r.key).expect("no null key reaches the output");
        let v = i64::from_be_bytes(r.value.as_deref().unwrap().try_into().unwrap());
        let e = finals.entry(k).or_insert(0);
        assert_eq!(v, *e + 1, "each count update exactly once, in order");
        *e = v;
        updates += 1;
    }
    assert_eq!(
        finals,
        BTreeMap::from([
            ("apple".to_owned(), 2),
            ("fig".to_owned(), 1),
            ("pear".to_owned(), 1),
            ("r1".to_owned(), 2),
        ])
    );
    assert_eq!(updates, 6);
    // The orphans never reached the repartition topic.
    let repartition = env.read_all("nk-nk-word-counts-repartition");
    assert_eq!(repartition.len(), 4);
    assert!(repartition.iter().all(|r| r.key.is_some()));
    for (topic, p) in [
        ("nk-words", 0),
        ("nk-words", 1),
        ("nk-raw", 0),
        ("nk-raw", 1),
    ] {
        assert_eq!(env.committed("nk", topic, p), Some(env.end(topic, p)));
    }
    env.broker.shutdown().unwrap();
}

/// An output topic with a small `max.message.bytes` (1 KiB). Many small records still
/// reach it (the producer splits a batch the broker refuses as too large, as Kafka's
/// producer does), each exactly once. One record larger than the limit fails the thread
/// (Kafka's default production exception handler fails; this runtime has no production
/// handler to configure) with a typed, fatal `MESSAGE_TOO_LARGE` cluster error naming the
/// output partition; nothing at or after it is committed or written, and a restart fails
/// on it again.
#[test]
fn a_record_too_large_for_the_output_topic_fails_with_a_typed_error_and_nothing_past_it() {
    let env = Env::new(&[("big-in", 1)]);
    env.broker
        .create_topic(NewTopic::new("big-out", 1).config("max.message.bytes", "1024"))
        .unwrap();
    let app_id = "big";
    let recs: Vec<ProduceRecord> = (0..300).map(|i| good(0, i)).collect();
    env.produce("big-in", 0, &recs);
    let mut app = env.start(upper_topology("big-in", "big-out"), config(&env, app_id));
    wait_running(&app);
    wait_caught_up(&app);
    let out = key_values(&env.read("big-out", 0));
    let want: Vec<_> = (0..300)
        .map(|i| (Some(format!("k0-{i}")), Some(format!("V0-{i}"))))
        .collect();
    assert_eq!(out, want, "every small record exactly once, in order");

    // One record of 2,000 bytes, then small ones.
    let mut recs = vec![ProduceRecord::new("huge", "h".repeat(2000))];
    recs.extend((301..306).map(|i| good(0, i)));
    env.produce("big-in", 0, &recs);
    wait_error(&app);
    let errors = app.thread_errors();
    assert_eq!(errors.len(), 1, "{:?}", app.errors());
    let e = &errors[0];
    assert_eq!(e.cluster_kind(), Some(ClusterErrorKind::Fatal), "{e}");
    assert!(e.to_string().contains("big-out-0"), "{e}");
    let broker_error = e
        .source()
        .and_then(|s| s.downcast_ref::<BrokerError>())
        .unwrap_or_else(|| panic!("no broker error under {e:?}"));
    assert!(
        matches!(broker_error, BrokerError::MessageTooLarge { max: 1024, .. }),
        "{broker_error:?}"
    );
    app.close();
    assert_eq!(env.committed(app_id, "big-in", 0), Some(300));
    assert_eq!(env.read("big-out", 0).len(), 300);

    // Not skipped on restart either.
    let mut again = env.start(upper_topology("big-in", "big-out"), config(&env, app_id));
    wait_error(&again);
    assert_eq!(
        again.thread_errors()[0].cluster_kind(),
        Some(ClusterErrorKind::Fatal)
    );
    again.close();
    assert_eq!(env.committed(app_id, "big-in", 0), Some(300));
    assert_eq!(env.read("big-out", 0).len(), 300);
    env.broker.shutdown().unwrap();
}

/// Fails on the first record whose value is `boom` (once per `tripped` flag), else
/// upper-cases.
struct Fragile {
    tripped: Arc<AtomicBool>,
}

impl Processor<String, String> for Fragile {
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, String>,
        r: Record<String, String>,
    ) -> streams_core::Result<()> {
        if r.value == "boom" && !self.tripped.swap(true, Ordering::SeqCst) {
            return Err(StreamsError::user("boom: a processing error"));
        }
        let v = r.value.to_uppercase();
        ctx.forward(r.with_value(v))
    }
}

const WORK_PARTITIONS: i32 = 4;

fn fragile_topology(tripped: &Arc<AtomicBool>) -> Topology {
    let mut t = Topology::new();
    t.add_source(Source::<String, String>::new("src", ["work-in"]))
        .unwrap();
    let tripped = Arc::clone(tripped);
    t.add_processor(
        "fragile",
        move || Fragile {
            tripped: Arc::clone(&tripped),
        },
        &["src"],
    )
    .unwrap();
    t.add_sink(
        Sink::<String, String>::new("sink", "work-out"),
        &["fragile"],
    )
    .unwrap();
    t
}

/// `round` records on every partition; the value `boom` at `boom_at` of partition 0.
fn produce_round(env: &Env, round: i64, boom: bool) {
    for p in 0..WORK_PARTITIONS {
        let recs: Vec<ProduceRecord> = (0..20)
            .map(|i| {
                let v = if boom && p == 0 && i == 10 {
                    "boom".to_owned()
                } else {
                    format!("v{p}-{round}-{i}")
                };
                ProduceRecord::new(format!("k{p}"), v)
            })
            .collect();
        env.produce("work-in", p, &recs);
    }
}

/// Every input value (upper-cased) appears in the output at least once and nothing else
/// does; the input is committed to its end.
fn assert_nothing_lost(env: &Env, app_id: &str) {
    let want: BTreeSet<String> = (0..WORK_PARTITIONS)
        .flat_map(|p| env.read("work-in", p))
        .map(|r| text(&r.value).unwrap().to_uppercase())
        .collect();
    let got: BTreeSet<String> = env
        .read_all("work-out")
        .iter()
        .map(|r| text(&r.value).unwrap())
        .collect();
    assert_eq!(got, want);
    for p in 0..WORK_PARTITIONS {
        assert_eq!(
            env.committed(app_id, "work-in", p),
            Some(env.end("work-in", p)),
            "partition {p}"
        );
    }
}

fn all_tasks() -> BTreeSet<TaskId> {
    (0..WORK_PARTITIONS)
        .map(|partition| TaskId {
            subtopology: 0,
            partition,
        })
        .collect()
}

/// Runs the two-thread application under `policy` until the processing error, and returns
/// it with its environment. Round 0 is processed and committed first.
fn two_threads_until_the_error(policy: UncaughtErrorPolicy) -> (Env, StreamsApp, Arc<AtomicBool>) {
    let env = Env::new(&[
        ("work-in", WORK_PARTITIONS as u32),
        ("work-out", WORK_PARTITIONS as u32),
    ]);
    let tripped = Arc::new(AtomicBool::new(false));
    let config = config(&env, "work")
        .num_stream_threads(2)
        .uncaught_error_policy(policy);
    let app = env.start(fragile_topology(&tripped), config);
    wait_running(&app);
    wait_until("both threads to own tasks", || {
        app.active_tasks() == all_tasks()
    });
    produce_round(&env, 0, false);
    wait_caught_up(&app);
    produce_round(&env, 1, true);
    wait_until("the processing error", || tripped.load(Ordering::SeqCst));
    // The failed thread has closed its tasks once its error is reported.
    wait_until("the error to be reported", || !app.errors().is_empty());
    (env, app, tripped)
}

fn assert_boom(app: &StreamsApp) {
    let errors = app.thread_errors();
    assert_eq!(errors.len(), 1, "{:?}", app.errors());
    match &*errors[0] {
        StreamsError::Processing { node, message, .. } => {
            assert_eq!(node, "fragile");
            assert!(message.contains("boom"), "{message}");
        }
        other => panic!("expected a processing error, got {other:?}"),
    }
}

/// `ShutdownClient` (Kafka's default) with two threads: the whole application goes to
/// ERROR; the failed record's offset is not committed (committed offsets never pass an
/// unprocessed record); a restart processes everything that was left, losing nothing.
#[test]
fn processing_error_with_shutdown_client_stops_the_app_and_a_restart_loses_nothing() {
    let (env, mut app, tripped) = two_threads_until_the_error(UncaughtErrorPolicy::ShutdownClient);
    wait_error(&app);
    assert_boom(&app);
    app.close();
    assert_eq!(app.state(), StreamsState::Error);
    let boom_offset = 30; // round 0 (20 records) + 10
    let committed = env.committed("work", "work-in", 0).unwrap();
    assert!(
        (20..=boom_offset).contains(&committed),
        "committed {committed} must not pass the failed record at {boom_offset}"
    );
    let config = config(&env, "work").num_stream_threads(2);
    let mut again = env.start(fragile_topology(&tripped), config);
    wait_running(&again);
    wait_caught_up(&again);
    again.close();
    assert!(again.errors().is_empty(), "{:?}", again.errors());
    assert_nothing_lost(&env, "work");
    env.broker.shutdown().unwrap();
}

/// `ReplaceThread` with two threads: the failed thread is replaced, the application comes
/// back to RUNNING with every task owned, keeps processing new input, and loses nothing
/// (the failed record is processed again by its task's new owner).
#[test]
fn processing_error_with_replace_thread_keeps_processing_and_loses_nothing() {
    let (env, mut app, _) = two_threads_until_the_error(UncaughtErrorPolicy::ReplaceThread);
    wait_until("the replaced thread to own tasks again", || {
        app.state() == StreamsState::Running && app.active_tasks() == all_tasks()
    });
    assert_boom(&app);
    produce_round(&env, 2, false);
    wait_caught_up(&app);
    app.close();
    assert_eq!(app.state(), StreamsState::NotRunning);
    assert_nothing_lost(&env, "work");
    env.broker.shutdown().unwrap();
}

/// `ShutdownThread` with two threads: the failed thread stops for good, the other takes
/// over every task, keeps processing, and loses nothing.
#[test]
fn processing_error_with_shutdown_thread_leaves_one_thread_that_loses_nothing() {
    let (env, mut app, _) = two_threads_until_the_error(UncaughtErrorPolicy::ShutdownThread);
    wait_until("the remaining thread to own every task", || {
        app.state() == StreamsState::Running && app.active_tasks() == all_tasks()
    });
    assert_boom(&app);
    produce_round(&env, 2, false);
    wait_caught_up(&app);
    let group = env.broker.group_coordinator().describe("work").unwrap();
    assert_eq!(group.members.len(), 1, "one thread left in the group");
    app.close();
    assert_eq!(app.state(), StreamsState::NotRunning);
    assert_nothing_lost(&env, "work");
    env.broker.shutdown().unwrap();
}
