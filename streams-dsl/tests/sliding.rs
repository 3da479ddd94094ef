#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Sliding-window aggregations (`windowed_by(SlidingWindows)`) against Kafka Streams' rules,
//! through the `TopologyTestDriver` (which commits, so flushes caches, after every record,
//! as Kafka's does), with the store's cache off and on, in memory and on RocksDB. The rules,
//! from Kafka 3.x/4.x sources:
//! - `SlidingWindows`: windows `[start, start + timeDifference]`, both ends inclusive.
//! - `KStreamSlidingWindowAggregate.process`: null key or value → skipped and counted;
//!   stream time = max timestamp seen; `windowCloseTime = streamTime - grace`; a record
//!   whose `ts + timeDifference < windowCloseTime` is skipped and counted once; a record
//!   with `ts < timeDifference` goes through `processEarly` (window `[0, timeDifference]`),
//!   others through `processReverse` (Kafka's stores all support backward fetches).
//! - `processReverse` / `processEarly` / `createWindows` / `updateWindowAndForward`: see
//!   [`Model`]; a window is updated only if `windowEnd >= windowCloseTime`, else the record
//!   is skipped for it and counted.
//! - `SlidingWindowStoreMaterializer`: retention `2 * timeDifference + grace` (or more), a
//!   timestamped window store of window size `timeDifference`; reads see windows starting
//!   after `observedStreamTime - retention` (`AbstractRocksDBSegmentedBytesStore.getActualFrom`,
//!   `InMemoryWindowStore.fetch`), where the store's observed stream time is the largest
//!   window start put; with emit-on-window-close (Kafka's time-ordered store) windows
//!   starting at `observedStreamTime - retention` are still visible.
//! - `KStreamSlidingWindowAggregateTest`: the small-input cases below are Kafka's own.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use proptest::prelude::*;
use streams_core::{
    I64Serde, Nullable, StoreKind, StreamsConfig, StringSerde, TimeWindowedSerde, Topology,
    TopologyTestDriver,
};
use streams_dsl::{
    Consumed, EmitStrategy, Grouped, Materialized, Produced, SlidingWindows, StreamsBuilder,
};

/// (key, window start, window end, value, timestamp) of one output record.
type Out = (String, i64, i64, String, i64);

fn ms(n: i64) -> Duration {
    Duration::from_millis(u64::try_from(n).unwrap())
}

#[derive(Debug, Clone, Copy)]
struct Setup {
    caching: bool,
    persistent: bool,
    emit: EmitStrategy,
}

const SETUPS: [Setup; 4] = [
    Setup {
        caching: false,
        persistent: false,
        emit: EmitStrategy::OnWindowUpdate,
    },
    Setup {
        caching: true,
        persistent: true,
        emit: EmitStrategy::OnWindowUpdate,
    },
    Setup {
        caching: true,
        persistent: false,
        emit: EmitStrategy::OnWindowUpdate,
    },
    Setup {
        caching: false,
        persistent: true,
        emit: EmitStrategy::OnWindowUpdate,
    },
];

/// `in` → sliding aggregate (Kafka's `MockInitializer.STRING_INIT` "0" and
/// `MockAggregator.TOSTRING_ADDER` `agg + "+" + value`) → `out`.
fn topology(windows: SlidingWindows, setup: Setup, retention: Option<i64>) -> Topology {
    let builder = StreamsBuilder::new();
    let mut m = Materialized::as_store("store").with_value_serde(StringSerde);
    if !setup.caching {
        m = m.with_caching_disabled();
    }
    if !setup.persistent {
        m = m.in_memory();
    }
    if let Some(r) = retention {
        m = m.with_retention(ms(r));
    }
    builder
        .stream("in", Consumed::with(StringSerde, StringSerde))
        .group_by_key(Grouped::default())
        .windowed_by(windows)
        .emit_strategy(setup.emit)
        .aggregate(
            || "0".to_owned(),
            |_k: &String, v: String, agg: String| format!("{agg}+{v}"),
            m,
        )
        .to_stream()
        .to("out", Produced::default());
    builder.build().unwrap()
}

