#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Emit-on-window-close (`EmitStrategy::on_window_close`, KIP-825) for time (tumbling and
//! hopping), sliding and session windows, through the `TopologyTestDriver` (which commits
//! after every record; its emit interval defaults to 0, as Kafka's driver tests set
//! `__emit.interval.ms.kstreams.windowed.aggregation__`). The rules, from Kafka 3.x/4.x:
//! - `AbstractKStreamTimeWindowAggregateProcessor.maybeForwardUpdate`: nothing is forwarded
//!   on update; `maybeForwardFinalResult` / `shouldEmitFinal`: closed windows are looked
//!   for after a record is processed, if the emit interval has passed on the wall clock and
//!   the close time (`streamTime - grace`) moved past the last emit's (`lastEmitWindowCloseTime`);
//!   `fetchAndEmit`: each window in the range is forwarded with its stored aggregate, no
//!   old value, its stored timestamp and the processing record's headers.
//! - `KStreamWindowAggregate.emitRangeLowerBound/UpperBound`: windows with
//!   `lastClose < end <= close` (window ends exclusive), every record with a non-null key.
//! - `KStreamSlidingWindowAggregate.emitRangeLowerBound/UpperBound`: windows with
//!   `lastClose <= end < close` (ends inclusive), checked only after records that are
//!   neither early (`ts < timeDifference`) nor dropped as expired.
//! - `KStreamSessionWindowAggregate.maybeForwardFinalResult`: sessions with
//!   `lastClose <= end < close` where `close = streamTime - grace - gap`, forwarded with their
//!   end as the timestamp, after every record with a non-null key.
//! - Order: Kafka's time-ordered stores (`RocksDbIndexedTimeOrderedWindowBytesStoreSupplier`,
//!   `RocksDbTimeOrderedSessionBytesStoreSupplier`): by window start (session end), then key
//!   bytes (then session start).
//! - Store visibility: windows starting at or after `storeStreamTime - retention` (the
//!   store's stream time is the largest window start written; Kafka's time-ordered store,
//!   `AbstractDualSchemaRocksDBSegmentedBytesStore.getActualFrom`); sessions expire with
//!   their segment only (`RocksDBTimeOrderedSessionSegmentedBytesStore.fetchSessions`), but
//!   the merge lookup (`findSessions(key, ..)`) sees sessions ending after
//!   `storeStreamTime - retention` only.
//!
//! The oracle recomputes the on-close output from the on-update output of the same input
//! (the store's content after each record) and those rules; a second oracle recomputes
//! time-window contents from the input with `KStreamWindowAggregate`'s grace rule.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use streams_core::{
    Header, I64Serde, Nullable, Record, SessionWindowedSerde, StreamsConfig, StringSerde,
    TimeWindowedSerde, Topology, TopologyTestDriver, Windowed,
};
use streams_dsl::{
    Consumed, EmitStrategy, Grouped, Materialized, Produced, SessionWindows, SlidingWindows,
    StreamsBuilder, TimeWindows,
};

fn ms(n: i64) -> Duration {
    Duration::from_millis(u64::try_from(n).unwrap())
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Time { size: i64, advance: i64, grace: i64 },
    Sliding { td: i64, grace: i64 },
    Session { gap: i64, grace: i64 },
}

/// One output record: key, window start, window end, value (`None`: a delete), timestamp,
/// and the index of the input record whose header it carries (if any).
type Out = (String, i64, i64, Option<i64>, i64, Option<usize>);

/// `in` → windowed count (`emit`) → `out`.
fn topology(kind: Kind, emit: EmitStrategy, caching: bool, persistent: bool) -> Topology {
    topology_with(kind, emit, caching, persistent, None)
}

/// The default retention: size + grace, 2 × time difference + grace, gap + grace.
fn default_retention(kind: Kind) -> i64 {
    match kind {
        Kind::Time { size, grace, .. } => size + grace,
        Kind::Sliding { td, grace } => 2 * td + grace,
        Kind::Session { gap, grace } => gap + grace,
    }
}

