#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `KTable::suppress` against Kafka Streams' rules (3.x/4.x sources), through the
//! TopologyTestDriver, with the upstream store's cache off and on:
//! - `KTableSuppressProcessorSupplier.KTableSuppressProcessor.process`: the processor's
//!   stream time is the largest record timestamp it has seen; each update is buffered,
//!   then every entry with buffer time <= stream time - suppress duration is emitted,
//!   oldest first; then, over capacity, `EMIT` evicts the oldest until within bounds and
//!   `SHUT_DOWN` fails with "<node> buffer exceeded its max capacity..."; a final-results
//!   suppression drops a window whose final value is a delete (`safeToDropTombstones`).
//! - `TimeDefinitions`: buffer time = window end (`untilWindowCloses`) or the record
//!   timestamp (`untilTimeLimit`).
//! - `KTableImpl#buildSuppress` / `GraphGraceSearchUtil`: the final-results duration is the
//!   grace of the windowed aggregation upstream (gap + grace for sessions).
//! - `InMemoryTimeOrderedKeyValueChangeBuffer`: one entry per key ordered by (buffer time,
//!   key bytes); a buffered key keeps its place (`cleanPut`), the latest update replaces
//!   its value; an eviction forwards the latest update's key, `Change(new, old)`,
//!   timestamp and headers; the changelog value is `BufferValue` + buffer time with header
//!   `v` = 3, logged at flush (commit), a tombstone once evicted.
//! - `KStreamWindowAggregate`: a window takes a record iff `end > streamTime - grace`.
//! - `SuppressTopologyTest`: generated names.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use proptest::prelude::*;
use streams_core::{
    BytesSerde, I64Serde, Nullable, StreamsConfig, StreamsError, StringSerde, TimeWindowedSerde,
    TopologyError, TopologyTestDriver, changelog_topic,
};
use streams_dsl::{
    BufferConfig, Consumed, Grouped, Materialized, Produced, SessionWindows, SlidingWindows,
    StreamsBuilder, Suppressed, TimeWindows, Windowed,
};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn counts(caching: bool) -> Materialized<String, i64> {
    let m = Materialized::as_store("counts").in_memory();
    if caching {
        m
    } else {
        m.with_caching_disabled()
    }
}

/// (key, window start, count, timestamp) of one final result.
type Final = (String, i64, i64, i64);

/// Windowed count → `suppress(untilWindowCloses(unbounded()))` → `final`.
fn final_results(
    size: i64,
    advance: i64,
    grace: i64,
    caching: bool,
    input: &[(String, i64)],
) -> Vec<Final> {
    let windows = TimeWindows::of_size_and_grace(ms(size as u64), ms(grace as u64))
        .unwrap()
        .advance_by(ms(advance as u64))
        .unwrap();
    let serde = || TimeWindowedSerde::new(StringSerde, ms(size as u64));
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Consumed::with(StringSerde, StringSerde))
        .group_by_key(Grouped::with(StringSerde, StringSerde))
        .windowed_by(windows)
        .count(counts(caching))
        .suppress(Suppressed::until_window_closes(BufferConfig::unbounded()))
        .to_stream()
        .to("final", Produced::with(serde(), Nullable(I64Serde)));
    let driver =
        TopologyTestDriver::new(builder.build().unwrap(), StreamsConfig::new("app")).unwrap();
    let topic = driver
        .create_input_topic("in", StringSerde, StringSerde)
        .unwrap();
    for (k, ts) in input {
        topic
            .pipe_input_with_timestamp(k.clone(), "v".into(), *ts)
            .unwrap();
    }
    driver
        .create_output_topic("final", serde(), Nullable(I64Serde))
        .read_records_to_vec()
        .unwrap()
        .into_iter()
        .map(|r| {
            (
                r.key.key,
                r.key.window.start,
                r.value.expect("final results never delete"),
                r.timestamp,
            )
        })
        .collect()
}

