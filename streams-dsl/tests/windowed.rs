#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Windowed aggregations (`windowed_by(TimeWindows)`) against Kafka Streams' rules, each
//! with the store's cache off and on (the test driver commits, so flushes the cache, after
//! every record, as Kafka's does). The rules, from Kafka 3.x/4.x sources:
//! - `TimeWindows.windowsFor`: starts aligned to the epoch (multiples of the advance), a
//!   record in every window `[start, start + size)` containing it, by ascending start.
//! - `KStreamWindowAggregate.process`: the processor's stream time is the largest record
//!   timestamp it has seen, this record included; a window is updated only if
//!   `windowEnd > streamTime - grace`, else the record is skipped for that window and
//!   `dropped-records` counts one (per window); a null key is skipped and counted; the
//!   update's timestamp is the record's for a new window, else the max of the record's and
//!   the stored one.
//! - `TimeWindowedSerializer`: key bytes, then the window start as 8 bytes big-endian.
//! - `TopologyTest.timeWindow*CountShouldPreserveTopologyStructure`: generated names.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use streams_core::{
    BytesSerde, I64Serde, Nullable, StoreKind, StreamsConfig, StringSerde, TimeWindowedSerde,
    Topology, TopologyTestDriver,
};
use streams_dsl::{Consumed, Grouped, Materialized, Produced, StreamsBuilder, TimeWindows};

/// (key, window start, window end, value, timestamp) of one output record.
type Out = (String, i64, i64, i64, i64);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn store(name: &str, caching: bool, persistent: bool) -> Materialized<String, i64> {
    let mut m = Materialized::as_store(name);
    if !persistent {
        m = m.in_memory();
    }
    if caching {
        m
    } else {
        m.with_caching_disabled()
    }
}

/// `in` (String keys and values) → windowed count (in-memory store) → `out`.
fn count_topology(windows: TimeWindows, caching: bool) -> Topology {
    count_topology_on(windows, caching, false)
}

/// `in` → windowed count in an in-memory or RocksDB store → `out`.
fn count_topology_on(windows: TimeWindows, caching: bool, persistent: bool) -> Topology {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Consumed::with(StringSerde, StringSerde))
        .group_by_key(Grouped::default())
        .windowed_by(windows)
        .count(store("counts", caching, persistent))
        .to_stream()
        .to("out", Produced::default());
    builder.build().unwrap()
}

/// Pipes `(key, timestamp)` records and reads every output record.
fn run(topology: Topology, size_ms: i64, input: &[(&str, i64)]) -> (Vec<Out>, u64) {
    let driver = TopologyTestDriver::new(topology, StreamsConfig::new("app")).unwrap();
    let topic = driver
        .create_input_topic("in", StringSerde, StringSerde)
        .unwrap();
    for (k, ts) in input {
        topic
            .pipe_input_with_timestamp((*k).to_owned(), "v".to_owned(), *ts)
            .unwrap();
    }
    let size = Duration::from_millis(u64::try_from(size_ms).unwrap());
    let out = driver
        .create_output_topic("out", TimeWindowedSerde::new(StringSerde, size), I64Serde)
        .read_records_to_vec()
        .unwrap()
        .into_iter()
        .map(|r| {
            (
                r.key.key,
                r.key.window.start,
                r.key.window.end,
                r.value,
                r.timestamp,
            )
        })
        .collect();
    (out, driver.dropped_records())
}

fn o(k: &str, start: i64, end: i64, v: i64, ts: i64) -> Out {
    (k.to_owned(), start, end, v, ts)
}

#[test]
fn tumbling_count_emits_every_update_with_the_largest_timestamp_of_its_window() {
    for caching in [false, true] {
        let w = TimeWindows::of_size_with_no_grace(ms(10)).unwrap();
        let (out, dropped) = run(
            count_topology(w, caching),
            10,
            &[("a", 1), ("a", 5), ("b", 3), ("a", 12), ("a", 9)],
        );
        assert_eq!(
            out,
            vec![
                o("a", 0, 10, 1, 1),
                o("a", 0, 10, 2, 5),
                o("b", 0, 10, 1, 3),
                o("a", 10, 20, 1, 12),
                // a@9 arrives at stream time 12: [0,10) ended at 10 <= 12 - 0, dropped.
            ],
            "caching {caching}"
        );
        assert_eq!(dropped, 1, "caching {caching}");
    }
}