/// Pipes `(key, value, timestamp)` records; every output record, the dropped count and the
/// final store content `(key, start, value)`.
fn run(
    topology: Topology,
    td: i64,
    input: &[(String, String, i64)],
) -> (Vec<Out>, u64, Vec<(String, i64, String)>) {
    let driver = TopologyTestDriver::new(topology, StreamsConfig::new("app")).unwrap();
    let topic = driver
        .create_input_topic("in", StringSerde, StringSerde)
        .unwrap();
    for (k, v, ts) in input {
        topic
            .pipe_input_with_timestamp(k.clone(), v.clone(), *ts)
            .unwrap();
    }
    let out = driver
        .create_output_topic(
            "out",
            TimeWindowedSerde::new(StringSerde, ms(td)),
            Nullable(StringSerde),
        )
        .read_records_to_vec()
        .unwrap()
        .into_iter()
        .map(|r| {
            (
                r.key.key,
                r.key.window.start,
                r.key.window.end,
                r.value.expect("sliding aggregations never delete"),
                r.timestamp,
            )
        })
        .collect();
    let store = driver.read_window_store::<String, String>("store").unwrap();
    (out, driver.dropped_records(), store)
}

fn records(values: &[(&str, i64)]) -> Vec<(String, String, i64)> {
    values
        .iter()
        .enumerate()
        .map(|(i, (k, ts))| ((*k).to_owned(), (i + 1).to_string(), *ts))
        .collect()
}

/// Output grouped as Kafka's tests gather it: window start → set of (value, timestamp).
fn gather(out: &[Out]) -> BTreeMap<i64, BTreeSet<(String, i64)>> {
    let mut m: BTreeMap<i64, BTreeSet<(String, i64)>> = BTreeMap::new();
    for (_, start, _, v, ts) in out {
        m.entry(*start).or_default().insert((v.clone(), *ts));
    }
    m
}

fn expected(entries: &[(i64, &[(&str, i64)])]) -> BTreeMap<i64, BTreeSet<(String, i64)>> {
    entries
        .iter()
        .map(|(start, vs)| {
            (
                *start,
                vs.iter().map(|(v, ts)| ((*v).to_owned(), *ts)).collect(),
            )
        })
        .collect()
}

fn on_close(setup: Setup) -> Setup {
    Setup {
        emit: EmitStrategy::OnWindowClose,
        ..setup
    }
}

/// Kafka's `KStreamSlidingWindowAggregateTest.testAggregateSmallInput`.
#[test]
fn kafka_aggregate_small_input() {
    let w = SlidingWindows::of_time_difference_and_grace(ms(10), ms(5)).unwrap();
    let input = records(&[
        ("A", 10),
        ("A", 10),
        ("A", 14),
        ("A", 15),
        ("A", 20),
        ("A", 22),
        ("A", 30),
    ]);
    for setup in SETUPS {
        let (out, dropped, _) = run(topology(w, setup, None), 10, &input);
        assert_eq!(dropped, 0);
        assert_eq!(
            gather(&out),
            expected(&[
                (0, &[("0+1", 10), ("0+1+2", 10)]),
                (4, &[("0+1+2+3", 14)]),
                (5, &[("0+1+2+3+4", 15)]),
                (10, &[("0+1+2+3+4+5", 20)]),
                (11, &[("0+3", 14), ("0+3+4", 15), ("0+3+4+5", 20)]),
                (12, &[("0+3+4+5+6", 22)]),
                (15, &[("0+4", 15), ("0+4+5", 20), ("0+4+5+6", 22)]),
                (16, &[("0+5", 20), ("0+5+6", 22)]),
                (20, &[("0+5+6+7", 30)]),
                (21, &[("0+6", 22), ("0+6+7", 30)]),
                (23, &[("0+7", 30)]),
            ]),
            "{setup:?}"
        );
        assert!(out.iter().all(|(_, s, e, _, _)| e - s == 10));
        let (out, _, _) = run(topology(w, on_close(setup), None), 10, &input);
        assert_eq!(
            gather(&out),
            expected(&[
                (0, &[("0+1+2", 10)]),
                (4, &[("0+1+2+3", 14)]),
                (5, &[("0+1+2+3+4", 15)]),
                (10, &[("0+1+2+3+4+5", 20)]),
                (11, &[("0+3+4+5", 20)]),
                (12, &[("0+3+4+5+6", 22)]),
            ]),
            "{setup:?}"
        );
        // Emitted once each, by window start.
        let starts: Vec<i64> = out.iter().map(|o| o.1).collect();
        assert_eq!(starts, [0, 4, 5, 10, 11, 12]);
    }
}