/// The naive recomputation: per input record, stream time = the largest timestamp so far;
/// a window `[s, s + size)` of the record takes it iff `s + size > streamTime - grace`
/// (count + 1, timestamp = max); after the record, every window with records whose
/// `end <= streamTime - grace` that was not reported yet is reported with its count, in
/// the buffer's order (window end, then serialized windowed key: key bytes + start).
fn oracle(size: i64, advance: i64, grace: i64, input: &[(String, i64)]) -> Vec<Final> {
    let mut stream_time = -1i64;
    let mut windows: BTreeMap<(String, i64), (i64, i64)> = BTreeMap::new();
    let mut reported: BTreeSet<(String, i64)> = BTreeSet::new();
    let mut out = Vec::new();
    for (key, ts) in input {
        stream_time = stream_time.max(*ts);
        let first_start = (ts - size + advance).max(0) / advance * advance;
        let mut start = first_start;
        while start <= *ts {
            if start + size > *ts && start + size > stream_time - grace {
                let e = windows.entry((key.clone(), start)).or_insert((0, *ts));
                e.0 += 1;
                e.1 = e.1.max(*ts);
            }
            start += advance;
        }
        let mut closed: Vec<(i64, Vec<u8>, Final)> = windows
            .iter()
            .filter(|((k, s), _)| {
                s + size <= stream_time - grace && !reported.contains(&(k.clone(), *s))
            })
            .map(|((k, s), (n, t))| {
                let mut bytes = k.as_bytes().to_vec();
                bytes.extend_from_slice(&s.to_be_bytes());
                (s + size, bytes, (k.clone(), *s, *n, *t))
            })
            .collect();
        closed.sort();
        for (_, _, f) in closed {
            reported.insert((f.0.clone(), f.1));
            out.push(f);
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Exactly one final result per closed window, with its final count and the largest
    /// timestamp of its records, emitted by the record that closes it, as the naive
    /// recomputation of Kafka's grace rules says; with and without the upstream cache.
    #[test]
    fn final_results_match_the_naive_recomputation(
        size in 1i64..8,
        hops in 1i64..3,
        grace in 0i64..6,
        input in prop::collection::vec(("[abc]{1,2}", 0i64..40), 1..25),
    ) {
        let advance = (size / hops).max(1);
        let expected = oracle(size, advance, grace, &input);
        let distinct: BTreeSet<(String, i64)> =
            expected.iter().map(|f| (f.0.clone(), f.1)).collect();
        prop_assert_eq!(distinct.len(), expected.len());
        for caching in [false, true] {
            let got = final_results(size, advance, grace, caching, &input);
            prop_assert_eq!(&got, &expected, "caching {}", caching);
        }
    }
}

#[test]
fn the_closing_record_emits_the_final_result_with_its_timestamp() {
    let input: Vec<(String, i64)> = [("a", 1), ("a", 4), ("b", 12), ("a", 9), ("c", 14)]
        .iter()
        .map(|(k, t)| ((*k).to_owned(), *t))
        .collect();
    for caching in [false, true] {
        // [0,10) with grace 4 closes at stream time 14; a@9 came within grace.
        assert_eq!(
            final_results(10, 10, 4, caching, &input),
            vec![("a".to_owned(), 0, 3, 9)],
            "caching {caching}"
        );
    }
}

/// (key, value, timestamp) of one record of the table's changelog stream.
type Update = (String, Option<i64>, i64);

/// A model of Kafka's buffer for `untilTimeLimit` on the updates the upstream table sent.
fn time_limit_model(limit: i64, max_records: Option<u64>, updates: &[Update]) -> Vec<Update> {
    // (buffer time, key) -> latest update; key -> buffer time.
    let mut sorted: BTreeMap<(i64, Vec<u8>), Update> = BTreeMap::new();
    let mut index: BTreeMap<String, i64> = BTreeMap::new();
    let mut stream_time = -1i64;
    let mut out = Vec::new();
    for u in updates {
        stream_time = stream_time.max(u.2);
        let time = *index.entry(u.0.clone()).or_insert(u.2);
        sorted.insert((time, u.0.as_bytes().to_vec()), u.clone());
        let mut evict = |sorted: &mut BTreeMap<(i64, Vec<u8>), Update>| {
            let ((_, _), e) = sorted.pop_first().unwrap();
            index.remove(&e.0);
            out.push(e);
        };
        while sorted
            .keys()
            .next()
            .is_some_and(|(t, _)| *t <= stream_time - limit)
        {
            evict(&mut sorted);
        }
        if let Some(max) = max_records {
            while sorted.len() as u64 > max {
                evict(&mut sorted);
            }
        }
    }
    out
}

/// Count (cache on or off) → `untilTimeLimit(limit, maxRecords(n).emitEarlyWhenFull())`;
/// returns the table's own updates and the suppressed ones.
fn time_limited(
    limit: u64,
    max_records: Option<u64>,
    caching: bool,
    input: &[(String, i64)],
) -> (Vec<Update>, Vec<Update>) {
    let builder = StreamsBuilder::new();
    let table = builder
        .stream("in", Consumed::with(StringSerde, StringSerde))
        .group_by_key(Grouped::with(StringSerde, StringSerde))
        .count(counts(caching));
    table
        .to_stream()
        .to("updates", Produced::with(StringSerde, Nullable(I64Serde)));
    let buffer: BufferConfig = match max_records {
        Some(n) => BufferConfig::max_records(n).into(),
        None => BufferConfig::unbounded().into(),
    };
    table
        .suppress(Suppressed::until_time_limit(ms(limit), buffer))
        .to_stream()
        .to("held", Produced::with(StringSerde, Nullable(I64Serde)));
    let driver =
        TopologyTestDriver::new(builder.build().unwrap(), StreamsConfig::new("app")).unwrap();
    let topic = driver
        .create_input_topic("in", StringSerde, StringSerde)
        .unwrap();
    for (k, ts) in input {
        topic
            .pipe_input_with_timestamp(k.clone(), "v".into(), *ts)
            .unwrap();
    }
    let read = |name: &str| -> Vec<Update> {
        driver
            .create_output_topic(name, StringSerde, Nullable(I64Serde))
            .read_records_to_vec()
            .unwrap()
            .into_iter()
            .map(|r| (r.key, r.value, r.timestamp))
            .collect()
    };
    (read("updates"), read("held"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// `untilTimeLimit` with an unbounded or an emit-early buffer forwards what Kafka's
    /// buffer model forwards for the same upstream updates.
    #[test]
    fn time_limit_matches_kafkas_buffer_model(
        limit in 0u64..10,
        max_records in prop::option::of(1u64..4),
        input in prop::collection::vec(("[abcd]", 0i64..30), 1..25),
    ) {
        for caching in [false, true] {
            let (updates, held) = time_limited(limit, max_records, caching, &input);
            let expected = time_limit_model(limit as i64, max_records, &updates);
            prop_assert_eq!(&held, &expected, "caching {}", caching);
        }
    }
}

#[test]
fn a_buffered_key_keeps_its_place_and_forwards_its_latest_update() {
    let input: Vec<(String, i64)> = [("b", 0), ("a", 1), ("b", 6), ("c", 10), ("d", 11)]
        .iter()
        .map(|(k, t)| ((*k).to_owned(), *t))
        .collect();
    let (_, held) = time_limited(10, None, false, &input);
    // At 10: b (buffered at 0, latest update count 2 @6) goes; at 11: a (buffered at 1).
    assert_eq!(
        held,
        vec![("b".to_owned(), Some(2), 6), ("a".to_owned(), Some(1), 1)]
    );
    // An emit-early buffer of one record emits the oldest as soon as a second key comes.
    let (_, held) = time_limited(100, Some(1), false, &input[..3]);
    assert_eq!(
        held,
        vec![("b".to_owned(), Some(1), 0), ("a".to_owned(), Some(1), 1)]
    );
}

#[test]
fn shut_down_when_full_fails_with_a_typed_error() {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Consumed::with(StringSerde, StringSerde))
        .group_by_key(Grouped::with(StringSerde, StringSerde))
        .count(counts(false))
        .suppress(
            Suppressed::until_time_limit(
                ms(1_000),
                BufferConfig::max_records(2).shut_down_when_full(),
            )
            .with_name("hold"),
        )
        .to_stream()
        .to("held", Produced::with(StringSerde, Nullable(I64Serde)));
    let driver =
        TopologyTestDriver::new(builder.build().unwrap(), StreamsConfig::new("app")).unwrap();
    let topic = driver
        .create_input_topic("in", StringSerde, StringSerde)
        .unwrap();
    topic
        .pipe_input_with_timestamp("a".into(), "v".into(), 0)
        .unwrap();
    topic
        .pipe_input_with_timestamp("b".into(), "v".into(), 1)
        .unwrap();
    topic
        .pipe_input_with_timestamp("a".into(), "v".into(), 2)
        .unwrap();
    let err = topic
        .pipe_input_with_timestamp("c".into(), "v".into(), 3)
        .unwrap_err();
    match &err {
        StreamsError::SuppressionBufferFull {
            node,
            records,
            max_records,
            ..
        } => assert_eq!((node.as_str(), *records, *max_records), ("hold", 3, 2)),
        other => panic!("unexpected error {other:?}"),
    }
    assert!(
        err.to_string()
            .starts_with("hold buffer exceeded its max capacity. Currently [3/2] records and [")
    );
}

/// Session windows close gap + grace after their end; a merged-away session (a delete)
/// is not forwarded as a final result.
#[test]
fn session_final_results_wait_for_gap_plus_grace_and_drop_deleted_sessions() {
    use streams_core::SessionWindowedSerde;
    for caching in [false, true] {
        let builder = StreamsBuilder::new();
        builder
            .stream("in", Consumed::with(StringSerde, StringSerde))
            .group_by_key(Grouped::with(StringSerde, StringSerde))
            .windowed_by(SessionWindows::of_inactivity_gap_and_grace(ms(5), ms(2)).unwrap())
            .count(counts(caching))
            .suppress(Suppressed::until_window_closes(BufferConfig::unbounded()))
            .to_stream()
            .to(
                "final",
                Produced::with(SessionWindowedSerde::new(StringSerde), Nullable(I64Serde)),
            );
        let driver =
            TopologyTestDriver::new(builder.build().unwrap(), StreamsConfig::new("app")).unwrap();
        let topic = driver
            .create_input_topic("in", StringSerde, StringSerde)
            .unwrap();
        let out = driver.create_output_topic(
            "final",
            SessionWindowedSerde::new(StringSerde),
            Nullable(I64Serde),
        );
        // a@0 then a@3: session [0,0] is merged into [0,3]: [0,0] is buffered with its
        // delete as latest update (buffer time 0), [0,3] with count 2 (buffer time 3).
        for (k, ts) in [("a", 0), ("a", 3), ("b", 9)] {
            topic
                .pipe_input_with_timestamp(k.into(), "v".into(), ts)
                .unwrap();
        }
        // Stream time 9: [0,0] (end 0 <= 9 - 7) is due, but its final value is a delete.
        assert!(out.is_empty(), "caching {caching}");
        topic
            .pipe_input_with_timestamp("b".into(), "v".into(), 10)
            .unwrap();
        // Stream time 10: [0,3] (end 3 <= 10 - 7) closes with count 2 at timestamp 3.
        let records: Vec<(Windowed<String>, Option<i64>, i64)> = out
            .read_records_to_vec()
            .unwrap()
            .into_iter()
            .map(|r| (r.key, r.value, r.timestamp))
            .collect();
        assert_eq!(records.len(), 1, "caching {caching}");
        assert_eq!(
            (
                records[0].0.key.as_str(),
                records[0].0.window.start,
                records[0].0.window.end,
                records[0].1,
                records[0].2
            ),
            ("a", 0, 3, Some(2), 3),
            "caching {caching}"
        );
    }
}

#[test]
fn until_window_closes_needs_a_windowed_aggregation_upstream() {
    let builder = StreamsBuilder::new();
    let table = builder.table::<Windowed<String>, i64>(
        "windowed",
        Consumed::with(TimeWindowedSerde::new(StringSerde, ms(10)), I64Serde),
        Materialized::new(),
    );
    table.suppress(Suppressed::until_window_closes(BufferConfig::unbounded()));
    match builder.build() {
        Err(StreamsError::Topology(TopologyError::WindowCloseUndefined { node })) => {
            assert_eq!(node, "KTABLE-SOURCE-0000000002");
        }
        other => panic!("expected WindowCloseUndefined, got {other:?}"),
    }
}

/// `SuppressTopologyTest`: the suppression's processor and store names, anonymous and
/// named, and the buffer's changelog topic.
#[test]
fn names_follow_kafkas_suppress_topology_test() {
    let final_topology = |suppressed: Suppressed<Windowed<String>>| {
        let builder = StreamsBuilder::new();
        builder
            .stream("input", Consumed::with(StringSerde, StringSerde))
            .group_by(
                |k: &String, _v: &String| k.clone(),
                Grouped::with(StringSerde, StringSerde),
            )
            .windowed_by(SessionWindows::of_inactivity_gap_and_grace(ms(5), ms(5)).unwrap())
            .count(Materialized::as_store("counts").with_caching_disabled())
            .suppress(suppressed)
            .to_stream()
            .map(|k: Windowed<String>, v: Option<i64>| (k.to_string(), v))
            .to(
                "output-suppressed",
                Produced::with(StringSerde, Nullable(I64Serde)),
            );
        builder.build().unwrap()
    };
    let anonymous = final_topology(Suppressed::until_window_closes(BufferConfig::unbounded()));
    let text = anonymous.describe().unwrap().to_string();
    for line in [
        "    Processor: KSTREAM-AGGREGATE-0000000002 (stores: [counts])\n      --> KTABLE-SUPPRESS-0000000006\n",
        "    Processor: KTABLE-SUPPRESS-0000000006 (stores: [KTABLE-SUPPRESS-STATE-STORE-0000000007])\n      --> KTABLE-TOSTREAM-0000000008\n      <-- KSTREAM-AGGREGATE-0000000002\n",
        "    Processor: KSTREAM-MAP-0000000009 (stores: [])\n",
        "    Sink: KSTREAM-SINK-0000000010 (topic: output-suppressed)\n",
    ] {
        assert!(text.contains(line), "{line} missing in\n{text}");
    }
    let named = final_topology(
        Suppressed::until_window_closes(BufferConfig::unbounded()).with_name("myname"),
    );
    let text = named.describe().unwrap().to_string();
    for line in [
        "    Processor: myname (stores: [myname-store])\n      --> KTABLE-TOSTREAM-0000000006\n      <-- KSTREAM-AGGREGATE-0000000002\n",
        "    Sink: KSTREAM-SINK-0000000008 (topic: output-suppressed)\n",
    ] {
        assert!(text.contains(line), "{line} missing in\n{text}");
    }
    let buffer = named.stores().find(|s| s.name() == "myname-store").unwrap();
    assert!(buffer.is_logging() && !buffer.is_persistent());
    assert_eq!(
        changelog_topic("app", buffer.name()),
        "app-myname-store-changelog"
    );

    // ANONYMOUS_INTERMEDIATE_TOPOLOGY (count with a generated store).
    let builder = StreamsBuilder::new();
    builder
        .stream("input", Consumed::with(StringSerde, StringSerde))
        .group_by_key(Grouped::default())
        .count(Materialized::new())
        .suppress(Suppressed::until_time_limit(
            Duration::from_secs(1),
            BufferConfig::unbounded(),
        ))
        .to_stream()
        .to("output", Produced::with(StringSerde, Nullable(I64Serde)));
    let text = builder.build().unwrap().describe().unwrap().to_string();
    for line in [
        "    Processor: KSTREAM-AGGREGATE-0000000002 (stores: [KSTREAM-AGGREGATE-STATE-STORE-0000000001])\n      --> KTABLE-SUPPRESS-0000000003\n",
        "    Processor: KTABLE-SUPPRESS-0000000003 (stores: [KTABLE-SUPPRESS-STATE-STORE-0000000004])\n      --> KTABLE-TOSTREAM-0000000005\n",
        "    Sink: KSTREAM-SINK-0000000006 (topic: output)\n",
    ] {
        assert!(text.contains(line), "{line} missing in\n{text}");
    }
}

/// The buffer's changelog carries Kafka's version-3 records (header `v` = 3), written at
/// the commit after each update, and a tombstone once the key is emitted.
#[test]
fn the_buffer_changelog_is_kafkas_format() {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Consumed::with(StringSerde, StringSerde))
        .group_by_key(Grouped::with(StringSerde, StringSerde))
        .count(counts(false))
        .suppress(Suppressed::until_time_limit(ms(10), BufferConfig::unbounded()).with_name("hold"))
        .to_stream()
        .to("held", Produced::with(StringSerde, Nullable(I64Serde)));
    let driver =
        TopologyTestDriver::new(builder.build().unwrap(), StreamsConfig::new("app")).unwrap();
    let topic = driver
        .create_input_topic("in", StringSerde, StringSerde)
        .unwrap();
    topic
        .pipe_input_with_timestamp("a".into(), "v".into(), 0)
        .unwrap();
    topic
        .pipe_input_with_timestamp("b".into(), "v".into(), 10)
        .unwrap();
    let log = driver
        .create_output_topic(
            "app-hold-store-changelog",
            StringSerde,
            Nullable(BytesSerde),
        )
        .read_records_to_vec()
        .unwrap();
    let summary: Vec<(String, bool)> = log
        .iter()
        .map(|r| (r.key.clone(), r.value.is_some()))
        .collect();
    // a buffered; then b buffered and a emitted (tombstone), logged in key order.
    assert_eq!(
        summary,
        vec![("a".into(), true), ("a".into(), false), ("b".into(), true)]
    );
    let first = &log[0];
    assert_eq!(first.headers.len(), 1);
    assert_eq!(first.headers[0].key, "v");
    assert_eq!(first.headers[0].value.as_deref(), Some(&[3u8][..]));
    let value = first.value.clone().unwrap();
    // Record context: timestamp 0, offset 0, topic "in", partition 0, no headers.
    assert_eq!(&value[..8], &0i64.to_be_bytes());
    assert_eq!(&value[8..16], &0i64.to_be_bytes());
    assert_eq!(&value[16..22], &[0, 0, 0, 2, b'i', b'n']);
    // ... then prior -1 (none), old -1, new = count 1 as 8 bytes, buffer time 0.
    assert_eq!(value.len(), 22 + 36);
    let tail = &value[22..];
    assert_eq!(&tail[..8], &[0; 8]);
    assert_eq!(&tail[8..16], &[255; 8]);
    assert_eq!(&tail[16..20], &8i32.to_be_bytes());
    assert_eq!(&tail[20..28], &1i64.to_be_bytes());
    assert_eq!(&tail[28..], &0i64.to_be_bytes());
}

/// Sliding windows close `grace` after their (inclusive) end, as
/// `GraphGraceSearchUtil` finds it for `KStreamSlidingWindowAggregate`: final results of a
/// sliding count arrive once stream time reaches window end + grace, one per window.
#[test]
fn sliding_windows_are_suppressed_until_they_close() {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Consumed::with(StringSerde, StringSerde))
        .group_by_key(Grouped::with(StringSerde, StringSerde))
        .windowed_by(SlidingWindows::of_time_difference_and_grace(ms(10), ms(5)).unwrap())
        .count(counts(false))
        .suppress(Suppressed::until_window_closes(BufferConfig::unbounded()))
        .to_stream()
        .to(
            "final",
            Produced::with(
                TimeWindowedSerde::new(StringSerde, ms(10)),
                Nullable(I64Serde),
            ),
        );
    let driver =
        TopologyTestDriver::new(builder.build().unwrap(), StreamsConfig::new("app")).unwrap();
    let topic = driver
        .create_input_topic("in", StringSerde, StringSerde)
        .unwrap();
    // The records of "a" at 10 and 15 define the windows [0,10] (holding 10), [5,15]
    // (10 and 15) and [11,21] (15), as Kafka's sliding-window algorithm creates them.
    for ts in [10, 15] {
        topic
            .pipe_input_with_timestamp("a".into(), "v".into(), ts)
            .unwrap();
    }
    let out = driver.create_output_topic(
        "final",
        TimeWindowedSerde::new(StringSerde, ms(10)),
        Nullable(I64Serde),
    );
    let read = || -> Vec<(i64, i64, Option<i64>)> {
        out.read_records_to_vec()
            .unwrap()
            .into_iter()
            .map(|r| (r.key.window.start, r.key.window.end, r.value))
            .collect()
    };
    // Stream time 15 closes [0,10] (end 10 + grace 5), nothing else.
    assert_eq!(read(), vec![(0, 10, Some(1))]);
    // Stream time 30 closes the others.
    topic
        .pipe_input_with_timestamp("b".into(), "v".into(), 30)
        .unwrap();
    let got = read();
    assert_eq!(got, vec![(5, 15, Some(2)), (11, 21, Some(1))]);
}
