#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Session-window aggregations (`windowed_by(SessionWindows)`) against Kafka Streams' rules,
//! with the store's cache off and on (the test driver commits, so flushes the cache, after
//! every record, as Kafka's does). The rules, from Kafka 3.x/4.x sources:
//! - `KStreamSessionWindowAggregate.process`: stream time is the largest timestamp the
//!   processor has seen, this record included; `windowCloseTime = streamTime - grace - gap`;
//!   a record at `ts` finds the sessions of its key with `end >= ts - gap` and
//!   `start <= ts + gap` (`findSessions`), merges their aggregates into the initializer's
//!   with the merger in store order, the merged session spans min start .. max end; the
//!   record is dropped (and `dropped-records` counts one) if `mergedEnd < windowCloseTime`;
//!   else, if the merged session is not `[ts, ts]`, every found session is removed and
//!   forwarded as a delete, then the aggregate (record aggregated last) is put and
//!   forwarded. Every forwarded record's timestamp is its session's end (also
//!   `SessionCacheFlushListener` for cached stores). Null keys are skipped and counted.
//! - `KStreamSessionWindowAggregateProcessorTest`: `shouldImmediatelyForwardRemovedSessionsWhenMerging`
//!   (delete of `[0,0]` at 0 then `[0,5]` at 5), `shouldLogAndMeterWhenSkippingLateRecordWith{Zero,Nonzero}Grace`.
//! - `SessionWindowedKStreamImpl`: count merger = sum; reduce's merger = the reducer.
//! - `SessionKeySchema.toBinary` (`SessionWindowedSerializer`): key bytes, end, start (8 bytes
//!   big-endian each).
//! - `SessionStoreMaterializer`: retention = gap + grace unless materialized with more; less
//!   is an error. `TopologyTest.sessionWindow*CountShouldPreserveTopologyStructure`: names.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use streams_core::{
    BytesSerde, I64Serde, Nullable, SessionWindowedSerde, StoreKind, StreamsConfig, StringSerde,
    Topology, TopologyTestDriver,
};
use streams_dsl::{Consumed, Grouped, Materialized, Produced, SessionWindows, StreamsBuilder};

/// (key, session start, session end, value or delete, timestamp) of one output record.
type Out = (String, i64, i64, Option<i64>, i64);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn o(k: &str, start: i64, end: i64, v: Option<i64>, ts: i64) -> Out {
    (k.to_owned(), start, end, v, ts)
}

fn store(caching: bool) -> Materialized<String, i64> {
    let m = Materialized::as_store("sessions").in_memory();
    if caching {
        m
    } else {
        m.with_caching_disabled()
    }
}

/// `in` (String keys and values) → session count → `out`.
fn count_topology(windows: SessionWindows, m: Materialized<String, i64>) -> Topology {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Consumed::with(StringSerde, StringSerde))
        .group_by_key(Grouped::default())
        .windowed_by(windows)
        .count(m)
        .to_stream()
        .to("out", Produced::default());
    builder.build().unwrap()
}

/// Pipes `(key, timestamp)` records; every output record and the dropped-records count.
fn run(topology: Topology, input: &[(&str, i64)]) -> (Vec<Out>, u64) {
    let driver = TopologyTestDriver::new(topology, StreamsConfig::new("app")).unwrap();
    let topic = driver
        .create_input_topic("in", StringSerde, StringSerde)
        .unwrap();
    for (k, ts) in input {
        topic
            .pipe_input_with_timestamp((*k).to_owned(), "v".to_owned(), *ts)
            .unwrap();
    }
    (read_out(&driver), driver.dropped_records())
}

fn read_out(driver: &TopologyTestDriver) -> Vec<Out> {
    driver
        .create_output_topic(
            "out",
            SessionWindowedSerde::new(StringSerde),
            Nullable(I64Serde),
        )
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
        .collect()
}

fn gap(n: u64) -> SessionWindows {
    SessionWindows::of_inactivity_gap_with_no_grace(ms(n)).unwrap()
}