/// Kafka's `KStreamSlidingWindowAggregateTest.testEarlyRecordsSmallInput`: records before
/// the time difference share the window `[0, 50]`.
#[test]
fn kafka_early_records_small_input() {
    let w = SlidingWindows::of_time_difference_and_grace(ms(50), ms(0)).unwrap();
    let input = records(&[
        ("A", 0),
        ("A", 5),
        ("A", 6),
        ("A", 3),
        ("A", 13),
        ("A", 10),
        ("A", 70),
    ]);
    for setup in SETUPS {
        let (out, dropped, _) = run(topology(w, setup, None), 50, &input);
        assert_eq!(dropped, 0);
        assert_eq!(
            gather(&out),
            expected(&[
                (
                    0,
                    &[
                        ("0+1", 0),
                        ("0+1+2", 5),
                        ("0+1+2+3", 6),
                        ("0+1+2+3+4", 6),
                        ("0+1+2+3+4+5", 13),
                        ("0+1+2+3+4+5+6", 13)
                    ]
                ),
                (
                    1,
                    &[
                        ("0+2", 5),
                        ("0+2+3", 6),
                        ("0+2+3+4", 6),
                        ("0+2+3+4+5", 13),
                        ("0+2+3+4+5+6", 13)
                    ]
                ),
                (4, &[("0+2+3", 6), ("0+2+3+5", 13), ("0+2+3+5+6", 13)]),
                (6, &[("0+3", 6), ("0+3+5", 13), ("0+3+5+6", 13)]),
                (7, &[("0+5", 13), ("0+5+6", 13)]),
                (11, &[("0+5", 13)]),
                (20, &[("0+7", 70)]),
            ]),
            "{setup:?}"
        );
        let (out, _, _) = run(topology(w, on_close(setup), None), 50, &input);
        assert_eq!(
            gather(&out),
            expected(&[
                (0, &[("0+1+2+3+4+5+6", 13)]),
                (1, &[("0+2+3+4+5+6", 13)]),
                (4, &[("0+2+3+5+6", 13)]),
                (6, &[("0+3+5+6", 13)]),
                (7, &[("0+5+6", 13)]),
                (11, &[("0+5", 13)]),
            ]),
            "{setup:?}"
        );
    }
}

/// Kafka's `KStreamSlidingWindowAggregateTest.testNoGracePeriodSmallInput`.
#[test]
fn kafka_no_grace_period_small_input() {
    let w = SlidingWindows::of_time_difference_with_no_grace(ms(50)).unwrap();
    let input = records(&[
        ("A", 100),
        ("A", 105),
        ("A", 106),
        ("A", 103),
        ("A", 113),
        ("A", 110),
    ]);
    for setup in SETUPS {
        let (out, dropped, _) = run(topology(w, setup, None), 50, &input);
        // 103 at stream time 106 is skipped for [55, 105] and its left window [53, 103],
        // 110 at stream time 113 for its left window [60, 110] (`updateWindowAndForward`).
        assert_eq!(dropped, 3);
        assert_eq!(
            gather(&out),
            expected(&[
                (50, &[("0+1", 100)]),
                (55, &[("0+1+2", 105)]),
                (56, &[("0+1+2+3", 106), ("0+1+2+3+4", 106)]),
                (63, &[("0+1+2+3+4+5", 113), ("0+1+2+3+4+5+6", 113)]),
                (
                    101,
                    &[
                        ("0+2", 105),
                        ("0+2+3", 106),
                        ("0+2+3+4", 106),
                        ("0+2+3+4+5", 113),
                        ("0+2+3+4+5+6", 113)
                    ]
                ),
                (104, &[("0+2+3", 106), ("0+2+3+5", 113), ("0+2+3+5+6", 113)]),
                (106, &[("0+3", 106), ("0+3+5", 113), ("0+3+5+6", 113)]),
                (107, &[("0+5", 113), ("0+5+6", 113)]),
                (111, &[("0+5", 113)]),
            ]),
            "{setup:?}"
        );
        let (out, _, _) = run(topology(w, on_close(setup), None), 50, &input);
        assert_eq!(
            gather(&out),
            expected(&[
                (50, &[("0+1", 100)]),
                (55, &[("0+1+2", 105)]),
                (56, &[("0+1+2+3+4", 106)]),
            ]),
            "{setup:?}"
        );
    }
}

