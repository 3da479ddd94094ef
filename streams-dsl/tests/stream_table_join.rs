#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Stream-table joins (`join_table`, `left_join_table`) against a model of Kafka Streams'
//! rules, with the table's cache off and on (the test driver flushes after every record).
//! The rules, from Kafka 3.x/4.x sources:
//! - `KTableSource.process`: a table record upserts its key, a tombstone deletes it, a
//!   null key is dropped; table updates reach no stream-table join output.
//! - `KStreamKTableJoinProcessor.maybeDropRecord`: a stream record with a null key or a
//!   null value is dropped, except that a left join keeps a null-key record with a value
//!   (KIP-962, Kafka 3.7+).
//! - `KStreamKTableJoinProcessor.doJoin`: the table's current value for the key (none for
//!   a null key); an inner join forwards only when there is one; the result keeps the
//!   stream record's key and timestamp, value `joiner(value, tableValue)`.
//! - `KStreamImpl.doStreamTableJoin`: processor `KSTREAM-JOIN-<n>` / `KSTREAM-LEFTJOIN-<n>`
//!   connected to the table's store; a key-changed stream is repartitioned first
//!   (`repartitionForJoin`, topic `<node>-repartition`).

use std::collections::BTreeMap;

use proptest::prelude::*;
use streams_core::{I64Serde, Nullable, StreamsConfig, StringSerde, TopologyTestDriver};
use streams_dsl::{Consumed, Joined, Materialized, Produced, StreamsBuilder};

type K = Option<String>;
type V = Option<i64>;
type Out = (K, String, i64);

/// One input: (is a table record, key, value, timestamp).
type In = (bool, K, V, i64);

fn fmt(v: &V, t: Option<&i64>) -> String {
    format!(
        "{}:{}",
        v.unwrap_or(-1),
        t.map_or("null".to_owned(), i64::to_string)
    )
}

/// The joined table: the source table, or a view of it that is not materialized itself
/// and is read through Kafka's value getters (`KTableFilter` / `KTableMapValues`).
#[derive(Debug, Clone, Copy)]
enum Shape {
    Source,
    /// `filter(v % 3 != 0)`
    Filter,
    /// `map_values(v * 10)`
    MapValues,
    /// `filter_not(v % 3 == 0)` then `map_values(v * 10)`
    FilterThenMap,
}

fn view(shape: Shape, v: i64) -> Option<i64> {
    match shape {
        Shape::Source => Some(v),
        Shape::Filter => (v % 3 != 0).then_some(v),
        Shape::MapValues => Some(v * 10),
        Shape::FilterThenMap => (v % 3 != 0).then_some(v * 10),
    }
}

fn run(left: bool, caching: bool, input: &[In]) -> (Vec<Out>, Vec<Out>) {
    run_shape(left, caching, Shape::Source, input)
}

fn run_shape(left: bool, caching: bool, shape: Shape, input: &[In]) -> (Vec<Out>, Vec<Out>) {
    let builder = StreamsBuilder::new();
    let mut m = Materialized::as_store("table");
    if !caching {
        m = m.with_caching_disabled();
    }
    let source = builder.table("table", Consumed::with(Nullable(StringSerde), I64Serde), m);
    let table = match shape {
        Shape::Source => source,
        Shape::Filter => source.filter(|_k: &K, v: &i64| v % 3 != 0),
        Shape::MapValues => source.map_values(|v: &i64| v * 10),
        Shape::FilterThenMap => source
            .filter_not(|_k: &K, v: &i64| v % 3 == 0)
            .map_values(|v: &i64| v * 10),
    };
    let stream = builder.stream(
        "stream",
        Consumed::with(Nullable(StringSerde), Nullable(I64Serde)),
    );
    let joined = if left {
        stream.left_join_table(&table, |v: &V, t: Option<&i64>| fmt(v, t), Joined::new())
    } else {
        stream.join_table(&table, |v: &V, t: &i64| fmt(v, Some(t)), Joined::new())
    };
    joined.to("out", Produced::with(Nullable(StringSerde), StringSerde));
    let driver =
        TopologyTestDriver::new(builder.build().unwrap(), StreamsConfig::new("st")).unwrap();
    let t_in = driver
        .create_input_topic("table", Nullable(StringSerde), Nullable(I64Serde))
        .unwrap();
    let s_in = driver
        .create_input_topic("stream", Nullable(StringSerde), Nullable(I64Serde))
        .unwrap();
    let out = driver.create_output_topic("out", Nullable(StringSerde), StringSerde);
    // The model.
    let mut rows: BTreeMap<String, i64> = BTreeMap::new();
    let mut want = Vec::new();
    for (is_table, key, value, ts) in input {
        if *is_table {
            t_in.pipe_input_with_timestamp(key.clone(), *value, *ts)
                .unwrap();
            if let Some(k) = key {
                match value {
                    Some(v) => rows.insert(k.clone(), *v),
                    None => rows.remove(k),
                };
            }
        } else {
            s_in.pipe_input_with_timestamp(key.clone(), *value, *ts)
                .unwrap();
            match (key, value) {
                (None, Some(_)) if left => want.push((None, fmt(value, None), *ts)),
                (Some(k), Some(_)) => {
                    let t = rows.get(k).and_then(|v| view(shape, *v));
                    let t = t.as_ref();
                    if left || t.is_some() {
                        want.push((key.clone(), fmt(value, t), *ts));
                    }
                }
                _ => {}
            }
        }
    }
    let got = out
        .read_records_to_vec()
        .unwrap()
        .into_iter()
        .map(|r| (r.key, r.value, r.timestamp))
        .collect();
    (got, want)
}