#[test]
fn sessions_are_created_extended_and_merged_deletes_first() {
    let input = [
        ("a", 0),
        ("a", 5),
        ("a", 30),
        ("a", 20),
        ("a", 15),
        ("b", 16),
    ];
    let expected = vec![
        o("a", 0, 0, Some(1), 0),
        // extended: the old session is deleted (Kafka's shouldImmediatelyForwardRemovedSessionsWhenMerging)
        o("a", 0, 0, None, 0),
        o("a", 0, 5, Some(2), 5),
        o("a", 30, 30, Some(1), 30),
        o("a", 30, 30, None, 30),
        o("a", 20, 30, Some(2), 30),
        // 15 bridges [0,5] and [20,30]: both deleted (store order: by end), then the merge
        o("a", 0, 5, None, 5),
        o("a", 20, 30, None, 30),
        o("a", 0, 30, Some(5), 30),
        o("b", 16, 16, Some(1), 16),
    ];
    for caching in [false, true] {
        let (out, dropped) = run(
            count_topology(
                SessionWindows::of_inactivity_gap_and_grace(ms(10), ms(100)).unwrap(),
                store(caching),
            ),
            &input,
        );
        assert_eq!(out, expected, "caching {caching}");
        assert_eq!(dropped, 0);
    }
}

/// A record inside an existing session `[0, 10]`: the merged session differs from `[ts, ts]`,
/// so Kafka removes and forwards a delete of `[0, 10]` and then puts `[0, 10]` again. Without
/// a cache both reach downstream; with one, the remove and the put of the same session
/// coalesce into one update.
#[test]
fn a_record_inside_a_session_rewrites_it() {
    let input = [("a", 0), ("a", 10), ("a", 5)];
    let (out, _) = run(count_topology(gap(10), store(false)), &input);
    assert_eq!(
        out[2..],
        [
            o("a", 0, 10, Some(2), 10),
            o("a", 0, 10, None, 10),
            o("a", 0, 10, Some(3), 10),
        ]
    );
    let (out, _) = run(count_topology(gap(10), store(true)), &input);
    assert_eq!(out[3..], [o("a", 0, 10, Some(3), 10)]);
    // A record at the very instant of a one-record session: no delete either way.
    let (out, _) = run(count_topology(gap(10), store(false)), &[("a", 7), ("a", 7)]);
    assert_eq!(out, [o("a", 7, 7, Some(1), 7), o("a", 7, 7, Some(2), 7)]);
}

/// Kafka's `shouldLogAndMeterWhenSkippingLateRecordWith{Zero,Nonzero}Grace`: with gap 10,
/// a record is dropped when its merged session ends before stream time - gap - grace.
#[test]
fn late_records_are_dropped_when_the_merged_session_ends_before_stream_time_minus_gap_and_grace() {
    for caching in [false, true] {
        // grace 0: stream time 11 → close time 1; [0,0] ends before it.
        let (out, dropped) = run(
            count_topology(gap(10), store(caching)),
            &[("dummy", 0), ("on-time", 0), ("dummy", 11), ("late", 0)],
        );
        assert_eq!(dropped, 1, "caching {caching}");
        assert!(out.iter().all(|r| r.0 != "late"));

        // grace 1: stream time 11 → close time 0, kept; stream time 12 → 1, dropped.
        let windows = SessionWindows::of_inactivity_gap_and_grace(ms(10), ms(1)).unwrap();
        let (out, dropped) = run(
            count_topology(windows, store(caching)),
            &[
                ("dummy", 0),
                ("on-time", 0),
                ("dummy", 11),
                ("on-time-2", 0),
                ("dummy", 12),
                ("late", 0),
            ],
        );
        assert_eq!(dropped, 1, "{out:?}");
        // Taken by the processor (end 0 = close time), but already outside the store's
        // retention (gap + grace: sessions ending before 11 - 11 + 1): without a cache it
        // is forwarded and not stored, as in Kafka; with one, our caching layer drops the
        // write before caching it (Kafka caches and forwards it; see ARCHITECTURE.md).
        assert_eq!(
            out.contains(&o("on-time-2", 0, 0, Some(1), 0)),
            !caching,
            "{out:?}"
        );
        assert!(out.iter().all(|r| r.0 != "late"));

        // An old record is taken when it merges into a session that is still open.
        let (out, dropped) = run(
            count_topology(gap(10), store(caching)),
            &[("a", 100), ("a", 91), ("b", 50)],
        );
        assert_eq!(dropped, 1);
        assert_eq!(out.last(), Some(&o("a", 91, 100, Some(2), 100)));
    }
}