/// `KStreamSlidingWindowAggregate.process`: null keys and null values are skipped and
/// counted (time windows aggregate null values; sliding windows do not).
#[test]
fn null_keys_and_null_values_are_dropped_and_counted() {
    let builder = StreamsBuilder::new();
    builder
        .stream(
            "in",
            Consumed::with(Nullable(StringSerde), Nullable(StringSerde)),
        )
        .group_by_key(Grouped::default())
        .windowed_by(SlidingWindows::of_time_difference_with_no_grace(ms(10)).unwrap())
        .count(Materialized::as_store("counts").with_caching_disabled())
        .to_stream()
        .to("out", Produced::default());
    let driver =
        TopologyTestDriver::new(builder.build().unwrap(), StreamsConfig::new("app")).unwrap();
    let input = driver
        .create_input_topic("in", Nullable(StringSerde), Nullable(StringSerde))
        .unwrap();
    input
        .pipe_input_with_timestamp(None, Some("v".into()), 20)
        .unwrap();
    input
        .pipe_input_with_timestamp(Some("k".into()), None, 20)
        .unwrap();
    input
        .pipe_input_with_timestamp(Some("k".into()), Some("v".into()), 20)
        .unwrap();
    assert_eq!(driver.dropped_records(), 2);
    assert_eq!(
        driver
            .read_window_store::<Option<String>, i64>("counts")
            .unwrap(),
        vec![(Some("k".to_owned()), 10, 1)]
    );
}

/// Kafka's `SlidingWindowedKStreamImpl`: an unnamed store is `KSTREAM-AGGREGATE-STATE-STORE-`
/// drawn before the processor, and `count` burns no name (unlike time windows);
/// `reduce` uses `KSTREAM-REDUCE-`.
#[test]
fn nodes_and_stores_are_named_as_kafka_names_them() {
    let describe = |count: bool, m: Materialized<String, i64>| {
        let builder = StreamsBuilder::new();
        let windowed = builder
            .stream("input-topic", Consumed::with(StringSerde, I64Serde))
            .group_by_key(Grouped::default())
            .windowed_by(SlidingWindows::of_time_difference_with_no_grace(ms(10)).unwrap());
        if count {
            windowed.count(m);
        } else {
            windowed.reduce(|a: i64, b: i64| a + b, m);
        }
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
        describe(true, Materialized::new()),
        expected(
            "KSTREAM-AGGREGATE-0000000002",
            "KSTREAM-AGGREGATE-STATE-STORE-0000000001"
        )
    );
    assert_eq!(
        describe(true, Materialized::as_store("s")),
        expected("KSTREAM-AGGREGATE-0000000001", "s")
    );
    assert_eq!(
        describe(false, Materialized::new()),
        expected(
            "KSTREAM-REDUCE-0000000002",
            "KSTREAM-REDUCE-STATE-STORE-0000000001"
        )
    );
}