#[test]
fn hopping_count_puts_a_record_in_every_window_containing_it() {
    for caching in [false, true] {
        let w = TimeWindows::of_size_with_no_grace(ms(10))
            .unwrap()
            .advance_by(ms(5))
            .unwrap();
        let (out, dropped) = run(
            count_topology(w, caching),
            10,
            &[("a", 7), ("a", 9), ("a", 12)],
        );
        assert_eq!(
            out,
            vec![
                o("a", 0, 10, 1, 7),
                o("a", 5, 15, 1, 7),
                o("a", 0, 10, 2, 9),
                o("a", 5, 15, 2, 9),
                o("a", 5, 15, 3, 12),
                o("a", 10, 20, 1, 12),
            ],
            "caching {caching}"
        );
        assert_eq!(dropped, 0);
    }
}

#[test]
fn out_of_order_records_within_grace_update_their_windows_and_keep_the_max_timestamp() {
    for caching in [false, true] {
        let w = TimeWindows::of_size_and_grace(ms(10), ms(5)).unwrap();
        let (out, dropped) = run(
            count_topology(w, caching),
            10,
            &[
                ("a", 12), // stream time 12: windows ending after 7 take records
                ("a", 3),
                ("a", 9),
                ("a", 4),  // timestamp stays 9, the window's max
                ("b", 14), // stream time 14: [0,10) still open (10 > 9)
                ("a", 8),
                ("b", 15), // stream time 15: [0,10) closes (10 + 5 <= 15)
                ("a", 1),
            ],
        );
        assert_eq!(
            out,
            vec![
                o("a", 10, 20, 1, 12),
                o("a", 0, 10, 1, 3),
                o("a", 0, 10, 2, 9),
                o("a", 0, 10, 3, 9),
                o("b", 10, 20, 1, 14),
                o("a", 0, 10, 4, 9),
                o("b", 10, 20, 2, 15),
            ],
            "caching {caching}"
        );
        assert_eq!(dropped, 1, "caching {caching}");
    }
}

/// A late record is dropped once per closed window it belongs to, as Kafka's
/// `logSkippedRecordForExpiredWindow` records the sensor per window; a window whose end
/// equals stream time (no grace) is closed.
#[test]
fn late_records_are_dropped_per_closed_window_and_counted() {
    for caching in [false, true] {
        let w = TimeWindows::of_size_with_no_grace(ms(10))
            .unwrap()
            .advance_by(ms(5))
            .unwrap();
        let (out, dropped) = run(
            count_topology(w, caching),
            10,
            &[("b", 20), ("a", 12), ("a", 17)],
        );
        assert_eq!(
            out,
            vec![
                o("b", 15, 25, 1, 20),
                o("b", 20, 30, 1, 20),
                o("a", 15, 25, 1, 17),
            ],
            "caching {caching}"
        );
        assert_eq!(dropped, 3, "caching {caching}");
    }
}

#[test]
fn reduce_and_aggregate_per_window() {
    for caching in [false, true] {
        let builder = StreamsBuilder::new();
        let nums = builder.stream("nums", Consumed::with(StringSerde, I64Serde));
        let w = TimeWindows::of_size_with_no_grace(ms(10)).unwrap();
        let mut reduce_store = Materialized::as_store("max");
        let mut agg_store = Materialized::as_store("sum-count").with_value_serde(StringSerde);
        if !caching {
            reduce_store = reduce_store.with_caching_disabled();
            agg_store = agg_store.with_caching_disabled();
        }
        nums.clone()
            .group_by_key(Grouped::default())
            .windowed_by(w)
            .reduce(|a: i64, b: i64| a.max(b), reduce_store)
            .to_stream()
            .to("max-out", Produced::default());
        nums.group_by_key(Grouped::default())
            .windowed_by(w)
            .aggregate(
                String::new,
                |_k: &String, v: i64, agg: String| format!("{agg}{v},"),
                agg_store,
            )
            .to_stream()
            .to("agg-out", Produced::default());
        let driver =
            TopologyTestDriver::new(builder.build().unwrap(), StreamsConfig::new("app")).unwrap();
        let input = driver
            .create_input_topic("nums", StringSerde, I64Serde)
            .unwrap();
        for (v, ts) in [(3, 1), (9, 2), (4, 3), (7, 11)] {
            input.pipe_input_with_timestamp("k".into(), v, ts).unwrap();
        }
        let key = TimeWindowedSerde::new(StringSerde, ms(10));
        let max: Vec<_> = driver
            .create_output_topic("max-out", key.clone(), I64Serde)
            .read_records_to_vec()
            .unwrap()
            .into_iter()
            .map(|r| (r.key.to_string(), r.value, r.timestamp))
            .collect();
        let s = |k: &str| k.to_owned();
        assert_eq!(
            max,
            vec![
                (s("[k@0/10]"), 3, 1),
                (s("[k@0/10]"), 9, 2),
                (s("[k@0/10]"), 9, 3),
                (s("[k@10/20]"), 7, 11),
            ],
            "caching {caching}"
        );
        let agg: Vec<_> = driver
            .create_output_topic("agg-out", key, StringSerde)
            .read_records_to_vec()
            .unwrap()
            .into_iter()
            .map(|r| (r.key.to_string(), r.value, r.timestamp))
            .collect();
        assert_eq!(
            agg,
            vec![
                (s("[k@0/10]"), s("3,"), 1),
                (s("[k@0/10]"), s("3,9,"), 2),
                (s("[k@0/10]"), s("3,9,4,"), 3),
                (s("[k@10/20]"), s("7,"), 11),
            ],
            "caching {caching}"
        );
    }
}