#[test]
fn reduce_and_aggregate_merge_sessions_with_the_reducer_and_the_merger() {
    for caching in [false, true] {
        let builder = StreamsBuilder::new();
        let stream = builder.stream("in", Consumed::with(StringSerde, StringSerde));
        // Retention above gap + grace: with the default (10 ms) the store no longer
        // returns [0,0] once it has seen stream time 20 (Kafka's segmented stores read
        // from `observedStreamTime - retention + 1`; see the test below).
        let hour = ms(3_600_000);
        let mut m = Materialized::as_store("concat")
            .with_value_serde(StringSerde)
            .with_retention(hour);
        let mut r = Materialized::as_store("longest").with_retention(hour);
        if !caching {
            m = m.with_caching_disabled();
            r = r.with_caching_disabled();
        }
        stream
            .clone()
            .group_by_key(Grouped::default())
            .windowed_by(gap(10))
            .aggregate(
                || "<".to_owned(),
                |_k: &String, v: String, agg: String| format!("{agg}{v}"),
                |_k: &String, a: String, b: String| format!("{a}+{b}"),
                m,
            )
            .to_stream()
            .to(
                "agg",
                Produced::with(
                    SessionWindowedSerde::new(StringSerde),
                    Nullable(StringSerde),
                ),
            );
        stream
            .group_by_key(Grouped::default())
            .windowed_by(gap(10))
            .reduce(
                |a: String, b: String| if b.len() > a.len() { b } else { a },
                r,
            );
        let driver =
            TopologyTestDriver::new(builder.build().unwrap(), StreamsConfig::new("app")).unwrap();
        let input = driver
            .create_input_topic("in", StringSerde, StringSerde)
            .unwrap();
        for (v, ts) in [("x", 0), ("yyy", 20), ("zz", 10)] {
            input
                .pipe_input_with_timestamp("k".into(), v.into(), ts)
                .unwrap();
        }
        // The initializer's value, merged with [0,0] then [20,20] (store order), then the record.
        assert_eq!(
            driver
                .read_session_store::<String, String>("concat")
                .unwrap(),
            vec![("k".into(), 0, 20, "<+<x+<yyyzz".into())]
        );
        assert_eq!(
            driver
                .read_session_store::<String, String>("longest")
                .unwrap(),
            vec![("k".into(), 0, 20, "yyy".into())]
        );
        let out: Vec<_> = driver
            .create_output_topic(
                "agg",
                SessionWindowedSerde::new(StringSerde),
                Nullable(StringSerde),
            )
            .read_records_to_vec()
            .unwrap()
            .into_iter()
            .map(|r| (r.key.to_string(), r.value, r.timestamp))
            .collect();
        assert_eq!(
            out[2..],
            [
                ("[k@0/0]".to_owned(), None, 0),
                ("[k@20/20]".to_owned(), None, 20),
                ("[k@0/20]".to_owned(), Some("<+<x+<yyyzz".to_owned()), 20),
            ]
        );
    }
}

#[test]
fn output_keys_are_key_bytes_then_big_endian_end_then_start() {
    let driver = TopologyTestDriver::new(
        count_topology(gap(10), store(false)),
        StreamsConfig::new("app"),
    )
    .unwrap();
    let input = driver
        .create_input_topic("in", StringSerde, StringSerde)
        .unwrap();
    input
        .pipe_input_with_timestamp("key".into(), "v".into(), 3)
        .unwrap();
    input
        .pipe_input_with_timestamp("key".into(), "v".into(), 9)
        .unwrap();
    let keys: Vec<Vec<u8>> = driver
        .create_output_topic("out", BytesSerde, Nullable(BytesSerde))
        .read_records_to_vec()
        .unwrap()
        .into_iter()
        .map(|r| r.key)
        .collect();
    let bytes = |end: i64, start: i64| {
        [b"key".as_slice(), &end.to_be_bytes(), &start.to_be_bytes()].concat()
    };
    assert_eq!(keys, vec![bytes(3, 3), bytes(3, 3), bytes(9, 3)]);
}