/// `SlidingWindowStoreMaterializer`: retention 2 × time difference + grace (or more),
/// window size = time difference, cached and logged (`compact,delete`, retention + 1 day);
/// not cached with emit-on-window-close; less retention is refused.
#[test]
fn the_store_keeps_twice_the_time_difference_plus_grace() {
    let build = |m: Materialized<String, i64>, emit: EmitStrategy| {
        let builder = StreamsBuilder::new();
        builder
            .stream("in", Consumed::with(StringSerde, StringSerde))
            .group_by_key(Grouped::default())
            .windowed_by(SlidingWindows::of_time_difference_and_grace(ms(1_000), ms(300)).unwrap())
            .emit_strategy(emit)
            .count(m);
        builder.build()
    };
    let topology = build(
        Materialized::as_store("w"),
        EmitStrategy::on_window_update(),
    )
    .unwrap();
    let store = topology.stores().find(|s| s.name() == "w").unwrap();
    assert_eq!(
        store.kind(),
        StoreKind::TimestampedWindow {
            retention_ms: 2_300,
            window_size_ms: 1_000,
            retain_duplicates: false
        }
    );
    assert!(store.is_caching() && store.is_logging() && store.is_persistent());
    let config = store.changelog_config();
    assert_eq!(config["cleanup.policy"], "compact,delete");
    assert_eq!(config["retention.ms"], (2_300 + 86_400_000).to_string());

    let on_close = build(Materialized::as_store("w"), EmitStrategy::on_window_close()).unwrap();
    let store = on_close.stores().next().unwrap();
    assert!(!store.is_caching() && store.is_logging());

    let err = build(
        Materialized::as_store("w").with_retention(ms(2_299)),
        EmitStrategy::on_window_update(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("retention") && err.contains("2 * time difference"),
        "{err}"
    );
    assert!(SlidingWindows::of_time_difference_with_no_grace(Duration::ZERO).is_err());
}

// ---------------------------------------------------------------------------------------------
// Oracle 1: Kafka's algorithm, step by step, over a plain map (no serdes, caches or stores).

/// `KStreamSlidingWindowAggregate` (reverse-iterator path) with the store's retention and
/// Kafka's emit-on-window-close bookkeeping, over a `BTreeMap`.
struct Model {
    td: i64,
    grace: i64,
    retention: i64,
    on_close: bool,
    /// `observedStreamTime` of the processor.
    stream_time: i64,
    /// The store's observed stream time: the largest window start put.
    store_time: i64,
    store: BTreeMap<(String, i64), (String, i64)>,
    /// `lastEmitWindowCloseTime`.
    last_emit: i64,
    out: Vec<Out>,
    dropped: u64,
}

impl Model {
    fn new(td: i64, grace: i64, retention: i64, on_close: bool) -> Self {
        Model {
            td,
            grace,
            retention,
            on_close,
            stream_time: -1,
            store_time: i64::MIN,
            store: BTreeMap::new(),
            last_emit: -1,
            out: Vec::new(),
            dropped: 0,
        }
    }

    fn live(&self, start: i64) -> bool {
        start > self.store_time.saturating_sub(self.retention)
    }

    /// `WindowStore.fetch(key, key, from, to)`: retained windows, by start.
    fn fetch(&self, key: &str, from: i64, to: i64) -> Vec<(i64, (String, i64))> {
        self.store
            .range((key.to_owned(), from)..=(key.to_owned(), to))
            .filter(|((_, s), _)| self.live(*s))
            .map(|((_, s), v)| (*s, v.clone()))
            .collect()
    }

    fn put(&mut self, key: &str, start: i64, value: (String, i64)) {
        self.store_time = self.store_time.max(start);
        self.store.insert((key.to_owned(), start), value);
    }

    fn forward(&mut self, key: &str, start: i64, value: &(String, i64)) {
        if !self.on_close {
            self.out.push((
                key.to_owned(),
                start,
                start + self.td,
                value.0.clone(),
                value.1,
            ));
        }
    }

    /// `updateWindowAndForward`: aggregate into the window unless it ended before the
    /// close time (`windowEnd >= windowCloseTime`).
    fn update(&mut self, key: &str, start: i64, agg: (String, i64), v: &str, ts: i64, close: i64) {
        if start + self.td < close {
            self.dropped += 1;
            return;
        }
        let new = (format!("{}+{v}", agg.0), ts.max(agg.1));
        self.put(key, start, new.clone());
        self.forward(key, start, &new);
    }

    /// One record; with a cache (flushed after every record by the test driver, as
    /// Kafka's `TopologyTestDriver` commits), the record's updates reach downstream once
    /// per window with the last value, in the order of their last write (Kafka's
    /// `NamedCache` dirty keys).
    fn process_cached(&mut self, key: &str, v: &str, ts: i64, caching: bool) {
        let before = self.out.len();
        self.process(key, v, ts);
        if caching && !self.on_close {
            let updates = self.out.split_off(before);
            let mut last: BTreeMap<(String, i64), usize> = BTreeMap::new();
            for (i, u) in updates.iter().enumerate() {
                last.insert((u.0.clone(), u.1), i);
            }
            let mut order: Vec<usize> = last.into_values().collect();
            order.sort_unstable();
            self.out
                .extend(order.into_iter().map(|i| updates[i].clone()));
        }
    }

    fn process(&mut self, key: &str, v: &str, ts: i64) {
        let td = self.td;
        self.stream_time = self.stream_time.max(ts);
        let close = self.stream_time - self.grace;
        if ts + td < close {
            self.dropped += 1;
            return;
        }
        let init = || ("0".to_owned(), ts);
        if ts < td {
            // processEarly
            let mut combined = None;
            let mut right_agg = None;
            let mut right_created = false;
            let mut starts = BTreeSet::new();
            let mut previous = None;
            for (start, agg) in self.fetch(key, 0, ts + 1) {
                starts.insert(start);
                if start == 0 {
                    if agg.1 < ts {
                        previous = Some(agg.1);
                    }
                    combined = Some(agg);
                } else if start <= ts {
                    right_agg = Some(agg.clone());
                    self.update(key, start, agg, v, ts, close);
                } else {
                    right_created = true;
                }
            }
            if right_agg.is_none() {
                right_agg = combined.clone().filter(|c| c.1 > ts);
            }
            if let Some(right) = right_agg.filter(|r| r.1 > ts && !right_created) {
                self.put(key, ts + 1, right.clone());
                self.forward(key, ts + 1, &right);
            }
            if let Some(p) = previous.filter(|p| !starts.contains(&(p + 1))) {
                self.update(key, p + 1, init(), v, ts, close);
            }
            let agg = combined.unwrap_or_else(init);
            self.update(key, 0, agg, v, ts, close);
            return;
        }
        // processReverse
        let mut found = self.fetch(key, (ts - 2 * td).max(0), ts + 1);
        found.reverse();
        let mut starts = BTreeSet::new();
        let (mut left_agg, mut right_agg) = (None, None);
        let (mut left_created, mut right_created) = (false, false);
        let mut previous = None;
        let mut done = false;
        for (start, agg) in found {
            starts.insert(start);
            let end = start + td;
            if start == ts + 1 {
                right_created = true;
            } else if end > ts {
                right_agg.get_or_insert_with(|| agg.clone());
                self.update(key, start, agg, v, ts, close);
            } else if end == ts {
                left_created = true;
                let max = agg.1;
                self.update(key, start, agg, v, ts, close);
                if max < ts {
                    previous = Some(max);
                } else {
                    done = true;
                    break;
                }
            } else {
                left_agg = Some(agg.clone());
                previous = Some(agg.1);
                break;
            }
        }
        if !done {
            // createWindows
            if let Some(p) = previous.filter(|p| !starts.contains(&(p + 1)) && p + 1 + td >= ts) {
                self.update(key, p + 1, init(), v, ts, close);
            }
            if !left_created {
                let agg = match (left_agg, previous) {
                    (Some(l), Some(p)) if ts - td <= p => (l.0, ts),
                    _ => init(),
                };
                self.update(key, ts - td, agg, v, ts, close);
            }
            if let Some(right) = right_agg.filter(|r| r.1 > ts && !right_created) {
                self.put(key, ts + 1, right.clone());
                self.forward(key, ts + 1, &right);
            }
        }
        // maybeForwardFinalResult (emit interval 0 in the test driver)
        if self.on_close && (self.last_emit == -1 || self.last_emit < close) {
            let upper = close - td - 1;
            if upper >= 0 {
                let lower = if self.last_emit == -1 {
                    0
                } else {
                    (self.last_emit - td).max(0)
                };
                let mut closed: Vec<_> = self
                    .store
                    .iter()
                    .filter(|((_, s), _)| *s >= lower && *s <= upper && self.live(*s))
                    .map(|((k, s), v)| (k.clone(), *s, v.clone()))
                    .collect();
                closed.sort_by_key(|(k, s, _)| (*s, k.clone()));
                for (k, s, (agg, t)) in closed {
                    self.out.push((k, s, s + td, agg, t));
                }
                self.last_emit = close;
            }
        }
    }

    fn store_content(&self) -> Vec<(String, i64, String)> {
        self.store
            .iter()
            .filter(|((_, s), _)| self.live(*s))
            .map(|((k, s), (v, _))| (k.clone(), *s, v.clone()))
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Oracle 2: the definition of sliding windows, recomputed from the input (no late records).

/// Without late records, Kafka's sliding windows of a key are: the left window
/// `[ts - d, ts]` of every record (`[0, d]` for records before `d`), and the right window
/// `[ts + 1, ts + 1 + d]` of every record followed within `d` by a later one; each holds
/// the records in it (in arrival order) with the largest timestamp among them.
fn naive_windows(td: i64, input: &[(String, String, i64)]) -> Vec<(String, i64, String)> {
    let mut starts: BTreeSet<(String, i64)> = BTreeSet::new();
    for (k, _, ts) in input {
        starts.insert((k.clone(), (ts - td).max(0)));
        if input
            .iter()
            .any(|(k2, _, t2)| k2 == k && *t2 > *ts && *t2 <= ts + 1 + td)
        {
            starts.insert((k.clone(), ts + 1));
        }
    }
    starts
        .into_iter()
        .map(|(k, start)| {
            let agg = input
                .iter()
                .filter(|(k2, _, t)| *k2 == k && *t >= start && *t <= start + td)
                .fold("0".to_owned(), |a, (_, v, _)| format!("{a}+{v}"));
            (k, start, agg)
        })
        .collect()
}

fn input_strategy(max_ts: i64) -> impl Strategy<Value = Vec<(String, String, i64)>> {
    prop::collection::vec(
        (prop::sample::select(vec!["a", "b", "c"]), 0..max_ts),
        0..30,
    )
    .prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (k, ts))| (k.to_owned(), (i + 1).to_string(), ts))
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Out-of-order and late records, early records, default or longer retention, cache on
    /// or off, memory or RocksDB, emit on update or on close: record for record as Kafka's
    /// algorithm (oracle 1), and the same dropped count and final store.
    #[test]
    fn sliding_aggregate_matches_kafkas_algorithm(
        td in 1i64..15,
        grace in 0i64..20,
        extra_retention in prop::sample::select(vec![0i64, 0, 1_000]),
        input in input_strategy(120),
        caching in any::<bool>(),
        persistent in any::<bool>(),
        close in any::<bool>(),
    ) {
        let w = SlidingWindows::of_time_difference_and_grace(ms(td), ms(grace)).unwrap();
        let retention = 2 * td + grace + extra_retention;
        let setup = Setup {
            caching,
            persistent,
            emit: if close { EmitStrategy::OnWindowClose } else { EmitStrategy::OnWindowUpdate },
        };
        let (out, dropped, store) = run(topology(w, setup, Some(retention)), td, &input);
        // With emit-on-window-close Kafka's time-ordered store keeps a window while
        // start >= storeTime - retention (AbstractDualSchemaRocksDBSegmentedBytesStore
        // .getActualFrom), one ms longer than the key-ordered store.
        let visible = if close { retention + 1 } else { retention };
        let mut model = Model::new(td, grace, visible, close);
        for (k, v, ts) in &input {
            model.process_cached(k, v, *ts, caching);
        }
        prop_assert_eq!(out, model.out.clone());
        prop_assert_eq!(dropped, model.dropped);
        prop_assert_eq!(store, model.store_content());
    }

    /// With a grace period longer than any timestamp nothing is late: the final windows
    /// are the definition's (oracle 2), and every window's last update is its final value.
    #[test]
    fn sliding_windows_are_the_definitions_without_late_records(
        td in 1i64..15,
        input in input_strategy(60),
        caching in any::<bool>(),
    ) {
        let w = SlidingWindows::of_time_difference_and_grace(ms(td), ms(1_000)).unwrap();
        let setup = Setup { caching, persistent: false, emit: EmitStrategy::OnWindowUpdate };
        let (out, dropped, store) = run(topology(w, setup, None), td, &input);
        prop_assert_eq!(dropped, 0);
        let naive = naive_windows(td, &input);
        prop_assert_eq!(&store, &naive);
        let mut last: BTreeMap<(String, i64), String> = BTreeMap::new();
        for (k, s, e, v, _) in out {
            prop_assert_eq!(e - s, td);
            last.insert((k, s), v);
        }
        let last: Vec<_> = last.into_iter().map(|((k, s), v)| (k, s, v)).collect();
        prop_assert_eq!(last, naive);
    }
}