/// The on-update reference run with the visibility of the on-close store: one ms more
/// retention for time and sliding windows (see the module comment).
fn reference(kind: Kind) -> Topology {
    let retention = match kind {
        Kind::Session { .. } => None,
        _ => Some(default_retention(kind) + 1),
    };
    topology_with(
        kind,
        EmitStrategy::on_window_update(),
        false,
        false,
        retention,
    )
}

fn topology_with(
    kind: Kind,
    emit: EmitStrategy,
    caching: bool,
    persistent: bool,
    retention: Option<i64>,
) -> Topology {
    let builder = StreamsBuilder::new();
    let mut m = Materialized::as_store("store");
    if let Some(r) = retention {
        m = m.with_retention(ms(r));
    }
    if !caching {
        m = m.with_caching_disabled();
    }
    if !persistent {
        m = m.in_memory();
    }
    let grouped = builder
        .stream("in", Consumed::with(StringSerde, StringSerde))
        .group_by_key(Grouped::default());
    let table = match kind {
        Kind::Time {
            size,
            advance,
            grace,
        } => grouped
            .windowed_by(
                TimeWindows::of_size_and_grace(ms(size), ms(grace))
                    .unwrap()
                    .advance_by(ms(advance))
                    .unwrap(),
            )
            .emit_strategy(emit)
            .count(m),
        Kind::Sliding { td, grace } => grouped
            .windowed_by(SlidingWindows::of_time_difference_and_grace(ms(td), ms(grace)).unwrap())
            .emit_strategy(emit)
            .count(m),
        Kind::Session { gap, grace } => grouped
            .windowed_by(SessionWindows::of_inactivity_gap_and_grace(ms(gap), ms(grace)).unwrap())
            .emit_strategy(emit)
            .count(m),
    };
    table.to_stream().to("out", Produced::default());
    builder.build().unwrap()
}

fn header_index(headers: &[Header]) -> Option<usize> {
    headers
        .iter()
        .find_map(|h| h.key.strip_prefix('i').and_then(|n| n.parse().ok()))
}

fn out_of(r: Record<Windowed<String>, Option<i64>>) -> Out {
    let index = header_index(&r.headers);
    (
        r.key.key,
        r.key.window.start,
        r.key.window.end,
        r.value,
        r.timestamp,
        index,
    )
}

/// Pipes the records one at a time (input record `i` carries the header `i<i>`) and
/// returns the output of each.
fn run_stepwise(topology: Topology, kind: Kind, input: &[(String, i64)]) -> (Vec<Vec<Out>>, u64) {
    let driver = TopologyTestDriver::new(topology, StreamsConfig::new("app")).unwrap();
    let topic = driver
        .create_input_topic("in", StringSerde, StringSerde)
        .unwrap();
    let mut per_record = Vec::new();
    let (time_out, session_out) = match kind {
        Kind::Time { size, .. } => (
            Some(driver.create_output_topic(
                "out",
                TimeWindowedSerde::new(StringSerde, ms(size)),
                Nullable(I64Serde),
            )),
            None,
        ),
        Kind::Sliding { td, .. } => (
            Some(driver.create_output_topic(
                "out",
                TimeWindowedSerde::new(StringSerde, ms(td)),
                Nullable(I64Serde),
            )),
            None,
        ),
        Kind::Session { .. } => (
            None,
            Some(driver.create_output_topic(
                "out",
                SessionWindowedSerde::new(StringSerde),
                Nullable(I64Serde),
            )),
        ),
    };
    for (i, (k, ts)) in input.iter().enumerate() {
        topic
            .pipe_record(Record {
                key: k.clone(),
                value: "v".to_owned(),
                timestamp: *ts,
                headers: vec![Header {
                    key: format!("i{i}"),
                    value: None,
                }],
            })
            .unwrap();
        let records = match (&time_out, &session_out) {
            (Some(t), _) => t.read_records_to_vec().unwrap(),
            (_, Some(s)) => s.read_records_to_vec().unwrap(),
            _ => unreachable!(),
        };
        per_record.push(records.into_iter().map(out_of).collect());
    }
    (per_record, driver.dropped_records())
}