#[test]
fn null_keys_are_dropped_and_null_values_are_counted() {
    let builder = StreamsBuilder::new();
    builder
        .stream(
            "in",
            Consumed::with(Nullable(StringSerde), Nullable(StringSerde)),
        )
        .group_by_key(Grouped::default())
        .windowed_by(gap(10))
        .count(Materialized::as_store("c").with_caching_disabled())
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
            SessionWindowedSerde::new(Nullable(StringSerde)),
            Nullable(I64Serde),
        )
        .read_records_to_vec()
        .unwrap()
        .into_iter()
        .map(|r| (r.key.to_string_lossy(), r.value, r.timestamp))
        .collect();
    assert_eq!(
        out,
        vec![
            ("k@1/1".to_owned(), Some(1), 1),
            ("k@1/1".to_owned(), None, 1),
            ("k@1/3".to_owned(), Some(2), 3),
        ]
    );
    assert_eq!(driver.dropped_records(), 1);
}

trait Lossy {
    fn to_string_lossy(&self) -> String;
}

impl Lossy for streams_core::Windowed<Option<String>> {
    fn to_string_lossy(&self) -> String {
        format!(
            "{}@{}/{}",
            self.key.clone().unwrap_or_default(),
            self.window.start,
            self.window.end
        )
    }
}