/// The output key is Kafka's `TimeWindowedSerializer` layout: key bytes, then the window
/// start as 8 bytes big-endian (no end).
#[test]
fn output_keys_are_key_bytes_then_the_big_endian_window_start() {
    let w = TimeWindows::of_size_with_no_grace(ms(60_000)).unwrap();
    let driver =
        TopologyTestDriver::new(count_topology(w, false), StreamsConfig::new("app")).unwrap();
    let input = driver
        .create_input_topic("in", StringSerde, StringSerde)
        .unwrap();
    input
        .pipe_input_with_timestamp("key".into(), "v".into(), 1_700_000_123_456)
        .unwrap();
    let (key, value) = driver
        .create_output_topic("out", BytesSerde, BytesSerde)
        .read_key_value()
        .unwrap();
    let mut expected = b"key".to_vec();
    expected.extend_from_slice(&1_700_000_100_000_i64.to_be_bytes());
    assert_eq!(key, expected);
    assert_eq!(value, 1_i64.to_be_bytes());
}

/// Null keys are skipped and counted; null values reach the aggregator (Kafka 3.9/4.0's
/// time-window aggregation), so `count` counts them.
#[test]
fn null_keys_are_dropped_and_null_values_are_counted() {
    let builder = StreamsBuilder::new();
    builder
        .stream(
            "in",
            Consumed::with(Nullable(StringSerde), Nullable(StringSerde)),
        )
        .group_by_key(Grouped::default())
        .windowed_by(TimeWindows::of_size_with_no_grace(ms(10)).unwrap())
        .count(Materialized::as_store("counts").with_caching_disabled())
        .to_stream()
        .to("out", Produced::default());
    let driver =
        TopologyTestDriver::new(builder.build().unwrap(), StreamsConfig::new("app")).unwrap();
    let input = driver
        .create_input_topic("in", Nullable(StringSerde), Nullable(StringSerde))
        .unwrap();
    input
        .pipe_input_with_timestamp(Some("k".into()), Some("v".into()), 1)
        .unwrap();
    input
        .pipe_input_with_timestamp(None, Some("v".into()), 2)
        .unwrap();
    input
        .pipe_input_with_timestamp(Some("k".into()), None, 3)
        .unwrap();
    let out: Vec<_> = driver
        .create_output_topic(
            "out",
            TimeWindowedSerde::new(Nullable(StringSerde), ms(10)),
            I64Serde,
        )
        .read_records_to_vec()
        .unwrap()
        .into_iter()
        .map(|r| (r.key.key, r.value, r.timestamp))
        .collect();
    assert_eq!(
        out,
        vec![(Some("k".into()), 1, 1), (Some("k".into()), 2, 3)]
    );
    assert_eq!(driver.dropped_records(), 1);
}

/// Kafka's `TopologyTest.timeWindowNamedMaterializedCountShouldPreserveTopologyStructure` and
/// `timeWindowAnonymousMaterializedCountShouldPreserveTopologyStructure`: an unnamed store
/// burns one name, so the processor is `...-0000000003` with store `...-0000000002`.
#[test]
fn windowed_count_nodes_and_stores_are_named_as_kafka_names_them() {
    let describe = |materialized: Materialized<String, i64>| {
        let builder = StreamsBuilder::new();
        builder
            .stream("input-topic", Consumed::with(StringSerde, StringSerde))
            .group_by_key(Grouped::default())
            .windowed_by(TimeWindows::of_size_with_no_grace(ms(1)).unwrap())
            .count(materialized);
        builder.build().unwrap().describe().unwrap().to_string()
    };
    let expected = |processor: &str, store: &str| {
        format!(
            "Topologies:\n   Sub-topology: 0\n    Source: KSTREAM-SOURCE-0000000000 (topics: \
             [input-topic])\n      --> {processor}\n    Processor: {processor} (stores: \
             [{store}])\n      --> none\n      <-- KSTREAM-SOURCE-0000000000\n\n"
        )
    };
    assert_eq!(
        describe(Materialized::as_store("count-store").in_memory()),
        expected("KSTREAM-AGGREGATE-0000000001", "count-store")
    );
    assert_eq!(
        describe(Materialized::new()),
        expected(
            "KSTREAM-AGGREGATE-0000000003",
            "KSTREAM-AGGREGATE-STATE-STORE-0000000002"
        )
    );
    // reduce and aggregate draw the store name, then the processor's (no burnt name).
    let builder = StreamsBuilder::new();
    let grouped = builder
        .stream("input-topic", Consumed::with(StringSerde, I64Serde))
        .group_by_key(Grouped::default());
    let table = grouped
        .windowed_by(TimeWindows::of_size_with_no_grace(ms(1)).unwrap())
        .reduce(|a: i64, b: i64| a + b, Materialized::new());
    assert_eq!(
        table.store_name(),
        Some("KSTREAM-REDUCE-STATE-STORE-0000000001")
    );
    let text = builder.build().unwrap().describe().unwrap().to_string();
    assert!(
        text.contains(
            "Processor: KSTREAM-REDUCE-0000000002 (stores: [KSTREAM-REDUCE-STATE-STORE-0000000001])"
        ),
        "{text}"
    );
}