fn input_strategy() -> impl Strategy<Value = Vec<In>> {
    let key = prop_oneof![
        8 => prop::sample::select(vec!["a", "b", "c"]).prop_map(|s| Some(s.to_owned())),
        1 => Just(None),
    ];
    let value = prop_oneof![4 => (0i64..100).prop_map(Some), 1 => Just(None)];
    prop::collection::vec((any::<bool>(), key, value, 0i64..100), 1..40)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn join_matches_kafka_rules(input in input_strategy(), caching in any::<bool>()) {
        let (got, want) = run(false, caching, &input);
        prop_assert_eq!(got, want);
    }

    #[test]
    fn left_join_matches_kafka_rules(input in input_strategy(), caching in any::<bool>()) {
        let (got, want) = run(true, caching, &input);
        prop_assert_eq!(got, want);
    }

    #[test]
    fn joins_read_filtered_and_mapped_tables_through_value_getters(
        input in input_strategy(),
        caching in any::<bool>(),
        left in any::<bool>(),
        shape in prop::sample::select(vec![Shape::Filter, Shape::MapValues, Shape::FilterThenMap]),
    ) {
        let (got, want) = run_shape(left, caching, shape, &input);
        prop_assert_eq!(got, want);
    }
}

/// Names as Kafka's `KStreamImpl#doStreamTableJoin` draws them, with a repartition
/// (`repartitionForJoin`) after a key change.
#[test]
fn describe_names_match_kafka() {
    let builder = StreamsBuilder::new();
    let table = builder.table(
        "users",
        Consumed::with(StringSerde, StringSerde),
        Materialized::new(),
    );
    builder
        .stream("clicks", Consumed::with(StringSerde, StringSerde))
        .select_key(|_k: &String, v: &String| v.clone())
        .left_join_table(
            &table,
            |a: &String, b: Option<&String>| format!("{a}{b:?}"),
            Joined::new(),
        )
        .to("out", Produced::with(StringSerde, StringSerde));
    let text = builder.build().unwrap().describe().unwrap().to_string();
    for needle in [
        "Sink: KSTREAM-SINK-0000000005 (topic: KSTREAM-KEY-SELECT-0000000004-repartition)",
        "Source: KSTREAM-SOURCE-0000000007 (topics: [KSTREAM-KEY-SELECT-0000000004-repartition])",
        "Processor: KSTREAM-LEFTJOIN-0000000008 (stores: [users-STATE-STORE-0000000000])",
        "Sink: KSTREAM-SINK-0000000009 (topic: out)",
    ] {
        assert!(text.contains(needle), "missing `{needle}` in\n{text}");
    }
}