/// Kafka's `TopologyTest.sessionWindowNamedMaterializedCountShouldPreserveTopologyStructure`
/// and `sessionWindowAnonymousMaterializedCountShouldPreserveTopologyStructure`.
#[test]
fn session_count_nodes_and_stores_are_named_as_kafka_names_them() {
    let describe = |materialized: Materialized<String, i64>| {
        let builder = StreamsBuilder::new();
        builder
            .stream("input-topic", Consumed::with(StringSerde, StringSerde))
            .group_by_key(Grouped::default())
            .windowed_by(gap(1))
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
    let builder = StreamsBuilder::new();
    let table = builder
        .stream("input-topic", Consumed::with(StringSerde, I64Serde))
        .group_by_key(Grouped::default())
        .windowed_by(gap(1))
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

/// The store: a session store with retention = gap + grace (or more), cached, logged,
/// changelog `compact,delete` with `retention.ms` = retention + 1 day; less is refused.
#[test]
fn the_session_store_keeps_gap_plus_grace_and_its_changelog_is_compact_delete() {
    let build = |m: Materialized<String, i64>| {
        let builder = StreamsBuilder::new();
        builder
            .stream("in", Consumed::with(StringSerde, StringSerde))
            .group_by_key(Grouped::default())
            .windowed_by(
                SessionWindows::of_inactivity_gap_and_grace(ms(300_000), ms(5_000)).unwrap(),
            )
            .count(m);
        builder.build()
    };
    let topology = build(Materialized::as_store("s")).unwrap();
    let store = topology.stores().find(|s| s.name() == "s").unwrap();
    assert_eq!(
        store.kind(),
        StoreKind::Session {
            retention_ms: 305_000
        }
    );
    assert!(store.is_caching() && store.is_logging() && store.is_persistent());
    let config = store.changelog_config();
    assert_eq!(config["cleanup.policy"], "compact,delete");
    assert_eq!(config["retention.ms"], (305_000 + 86_400_000).to_string());
    let longer = build(Materialized::as_store("s").with_retention(ms(3_600_000))).unwrap();
    assert_eq!(
        longer.stores().next().unwrap().kind(),
        StoreKind::Session {
            retention_ms: 3_600_000
        }
    );
    let err = build(Materialized::as_store("s").with_retention(ms(304_999)))
        .unwrap_err()
        .to_string();
    assert!(err.contains("retention") && err.contains("gap"), "{err}");
}

/// Kafka's `AbstractRocksDBSegmentedBytesStore` reads sessions ending at or after
/// `observedStreamTime - retention + 1` only (the store's stream time: the largest session
/// end written): with the default retention (gap + grace), a session that a late record
/// could still bridge may already be gone, and the record starts a session of its own.
#[test]
fn sessions_beyond_the_store_retention_are_not_merged() {
    let (out, dropped) = run(
        count_topology(
            gap(10),
            Materialized::as_store("sessions").with_caching_disabled(),
        ),
        &[("k", 0), ("k", 20), ("k", 10)],
    );
    assert_eq!(dropped, 0);
    assert_eq!(
        out[2..],
        [o("k", 20, 20, None, 20), o("k", 10, 20, Some(2), 20)]
    );
}

#[test]
fn a_persistent_session_store_gives_the_same_results() {
    let input = [("a", 0), ("a", 5), ("a", 30), ("a", 20), ("a", 15)];
    let (in_memory, _) = run(count_topology(gap(10), store(true)), &input);
    let (rocks, _) = run(
        count_topology(gap(10), Materialized::as_store("sessions")),
        &input,
    );
    assert_eq!(in_memory, rocks);
}

// ---------------------------------------------------------------------------------------------
// Oracle: sessions as connected components of the accepted timestamps of a key (records no
// more than `gap` apart chain together), not the incremental merge the processor does.

/// What Kafka emits for `input` with caching off, and the dropped count.
fn model(gap: i64, grace: i64, input: &[(&str, i64)]) -> (Vec<Out>, u64) {
    let mut accepted: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut stream_time = -1i64;
    let mut out = Vec::new();
    let mut dropped = 0;
    // Components of sorted timestamps: (start, end, count).
    let components = |ts: &[i64]| {
        let mut sorted = ts.to_vec();
        sorted.sort_unstable();
        let mut comps: Vec<(i64, i64, i64)> = Vec::new();
        for t in sorted {
            match comps.last_mut() {
                Some(c) if t - c.1 <= gap => {
                    c.1 = t;
                    c.2 += 1;
                }
                _ => comps.push((t, t, 1)),
            }
        }
        comps
    };
    for (k, ts) in input {
        let ts = *ts;
        stream_time = stream_time.max(ts);
        let before = components(accepted.get(*k).map_or(&[][..], Vec::as_slice));
        let mut with = accepted.get(*k).cloned().unwrap_or_default();
        with.push(ts);
        let after = components(&with);
        let merged = *after.iter().find(|c| c.0 <= ts && ts <= c.1).unwrap();
        if merged.1 < stream_time - grace - gap {
            dropped += 1;
            continue;
        }
        if (merged.0, merged.1) != (ts, ts) {
            let mut gone: Vec<_> = before
                .iter()
                .filter(|c| c.0 >= merged.0 && c.1 <= merged.1)
                .collect();
            gone.sort_by_key(|c| (c.1, c.0));
            for c in gone {
                out.push(o(k, c.0, c.1, None, c.1));
            }
        }
        out.push(o(k, merged.0, merged.1, Some(merged.2), merged.1));
        accepted.insert((*k).to_owned(), with);
    }
    (out, dropped)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Random keyed records, out of order and late, against the model: every output record
    /// with the cache off; with the cache on (flushed after every record) the same except
    /// that a delete immediately overwritten by the same session is coalesced away.
    #[test]
    fn session_count_matches_the_component_model(
        gap in 1i64..20,
        grace in 0i64..20,
        input in prop::collection::vec((prop::sample::select(vec!["a", "b"]), 0i64..200), 0..40),
    ) {
        let windows = SessionWindows::of_inactivity_gap_and_grace(
            ms(u64::try_from(gap).unwrap()), ms(u64::try_from(grace).unwrap())).unwrap();
        // A long retention, so that no segment expires under the model.
        let m = |caching: bool| store(caching).with_retention(ms(3_600_000));
        let (expected, expected_dropped) = model(gap, grace, &input);
        let (out, dropped) = run(count_topology(windows, m(false)), &input);
        prop_assert_eq!(&out, &expected);
        prop_assert_eq!(dropped, expected_dropped);

        let (cached, dropped) = run(count_topology(windows, m(true)), &input);
        prop_assert_eq!(dropped, expected_dropped);
        // Within one record, the cache keeps the last write per session.
        let mut coalesced = Vec::new();
        let mut i = 0;
        while i < expected.len() {
            let r = &expected[i];
            let overwritten = r.3.is_none()
                && expected[i + 1..]
                    .iter()
                    .take_while(|n| n.3.is_none())
                    .chain(expected[i + 1..].iter().find(|n| n.3.is_some()))
                    .any(|n| n.3.is_some() && (&n.0, n.1, n.2) == (&r.0, r.1, r.2));
            if !overwritten {
                coalesced.push(r.clone());
            }
            i += 1;
        }
        prop_assert_eq!(cached, coalesced);
    }
}