/// The store behind a windowed aggregation: a timestamped window store with retention =
/// size + grace (or more), change-logged as Kafka's windowed changelogs
/// (`compact,delete`, `retention.ms` = retention + 1 day); less retention is refused.
#[test]
fn the_window_store_keeps_size_plus_grace_and_its_changelog_is_compact_delete() {
    let build = |m: Materialized<String, i64>| {
        let builder = StreamsBuilder::new();
        builder
            .stream("in", Consumed::with(StringSerde, StringSerde))
            .group_by_key(Grouped::default())
            .windowed_by(TimeWindows::of_size_and_grace(ms(60_000), ms(5_000)).unwrap())
            .count(m);
        builder.build()
    };
    let topology = build(Materialized::as_store("w")).unwrap();
    let store = topology.stores().find(|s| s.name() == "w").unwrap();
    assert_eq!(
        store.kind(),
        StoreKind::TimestampedWindow {
            retention_ms: 65_000,
            window_size_ms: 60_000,
            retain_duplicates: false
        }
    );
    assert!(store.is_caching() && store.is_logging() && store.is_persistent());
    let config = store.changelog_config();
    assert_eq!(config["cleanup.policy"], "compact,delete");
    assert_eq!(config["retention.ms"], (65_000 + 86_400_000).to_string());

    let longer = build(Materialized::as_store("w").with_retention(ms(3_600_000))).unwrap();
    assert!(matches!(
        longer.stores().next().unwrap().kind(),
        StoreKind::TimestampedWindow {
            retention_ms: 3_600_000,
            ..
        }
    ));
    let err = build(Materialized::as_store("w").with_retention(ms(64_999)))
        .unwrap_err()
        .to_string();
    assert!(err.contains("retention") && err.contains("grace"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Oracle: a brute-force model of Kafka's rules, compared record for record.

/// What Kafka emits for `input` (caching off, or flushed after every record): see the
/// module comment for the rules and where they come from.
fn model(size: i64, advance: i64, grace: i64, input: &[(&str, i64)]) -> (Vec<Out>, u64) {
    let mut stream_time = -1;
    let mut windows: BTreeMap<(String, i64), (i64, i64)> = BTreeMap::new();
    let (mut out, mut dropped) = (Vec::new(), 0);
    for &(k, ts) in input {
        stream_time = stream_time.max(ts);
        // Every epoch-aligned window containing ts, by ascending start (brute force).
        for start in (0..=ts).filter(|s| s % advance == 0 && s + size > ts) {
            let end = start + size;
            if end + grace <= stream_time {
                dropped += 1;
                continue;
            }
            let e = windows.entry((k.to_owned(), start)).or_insert((0, ts));
            e.0 += 1;
            e.1 = e.1.max(ts);
            out.push((k.to_owned(), start, end, e.0, e.1));
        }
    }
    (out, dropped)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn windowed_count_matches_the_model(
        size in 1i64..20,
        advance_div in 1i64..5,
        grace in 0i64..15,
        input in prop::collection::vec((prop::sample::select(vec!["a", "b", "c"]), 0i64..120), 0..40),
        caching in any::<bool>(),
        persistent in any::<bool>(),
    ) {
        let advance = (size / advance_div).max(1);
        let w = TimeWindows::of_size_and_grace(ms(size as u64), ms(grace as u64)).unwrap()
            .advance_by(ms(advance as u64)).unwrap();
        let (out, dropped) = run(count_topology_on(w, caching, persistent), size, &input);
        let (expected, expected_dropped) = model(size, advance, grace, &input);
        prop_assert_eq!(out, expected);
        prop_assert_eq!(dropped, expected_dropped);
    }
}