/// A windowed table cannot be joined by a stream (its store is a window store): a clear
/// build error.
#[test]
fn windowed_tables_are_refused_at_build() {
    let builder = StreamsBuilder::new();
    let counts = builder
        .stream("events", Consumed::with(StringSerde, StringSerde))
        .group_by_key(streams_dsl::Grouped::default())
        .windowed_by(
            streams_dsl::TimeWindows::of_size_with_no_grace(std::time::Duration::from_secs(1))
                .unwrap(),
        )
        .count(Materialized::as_store("w"));
    builder
        .stream("probes", Consumed::with(StringSerde, StringSerde))
        .map(|k: String, v: String| {
            (
                streams_dsl::Windowed {
                    key: k,
                    window: streams_dsl::Window {
                        start: 0,
                        end: 1000,
                    },
                },
                v,
            )
        })
        .join_table(
            &counts,
            |a: &String, b: &i64| format!("{a}{b}"),
            Joined::new(),
        )
        .to(
            "out",
            Produced::with(
                streams_core::TimeWindowedSerde::new(
                    StringSerde,
                    std::time::Duration::from_secs(1),
                ),
                StringSerde,
            ),
        );
    let err = builder.build().unwrap_err().to_string();
    assert!(err.contains("not a key-value store"), "{err}");
}

/// A stream aggregation's table (a plain key-value store) can be joined too.
#[test]
fn join_with_an_aggregated_table() {
    let builder = StreamsBuilder::new();
    let counts = builder
        .stream("events", Consumed::with(StringSerde, StringSerde))
        .group_by_key(streams_dsl::Grouped::default())
        .count(Materialized::as_store("counts"));
    builder
        .stream("probes", Consumed::with(StringSerde, StringSerde))
        .join_table(
            &counts,
            |p: &String, n: &i64| format!("{p}={n}"),
            Joined::new(),
        )
        .to("out", Produced::with(StringSerde, StringSerde));
    let driver =
        TopologyTestDriver::new(builder.build().unwrap(), StreamsConfig::new("agg")).unwrap();
    let events = driver
        .create_input_topic("events", StringSerde, StringSerde)
        .unwrap();
    let probes = driver
        .create_input_topic("probes", StringSerde, StringSerde)
        .unwrap();
    events.pipe_input("k".into(), "x".into()).unwrap();
    events.pipe_input("k".into(), "y".into()).unwrap();
    probes.pipe_input("k".into(), "p".into()).unwrap();
    let out = driver.create_output_topic("out", StringSerde, StringSerde);
    assert_eq!(
        out.read_key_values_to_vec().unwrap(),
        vec![("k".to_owned(), "p=2".to_owned())]
    );
}

/// A key-changed stream joined twice is repartitioned once (Kafka's `repartitionForJoin`
/// keeps the stream's repartition node; the names of a second one are still drawn).
#[test]
fn a_rekeyed_stream_joined_twice_is_repartitioned_once() {
    let builder = StreamsBuilder::new();
    let t1 = builder.table(
        "t1",
        Consumed::with(StringSerde, StringSerde),
        Materialized::new(),
    );
    let t2 = builder.table(
        "t2",
        Consumed::with(StringSerde, StringSerde),
        Materialized::new(),
    );
    let rekeyed = builder
        .stream("s", Consumed::with(StringSerde, StringSerde))
        .select_key(|_k: &String, v: &String| v.clone());
    rekeyed
        .clone()
        .join_table(
            &t1,
            |a: &String, b: &String| format!("{a}1{b}"),
            Joined::new(),
        )
        .to("o1", Produced::with(StringSerde, StringSerde));
    rekeyed
        .join_table(
            &t2,
            |a: &String, b: &String| format!("{a}2{b}"),
            Joined::new(),
        )
        .to("o2", Produced::with(StringSerde, StringSerde));
    let topology = builder.build().unwrap();
    let text = topology.describe().unwrap().to_string();
    assert_eq!(text.matches("-repartition)").count(), 1, "{text}");
    // Names 13-15 are burnt by the second join's repartition step.
    assert!(
        text.contains("Processor: KSTREAM-JOIN-0000000016 (stores: [t2-STATE-STORE-0000000003])"),
        "{text}"
    );
    let driver = TopologyTestDriver::new(topology, StreamsConfig::new("twice")).unwrap();
    driver
        .create_input_topic("t1", StringSerde, StringSerde)
        .unwrap()
        .pipe_input("k".into(), "x".into())
        .unwrap();
    driver
        .create_input_topic("t2", StringSerde, StringSerde)
        .unwrap()
        .pipe_input("k".into(), "y".into())
        .unwrap();
    driver
        .create_input_topic("s", StringSerde, StringSerde)
        .unwrap()
        .pipe_input("a".into(), "k".into())
        .unwrap();
    let o1 = driver.create_output_topic("o1", StringSerde, StringSerde);
    let o2 = driver.create_output_topic("o2", StringSerde, StringSerde);
    assert_eq!(o1.read_value().unwrap(), "k1x");
    assert_eq!(o2.read_value().unwrap(), "k2y");
}