/// The on-close output Kafka's rules give, from the on-update output (no cache) of the same
/// input: after each record that checks, the windows that closed since the last emit and
/// are still visible in the store, with their current aggregate, once.
fn expected_on_close(kind: Kind, input: &[(String, i64)], updates: &[Vec<Out>]) -> Vec<Out> {
    // The store after each record: (key, start, end) → (count, timestamp).
    let mut store: BTreeMap<(String, i64, i64), (i64, i64)> = BTreeMap::new();
    let mut store_time = i64::MIN; // largest window start (session end) written
    let retention = default_retention(kind);
    let mut stream_time = -1i64;
    let mut last = -1i64; // lastEmitWindowCloseTime
    let mut out = Vec::new();
    for (i, ((_, ts), forwarded)) in input.iter().zip(updates).enumerate() {
        for (k, start, end, v, t, _) in forwarded {
            match (v, kind) {
                (Some(v), Kind::Session { .. }) => {
                    // A session store drops a write for a session ending at or before its
                    // stream time - retention (InMemorySessionStore.put,
                    // AbstractDualSchemaRocksDBSegmentedBytesStore.put).
                    store_time = store_time.max(*end);
                    if *end > store_time - retention {
                        store.insert((k.clone(), *start, *end), (*v, *t));
                    }
                }
                (Some(v), _) => {
                    store.insert((k.clone(), *start, *end), (*v, *t));
                    store_time = store_time.max(*start);
                }
                (None, _) => {
                    store.remove(&(k.clone(), *start, *end));
                }
            }
        }
        stream_time = stream_time.max(*ts);
        let (close, checks) = match kind {
            Kind::Time { grace, .. } => (stream_time - grace, true),
            Kind::Sliding { td, grace } => {
                let close = stream_time - grace;
                // KStreamSlidingWindowAggregate.process returns before
                // maybeForwardFinalResult for expired and early records.
                (close, ts + td >= close && *ts >= td)
            }
            Kind::Session { gap, grace } => (stream_time - grace - gap, true),
        };
        if !checks || !(last == -1 || last < close) {
            continue;
        }
        // Window ends that close now: time windows (lastClose, close], sliding and
        // session windows [lastClose, close).
        let closes = |end: i64| match kind {
            Kind::Time { .. } => end > last && end <= close,
            _ => end >= last.max(0) && end < close,
        };
        let visible = |start: i64| match kind {
            Kind::Session { .. } => true,
            _ => start >= store_time.saturating_sub(retention),
        };
        let mut closed: Vec<_> = store
            .iter()
            .filter(|((_, s, e), _)| closes(*e) && visible(*s))
            .map(|((k, s, e), (v, t))| {
                let t = if matches!(kind, Kind::Session { .. }) {
                    *e
                } else {
                    *t
                };
                (k.clone(), *s, *e, Some(*v), t, Some(i))
            })
            .collect();
        match kind {
            Kind::Session { .. } => closed.sort_by_key(|o| (o.2, o.0.clone(), o.1)),
            _ => closed.sort_by_key(|o| (o.1, o.0.clone())),
        }
        let fetched = match kind {
            // Kafka only updates lastEmitWindowCloseTime when it fetched: for time windows
            // once the upper bound `close - size` is not negative, for sliding windows
            // `close - td - 1`, for sessions `close - 1` (and not below the lower bound).
            Kind::Time { size, .. } => close - size >= 0,
            Kind::Sliding { td, .. } => close - td > 0,
            Kind::Session { .. } => close > last.max(0),
        };
        if fetched {
            out.extend(closed);
            last = close;
        } else {
            assert!(closed.is_empty());
        }
    }
    out
}

/// `KStreamWindowAggregate`'s grace rule from the input: a record counts in window `w` iff
/// `w.end > streamTime - grace` when it arrives.
fn naive_time_counts(
    size: i64,
    advance: i64,
    grace: i64,
    input: &[(String, i64)],
) -> BTreeMap<(String, i64), i64> {
    let mut counts = BTreeMap::new();
    let mut stream_time = -1;
    for (k, ts) in input {
        stream_time = stream_time.max(*ts);
        for start in (0..=*ts).filter(|s| s % advance == 0 && s + size > *ts) {
            if start + size > stream_time - grace {
                *counts.entry((k.clone(), start)).or_insert(0) += 1;
            }
        }
    }
    counts
}

fn kind_strategy() -> impl Strategy<Value = Kind> {
    prop_oneof![
        (1i64..20, 1i64..4, 0i64..15).prop_map(|(size, div, grace)| Kind::Time {
            size,
            advance: (size / div).max(1),
            grace
        }),
        (1i64..15, 0i64..15).prop_map(|(td, grace)| Kind::Sliding { td, grace }),
        (1i64..15, 0i64..15).prop_map(|(gap, grace)| Kind::Session { gap, grace }),
    ]
}

fn input_strategy() -> impl Strategy<Value = Vec<(String, i64)>> {
    prop::collection::vec(
        (prop::sample::select(vec!["a", "b", "c"]), 0i64..150),
        0..40,
    )
    .prop_map(|v| v.into_iter().map(|(k, ts)| (k.to_owned(), ts)).collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Random keys, out-of-order and late timestamps: the on-close output is, record for
    /// record, what Kafka's rules derive from the on-update run; each window is emitted at
    /// most once, never as a delete; and the dropped count is the on-update run's.
    #[test]
    fn on_close_emits_each_closed_window_once_with_its_final_value(
        kind in kind_strategy(),
        input in input_strategy(),
        caching in any::<bool>(),
        persistent in any::<bool>(),
    ) {
        let (updates, dropped_update) = run_stepwise(reference(kind), kind, &input);
        let (finals, dropped_close) = run_stepwise(
            topology(kind, EmitStrategy::on_window_close(), caching, persistent), kind, &input);
        let finals: Vec<Out> = finals.into_iter().flatten().collect();
        prop_assert_eq!(&finals, &expected_on_close(kind, &input, &updates));
        prop_assert_eq!(dropped_close, dropped_update);
        let mut seen = std::collections::BTreeSet::new();
        for (k, s, e, v, _, _) in &finals {
            prop_assert!(v.is_some());
            prop_assert!(seen.insert((k.clone(), *s, *e)), "window emitted twice");
        }
        if let Kind::Time { size, advance, grace } = kind {
            let naive = naive_time_counts(size, advance, grace, &input);
            for (k, s, _, v, _, _) in &finals {
                prop_assert_eq!(Some(naive[&(k.clone(), *s)]), *v);
            }
        }
    }
}

/// Tumbling windows, one key: a window is emitted once, when a record moves stream time
/// past its end plus grace, with the largest timestamp of its records and that record's
/// headers; later records for a closed window are dropped, not emitted.
#[test]
fn tumbling_windows_are_emitted_once_when_they_close() {
    let kind = Kind::Time {
        size: 10,
        advance: 10,
        grace: 5,
    };
    let input: Vec<(String, i64)> = [
        ("a", 1),
        ("a", 8),
        ("b", 3),
        ("a", 14),
        ("a", 15),
        ("a", 2),
        ("b", 26),
    ]
    .iter()
    .map(|(k, t)| ((*k).to_owned(), *t))
    .collect();
    for (caching, persistent) in [(false, false), (true, true)] {
        let (out, dropped) = run_stepwise(
            topology(kind, EmitStrategy::on_window_close(), caching, persistent),
            kind,
            &input,
        );
        assert_eq!(
            out,
            vec![
                vec![],
                vec![],
                vec![],
                vec![],
                // 15 - grace 5 closes [0, 10): a then b, by key.
                vec![
                    ("a".into(), 0, 10, Some(2), 8, Some(4)),
                    ("b".into(), 0, 10, Some(1), 3, Some(4))
                ],
                vec![], // 2 is late for [0, 10): dropped
                vec![("a".into(), 10, 20, Some(2), 15, Some(6))],
            ]
        );
        assert_eq!(dropped, 1);
    }
}

/// The emit interval (`__emit.interval.ms.kstreams.windowed.aggregation__`): with 1000 ms
/// on the driver's mocked wall clock, closed windows wait for the next check after the
/// interval (Kafka's `shouldEmitFinal`).
#[test]
fn the_emit_interval_throttles_the_close_check_by_wall_clock() {
    let kind = Kind::Time {
        size: 10,
        advance: 10,
        grace: 0,
    };
    let config = StreamsConfig::from_properties([
        ("application.id", "app"),
        ("__emit.interval.ms.kstreams.windowed.aggregation__", "1000"),
    ])
    .unwrap();
    let driver = TopologyTestDriver::with_wall_clock(
        topology(kind, EmitStrategy::on_window_close(), true, false),
        config,
        0,
    )
    .unwrap();
    let input = driver
        .create_input_topic("in", StringSerde, StringSerde)
        .unwrap();
    let out = driver.create_output_topic(
        "out",
        TimeWindowedSerde::new(StringSerde, ms(10)),
        Nullable(I64Serde),
    );
    let read = || -> Vec<(i64, Option<i64>)> {
        out.read_records_to_vec()
            .unwrap()
            .into_iter()
            .map(|r| (r.key.window.start, r.value))
            .collect()
    };
    // The first check (at wall-clock 0) finds nothing closed; the next is due at 1000.
    input
        .pipe_input_with_timestamp("k".into(), "v".into(), 5)
        .unwrap();
    input
        .pipe_input_with_timestamp("k".into(), "v".into(), 12)
        .unwrap(); // closes [0, 10)
    assert_eq!(read(), vec![]);
    driver.advance_wall_clock_time(ms(999)).unwrap();
    input
        .pipe_input_with_timestamp("k".into(), "v".into(), 13)
        .unwrap();
    assert_eq!(read(), vec![]);
    driver.advance_wall_clock_time(ms(1)).unwrap();
    input
        .pipe_input_with_timestamp("k".into(), "v".into(), 14)
        .unwrap();
    assert_eq!(read(), vec![(0, Some(1))]);
}

/// Session windows: a closed session is emitted once, with its end as the timestamp; no
/// deletes are emitted.
#[test]
fn sessions_are_emitted_once_after_gap_plus_grace() {
    let kind = Kind::Session { gap: 5, grace: 2 };
    let input: Vec<(String, i64)> = [("a", 0), ("a", 10), ("a", 4), ("b", 6), ("a", 30)]
        .iter()
        .map(|(k, t)| ((*k).to_owned(), *t))
        .collect();
    let (out, _) = run_stepwise(
        topology(kind, EmitStrategy::on_window_close(), true, true),
        kind,
        &input,
    );
    let out: Vec<Out> = out.into_iter().flatten().collect();
    assert_eq!(
        out,
        vec![
            // At 10 the close time is 10 - 2 - 5 = 3: [0, 0] closed.
            ("a".into(), 0, 0, Some(1), 0, Some(1)),
            // 4 does not merge with [0, 0]: the merge lookup no longer sees it (it ended
            // before the store's stream time 10 - retention 7 + 1), though the close fetch
            // did (sessions expire by segment there). At 30 the close time is 23.
            ("a".into(), 4, 4, Some(1), 4, Some(4)),
            ("b".into(), 6, 6, Some(1), 6, Some(4)),
            ("a".into(), 10, 10, Some(1), 10, Some(4)),
        ]
    );
}
