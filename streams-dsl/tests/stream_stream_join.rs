#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Stream-stream joins (`join`, `left_join`, `outer_join` within `JoinWindows`) against a
//! model of Kafka Streams' rules, record for record (key, value, timestamp, order). The
//! rules, from Kafka 3.x/4.x sources:
//! - `KStreamJoinWindow.process`: a side's record is forwarded to its join processor
//!   first, then put in its side's window store (unless the key is null; a null value is
//!   not stored by a store retaining duplicates, `RocksDBWindowStore.put`).
//! - `AbstractRocksDBSegmentedBytesStore.fetch` / `getActualFrom`: a store returns only
//!   records at or after (its largest put timestamp) - retention + 1; retention = size +
//!   grace (`StreamJoinedStoreFactory.retentionPeriod`), size = before + after.
//! - `KStreamKStreamJoin.KStreamKStreamJoinProcessor.process`: the shared stream time
//!   (`TimeTracker`, both sides) advances first; an outer side forwards a null-key record
//!   with a value at once as `joiner(value, null)` (KIP-962); otherwise null keys or values
//!   are dropped; if the record's timestamp equals stream time the outer-join store is
//!   scanned (`emitNonJoinedOuterRecords`); the other side's store is fetched for
//!   `[max(0, ts - before), max(0, ts + after)]` (left side; `after`/`before` swapped on
//!   the right side, `KStreamKStreamJoinRightSide`), by timestamp then insertion order;
//!   each match removes the other record from the outer-join store and is forwarded with
//!   timestamp max(ts, other ts); an outer side without a match goes to the outer-join
//!   store, unless `ts + after < stream time` or there is no such store, then it is
//!   forwarded at once with its own timestamp.
//! - `emitNonJoinedOuterRecords`: skipped while `minTime + after + grace >= streamTime`
//!   (this side's `after`); else `minTime` is reset and the store walked in key order
//!   (`TimestampedKeyAndJoinSideSerializer`: timestamp big-endian, 0 for right / 1 for
//!   left, key bytes; list values in insertion order, `ListValueStore`), `minTime` set to
//!   each entry's timestamp; an entry whose window is still open
//!   (`ts + (left ? windows.after : windows.before) + grace >= streamTime`) is skipped and
//!   marks its side open; the walk stops once both sides are open; every other entry is
//!   forwarded with its own key and timestamp and `joiner(left, right)` with one side null,
//!   and removed. The test driver sets the emit interval to 0 (`TopologyTestDriver`).
//! - `KStreamImplJoin.join` / `OuterStreamJoinStoreFactory`: node and store names.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use streams_core::{I64Serde, Nullable, StreamsConfig, StringSerde, TopologyTestDriver};
use streams_dsl::{Consumed, JoinWindows, Produced, StreamJoined, StreamsBuilder};

type K = Option<String>;
type V = Option<i64>;
/// (key, value, timestamp) of one output record.
type Out = (K, String, i64);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Inner,
    Left,
    Outer,
}

fn fmt(l: Option<&V>, r: Option<&V>) -> String {
    let f = |v: Option<&V>| v.map_or("null".to_owned(), |v| format!("{}", v.unwrap_or(-1)));
    format!("{}+{}", f(l), f(r))
}

fn topology(
    kind: Kind,
    w: JoinWindows,
    in_memory: bool,
    name: Option<&str>,
) -> streams_core::Topology {
    let builder = StreamsBuilder::new();
    let left = builder.stream(
        "left",
        Consumed::with(Nullable(StringSerde), Nullable(I64Serde)),
    );
    let right = builder.stream(
        "right",
        Consumed::with(Nullable(StringSerde), Nullable(I64Serde)),
    );
    let mut joined = StreamJoined::with(
        Nullable(StringSerde),
        Nullable(I64Serde),
        Nullable(I64Serde),
    );
    if in_memory {
        joined = joined.in_memory();
    }
    if let Some(n) = name {
        joined = joined.with_name(n).with_store_name(n);
    }
    let out = match kind {
        Kind::Inner => left.join(&right, |l: &V, r: &V| fmt(Some(l), Some(r)), w, joined),
        Kind::Left => left.left_join(&right, |l: &V, r: Option<&V>| fmt(Some(l), r), w, joined),
        Kind::Outer => left.outer_join(&right, |l: Option<&V>, r: Option<&V>| fmt(l, r), w, joined),
    };
    out.to("out", Produced::with(Nullable(StringSerde), StringSerde));
    builder.build().unwrap()
}

/// One input record: (side is left, key, value, timestamp).
type In = (bool, K, V, i64);

/// A side's window store: (key, ts, value) in insertion order, and its largest put
/// timestamp.
type Buffer = (Vec<(String, i64, i64)>, i64);

/// The model of one join task (see the rules at the top).
struct Model {
    kind: Kind,
    w: JoinWindows,
    /// Window stores: (key, ts, value) in insertion order, and the largest put timestamp.
    buffers: [Buffer; 2],
    stream_time: i64,
    min_time: i64,
    /// The outer-join store: (ts, is_left, key) → values in insertion order.
    pending: BTreeMap<(i64, bool, String), Vec<i64>>,
    out: Vec<Out>,
}

impl Model {
    fn new(kind: Kind, w: JoinWindows) -> Self {
        Model {
            kind,
            w,
            buffers: [(Vec::new(), i64::MIN), (Vec::new(), i64::MIN)],
            stream_time: -1,
            min_time: i64::MAX,
            pending: BTreeMap::new(),
            out: Vec::new(),
        }
    }

    fn retention(&self) -> i64 {
        self.w.size_ms() + self.w.grace_period_ms()
    }

    fn emit(&mut self, key: K, left: Option<i64>, right: Option<i64>, ts: i64) {
        let l = left.map(Some);
        let r = right.map(Some);
        self.out.push((key, fmt(l.as_ref(), r.as_ref()), ts));
    }

    fn process(&mut self, (is_left, key, value, ts): In) {
        let side = usize::from(!is_left);
        let outer = match self.kind {
            Kind::Inner => false,
            Kind::Left => is_left,
            Kind::Outer => true,
        };
        let has_store = self.kind != Kind::Inner;
        // KStreamKStreamJoinProcessor.process
        self.stream_time = self.stream_time.max(ts);
        let (after, before) = if is_left {
            (self.w.after_ms(), self.w.before_ms())
        } else {
            (self.w.before_ms(), self.w.after_ms())
        };
        match (&key, value) {
            (None, Some(v)) if outer => {
                let (l, r) = if is_left {
                    (Some(v), None)
                } else {
                    (None, Some(v))
                };
                self.emit(None, l, r, ts);
            }
            (Some(k), Some(v)) => {
                let k = k.clone();
                if ts == self.stream_time && has_store {
                    self.emit_non_joined(after);
                }
                let from = (ts - before).max(0);
                let to = (ts + after).max(0);
                let (other, observed) = &self.buffers[1 - side];
                let actual_from = from.max(observed.saturating_sub(self.retention() - 1));
                let mut matches: Vec<(i64, i64)> = other
                    .iter()
                    .filter(|(ok, ots, _)| *ok == k && *ots >= actual_from && *ots <= to)
                    .map(|(_, ots, ov)| (*ots, *ov))
                    .collect();
                matches.sort_by_key(|(ots, _)| *ots); // stable: insertion order per ts
                for (ots, ov) in &matches {
                    if has_store {
                        self.pending.remove(&(*ots, !is_left, k.clone()));
                    }
                    let (l, r) = if is_left { (v, *ov) } else { (*ov, v) };
                    self.emit(Some(k.clone()), Some(l), Some(r), ts.max(*ots));
                }
                if outer && matches.is_empty() {
                    if !has_store || to < self.stream_time {
                        let (l, r) = if is_left {
                            (Some(v), None)
                        } else {
                            (None, Some(v))
                        };
                        self.emit(Some(k.clone()), l, r, ts);
                    } else {
                        self.min_time = self.min_time.min(ts);
                        self.pending
                            .entry((ts, is_left, k.clone()))
                            .or_default()
                            .push(v);
                    }
                }
            }
            _ => {} // dropped (StreamStreamJoinUtil.skipRecord)
        }
        // KStreamJoinWindow: put after forwarding, not for null keys or values.
        if let (Some(k), Some(v)) = (key, value) {
            let (buf, observed) = &mut self.buffers[side];
            buf.push((k, ts, v));
            *observed = (*observed).max(ts);
        }
    }

    fn emit_non_joined(&mut self, after: i64) {
        let grace = self.w.grace_period_ms();
        // Java's long arithmetic wraps (a fresh tracker's Long.MAX_VALUE scans).
        if self.min_time.wrapping_add(after).wrapping_add(grace) >= self.stream_time {
            return;
        }
        self.min_time = i64::MAX;
        let (mut left_open, mut right_open) = (false, false);
        let mut emitted = Vec::new();
        'walk: for ((ts, is_left, key), values) in &self.pending {
            for v in values {
                self.min_time = *ts;
                if left_open && right_open {
                    break 'walk;
                }
                let look_back = if *is_left {
                    self.w.after_ms()
                } else {
                    self.w.before_ms()
                };
                if ts + look_back + grace >= self.stream_time {
                    if *is_left {
                        left_open = true;
                    } else {
                        right_open = true;
                    }
                    continue;
                }
                let (l, r) = if *is_left {
                    (Some(*v), None)
                } else {
                    (None, Some(*v))
                };
                let (l, r) = (l.map(Some), r.map(Some));
                self.out
                    .push((Some(key.clone()), fmt(l.as_ref(), r.as_ref()), *ts));
                emitted.push((*ts, *is_left, key.clone()));
            }
        }
        for k in emitted {
            self.pending.remove(&k);
        }
    }
}

fn run(kind: Kind, w: JoinWindows, in_memory: bool, input: &[In]) -> (Vec<Out>, Vec<Out>) {
    let driver = TopologyTestDriver::new(
        topology(kind, w, in_memory, None),
        StreamsConfig::new("join"),
    )
    .unwrap();
    let left = driver
        .create_input_topic("left", Nullable(StringSerde), Nullable(I64Serde))
        .unwrap();
    let right = driver
        .create_input_topic("right", Nullable(StringSerde), Nullable(I64Serde))
        .unwrap();
    let out = driver.create_output_topic("out", Nullable(StringSerde), StringSerde);
    let mut model = Model::new(kind, w);
    for r in input {
        let topic = if r.0 { &left } else { &right };
        topic
            .pipe_input_with_timestamp(r.1.clone(), r.2, r.3)
            .unwrap();
        model.process(r.clone());
    }
    let got = out
        .read_records_to_vec()
        .unwrap()
        .into_iter()
        .map(|r| (r.key, r.value, r.timestamp))
        .collect();
    (got, model.out)
}

fn input_strategy() -> impl Strategy<Value = Vec<In>> {
    let key = prop_oneof![
        8 => prop::sample::select(vec!["a", "b", "c"]).prop_map(|s| Some(s.to_owned())),
        1 => Just(None),
    ];
    let value = prop_oneof![9 => (0i64..100).prop_map(Some), 1 => Just(None)];
    prop::collection::vec((any::<bool>(), key, value, 0i64..120), 1..40)
}

fn windows_strategy() -> impl Strategy<Value = JoinWindows> {
    (0i64..15, 0i64..15, 0i64..10, any::<bool>()).prop_map(|(before, after, grace, asym)| {
        let w = JoinWindows::of_time_difference_and_grace(
            Duration::from_millis(before as u64),
            Duration::from_millis(grace as u64),
        )
        .unwrap();
        if asym {
            w.after(Duration::from_millis(after as u64)).unwrap()
        } else {
            w
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn inner_join_matches_kafka_rules(input in input_strategy(), w in windows_strategy(), mem in any::<bool>()) {
        let (got, want) = run(Kind::Inner, w, mem, &input);
        prop_assert_eq!(got, want);
    }

    #[test]
    fn left_join_matches_kafka_rules(input in input_strategy(), w in windows_strategy(), mem in any::<bool>()) {
        let (got, want) = run(Kind::Left, w, mem, &input);
        prop_assert_eq!(got, want);
    }

    #[test]
    fn outer_join_matches_kafka_rules(input in input_strategy(), w in windows_strategy(), mem in any::<bool>()) {
        let (got, want) = run(Kind::Outer, w, mem, &input);
        prop_assert_eq!(got, want);
    }
}

fn s(k: &str) -> K {
    Some(k.to_owned())
}

/// Kafka's `KStreamKStreamLeftJoinTest`-style walk: a left record is emitted with a null
/// right side only after stream time passes its window plus grace, and not at all once
/// it found a match.
#[test]
fn left_join_emits_non_joined_records_only_after_the_window_closes() {
    let w = JoinWindows::of_time_difference_and_grace(
        Duration::from_millis(10),
        Duration::from_millis(5),
    )
    .unwrap();
    let input = [
        (true, s("a"), Some(1), 100),
        (true, s("b"), Some(2), 100),
        (false, s("b"), Some(3), 105), // b joins: 2+3 at 105
        (false, s("x"), Some(4), 115), // 100 + 10 + 5 = 115: a's window still open
        (false, s("x"), Some(5), 116), // closed: a is emitted as 1+null at 100
    ];
    let (got, want) = run(Kind::Left, w, false, &input);
    assert_eq!(
        got,
        vec![
            (s("b"), "2+3".to_owned(), 105),
            (s("a"), "1+null".to_owned(), 100)
        ]
    );
    assert_eq!(got, want);
}

/// A left or outer join forwards null-key records at once (KIP-962); an inner join drops
/// them, and null values are dropped by all joins.
#[test]
fn null_keys_and_values() {
    let w = JoinWindows::of_time_difference_with_no_grace(Duration::from_millis(10)).unwrap();
    let input = [
        (true, None, Some(1), 5),
        (false, None, Some(2), 6),
        (true, s("a"), None, 7),
    ];
    let (got, _) = run(Kind::Inner, w, false, &input);
    assert!(got.is_empty());
    let (got, _) = run(Kind::Left, w, false, &input);
    assert_eq!(got, vec![(None, "1+null".to_owned(), 5)]);
    let (got, _) = run(Kind::Outer, w, false, &input);
    assert_eq!(
        got,
        vec![
            (None, "1+null".to_owned(), 5),
            (None, "null+2".to_owned(), 6)
        ]
    );
}

/// A self-join (Kafka's `KStreamKStreamSelfJoinTest` without the optimization): each
/// record meets itself through the other side's buffer, and every earlier record in the
/// window twice (once from each side).
#[test]
fn self_join_joins_each_record_with_itself() {
    let builder = StreamsBuilder::new();
    let s1 = builder.stream("in", Consumed::with(StringSerde, I64Serde));
    s1.clone()
        .join(
            &s1,
            |a: &i64, b: &i64| format!("{a}-{b}"),
            JoinWindows::of_time_difference_with_no_grace(Duration::from_millis(10)).unwrap(),
            StreamJoined::new(),
        )
        .to("out", Produced::with(StringSerde, StringSerde));
    let driver =
        TopologyTestDriver::new(builder.build().unwrap(), StreamsConfig::new("self")).unwrap();
    let input = driver
        .create_input_topic("in", StringSerde, I64Serde)
        .unwrap();
    input.pipe_input_with_timestamp("k".into(), 1, 0).unwrap();
    input.pipe_input_with_timestamp("k".into(), 2, 5).unwrap();
    let out = driver
        .create_output_topic("out", StringSerde, StringSerde)
        .read_records_to_vec()
        .unwrap();
    let got: Vec<_> = out.into_iter().map(|r| (r.value, r.timestamp)).collect();
    assert_eq!(
        got,
        vec![
            ("1-1".to_owned(), 0),
            ("2-1".to_owned(), 5),
            ("1-2".to_owned(), 5),
            ("2-2".to_owned(), 5)
        ]
    );
}

/// With Kafka's 1,000 ms emit interval (set explicitly: the test driver defaults to 0),
/// the outer-join store is scanned at most once per second of wall-clock time.
#[test]
fn emit_interval_throttles_by_wall_clock() {
    let w = JoinWindows::of_time_difference_with_no_grace(Duration::from_millis(10)).unwrap();
    let config = StreamsConfig::new("join").outer_join_emit_interval(Duration::from_millis(1_000));
    let driver =
        TopologyTestDriver::with_wall_clock(topology(Kind::Left, w, true, None), config, 0)
            .unwrap();
    let left = driver
        .create_input_topic("left", Nullable(StringSerde), Nullable(I64Serde))
        .unwrap();
    let right = driver
        .create_input_topic("right", Nullable(StringSerde), Nullable(I64Serde))
        .unwrap();
    let out = driver.create_output_topic("out", Nullable(StringSerde), StringSerde);
    // The first record already scans (Java's Long.MAX_VALUE min time wraps): the empty
    // store is scanned at wall-clock 0, and the next scan may come at 1,000.
    left.pipe_input_with_timestamp(s("a"), Some(1), 0).unwrap();
    right
        .pipe_input_with_timestamp(s("x"), Some(9), 20)
        .unwrap(); // throttled: a waits
    assert!(out.is_empty());
    driver
        .advance_wall_clock_time(Duration::from_millis(1_000))
        .unwrap();
    right
        .pipe_input_with_timestamp(s("x"), Some(9), 21)
        .unwrap();
    assert_eq!(
        out.read_key_values_to_vec().unwrap(),
        vec![(s("a"), "1+null".to_owned())]
    );
    left.pipe_input_with_timestamp(s("b"), Some(2), 22).unwrap();
    right
        .pipe_input_with_timestamp(s("x"), Some(9), 40)
        .unwrap(); // throttled: b waits
    assert!(out.is_empty());
    driver
        .advance_wall_clock_time(Duration::from_millis(1_000))
        .unwrap();
    right
        .pipe_input_with_timestamp(s("x"), Some(9), 41)
        .unwrap();
    assert_eq!(
        out.read_key_values_to_vec().unwrap(),
        vec![(s("b"), "2+null".to_owned())]
    );
}

/// The outer-join store's changelog carries Kafka's bytes: `TimestampedKeyAndJoinSide`
/// keys and `ListSerde` lists of `LeftOrRightValue`s; buffers are logged with Kafka's
/// window changelog keys (key, timestamp, sequence number).
#[test]
fn join_store_changelogs_use_kafka_layouts() {
    let w = JoinWindows::of_time_difference_with_no_grace(Duration::from_millis(10)).unwrap();
    let driver = TopologyTestDriver::new(
        topology(Kind::Outer, w, true, None),
        StreamsConfig::new("app"),
    )
    .unwrap();
    let left = driver
        .create_input_topic("left", Nullable(StringSerde), Nullable(I64Serde))
        .unwrap();
    left.pipe_input_with_timestamp(s("a"), Some(7), 3).unwrap();
    let shared = driver.create_output_topic(
        "app-KSTREAM-OUTERSHARED-0000000004-store-changelog",
        streams_core::BytesSerde,
        streams_core::BytesSerde,
    );
    let (k, v) = shared.read_key_value().unwrap();
    let mut want_k = 3i64.to_be_bytes().to_vec();
    want_k.push(1);
    want_k.extend_from_slice(b"a");
    assert_eq!(k, want_k);
    let mut want_v = vec![1u8, 0, 0, 0, 1, 0, 0, 0, 9, 1];
    want_v.extend_from_slice(&7i64.to_be_bytes());
    assert_eq!(v, want_v);
    let buffer = driver.create_output_topic(
        "app-KSTREAM-OUTERTHIS-0000000004-store-changelog",
        streams_core::BytesSerde,
        streams_core::BytesSerde,
    );
    let (k, v) = buffer.read_key_value().unwrap();
    let mut want_k = b"a".to_vec();
    want_k.extend_from_slice(&3i64.to_be_bytes());
    want_k.extend_from_slice(&1i32.to_be_bytes());
    assert_eq!((k, v), (want_k, 7i64.to_be_bytes().to_vec()));
}

/// Names as Kafka's `KStreamImplJoin` draws them (compare Kafka's
/// `StreamsBuilderTest` / `TopologyTest` join descriptions).
#[test]
fn describe_names_match_kafka() {
    let w = JoinWindows::of_time_difference_with_no_grace(Duration::from_millis(10)).unwrap();
    let text = topology(Kind::Inner, w, false, None)
        .describe()
        .unwrap()
        .to_string();
    for needle in [
        "Processor: KSTREAM-WINDOWED-0000000002 (stores: [KSTREAM-JOINTHIS-0000000004-store])",
        "Processor: KSTREAM-WINDOWED-0000000003 (stores: [KSTREAM-JOINOTHER-0000000005-store])",
        "Processor: KSTREAM-JOINTHIS-0000000004 (stores: [KSTREAM-JOINOTHER-0000000005-store])",
        "Processor: KSTREAM-JOINOTHER-0000000005 (stores: [KSTREAM-JOINTHIS-0000000004-store])",
        "Processor: KSTREAM-MERGE-0000000006 (stores: [])",
        "Sink: KSTREAM-SINK-0000000007 (topic: out)",
    ] {
        assert!(text.contains(needle), "missing `{needle}` in\n{text}");
    }
    let text = topology(Kind::Left, w, false, None)
        .describe()
        .unwrap()
        .to_string();
    for needle in [
        "Processor: KSTREAM-JOINTHIS-0000000004 (stores: [KSTREAM-OUTEROTHER-0000000005-store, KSTREAM-OUTERSHARED-0000000004-store])",
        "Processor: KSTREAM-OUTEROTHER-0000000005 (stores: [KSTREAM-JOINTHIS-0000000004-store, KSTREAM-OUTERSHARED-0000000004-store])",
    ] {
        assert!(text.contains(needle), "missing `{needle}` in\n{text}");
    }
    let text = topology(Kind::Outer, w, false, None)
        .describe()
        .unwrap()
        .to_string();
    assert!(text.contains("Processor: KSTREAM-OUTERTHIS-0000000004 (stores: [KSTREAM-OUTEROTHER-0000000005-store, KSTREAM-OUTERSHARED-0000000004-store])"), "{text}");
    let text = topology(Kind::Outer, w, false, Some("j"))
        .describe()
        .unwrap()
        .to_string();
    for needle in [
        "Processor: j-this-windowed (stores: [j-outer-this-join-store])",
        "Processor: j-other-windowed (stores: [j-outer-other-join-store])",
        "Processor: j-outer-this-join (stores: [j-outer-other-join-store, j-outer-shared-join-store])",
        "Processor: j-outer-other-join (stores: [j-outer-this-join-store, j-outer-shared-join-store])",
        "Processor: j-merge (stores: [])",
    ] {
        assert!(text.contains(needle), "missing `{needle}` in\n{text}");
    }
}

/// After a key change both sides are repartitioned (`<node>-repartition`, Kafka's
/// `repartitionForJoin`), and the join still works.
#[test]
fn key_changing_sides_are_repartitioned() {
    let builder = StreamsBuilder::new();
    let left = builder
        .stream("left", Consumed::with(StringSerde, StringSerde))
        .select_key(|_k: &String, v: &String| v.clone());
    let right = builder
        .stream("right", Consumed::with(StringSerde, StringSerde))
        .map(|k: String, v: String| (v, k));
    left.join(
        &right,
        |a: &String, b: &String| format!("{a}{b}"),
        JoinWindows::of_time_difference_with_no_grace(Duration::from_secs(1)).unwrap(),
        StreamJoined::with(StringSerde, StringSerde, StringSerde),
    )
    .to("out", Produced::with(StringSerde, StringSerde));
    let topology = builder.build().unwrap();
    let text = topology.describe().unwrap().to_string();
    assert!(
        text.contains(
            "Sink: KSTREAM-SINK-0000000004 (topic: KSTREAM-KEY-SELECT-0000000001-repartition)"
        ),
        "{text}"
    );
    assert!(
        text.contains("Sink: KSTREAM-SINK-0000000007 (topic: KSTREAM-MAP-0000000003-repartition)"),
        "{text}"
    );
    assert!(
        text.contains("Processor: KSTREAM-JOINTHIS-0000000012"),
        "{text}"
    );
    let driver = TopologyTestDriver::new(topology, StreamsConfig::new("app")).unwrap();
    driver
        .create_input_topic("left", StringSerde, StringSerde)
        .unwrap()
        .pipe_input("x".into(), "k".into())
        .unwrap();
    driver
        .create_input_topic("right", StringSerde, StringSerde)
        .unwrap()
        .pipe_input("y".into(), "k".into())
        .unwrap();
    let out = driver.create_output_topic("out", StringSerde, StringSerde);
    assert_eq!(
        out.read_key_values_to_vec().unwrap(),
        vec![("k".to_owned(), "ky".to_owned())]
    );
}

/// Kafka's `TopologyTest.streamStreamJoinTopologyWithDefaultStoresNames` and
/// `streamStreamOuterJoinTopologyWithDefaultStoresNames`, text for text.
#[test]
fn describe_is_kafkas_text() {
    for (outer, this, other) in [
        (
            false,
            "KSTREAM-JOINTHIS-0000000004",
            "KSTREAM-JOINOTHER-0000000005",
        ),
        (
            true,
            "KSTREAM-OUTERTHIS-0000000004",
            "KSTREAM-OUTEROTHER-0000000005",
        ),
    ] {
        let builder = StreamsBuilder::new();
        let s1 = builder.stream("input-topic1", Consumed::with(I64Serde, StringSerde));
        let s2 = builder.stream("input-topic2", Consumed::with(I64Serde, StringSerde));
        let w = JoinWindows::of_time_difference_with_no_grace(Duration::from_millis(100)).unwrap();
        let joined = StreamJoined::with(I64Serde, StringSerde, StringSerde);
        if outer {
            let _ = s1.outer_join(
                &s2,
                |a: Option<&String>, b: Option<&String>| format!("{a:?}{b:?}"),
                w,
                joined,
            );
        } else {
            let _ = s1.join(&s2, |a: &String, b: &String| format!("{a}{b}"), w, joined);
        }
        let shared = if outer {
            ", KSTREAM-OUTERSHARED-0000000004-store"
        } else {
            ""
        };
        let want = format!(
            "Topologies:\n\
             \x20  Sub-topology: 0\n\
             \x20   Source: KSTREAM-SOURCE-0000000000 (topics: [input-topic1])\n\
             \x20     --> KSTREAM-WINDOWED-0000000002\n\
             \x20   Source: KSTREAM-SOURCE-0000000001 (topics: [input-topic2])\n\
             \x20     --> KSTREAM-WINDOWED-0000000003\n\
             \x20   Processor: KSTREAM-WINDOWED-0000000002 (stores: [{this}-store])\n\
             \x20     --> {this}\n\
             \x20     <-- KSTREAM-SOURCE-0000000000\n\
             \x20   Processor: KSTREAM-WINDOWED-0000000003 (stores: [{other}-store])\n\
             \x20     --> {other}\n\
             \x20     <-- KSTREAM-SOURCE-0000000001\n\
             \x20   Processor: {other} (stores: [{this}-store{shared}])\n\
             \x20     --> KSTREAM-MERGE-0000000006\n\
             \x20     <-- KSTREAM-WINDOWED-0000000003\n\
             \x20   Processor: {this} (stores: [{other}-store{shared}])\n\
             \x20     --> KSTREAM-MERGE-0000000006\n\
             \x20     <-- KSTREAM-WINDOWED-0000000002\n\
             \x20   Processor: KSTREAM-MERGE-0000000006 (stores: [])\n\
             \x20     --> none\n\
             \x20     <-- {this}, {other}\n\n"
        );
        assert_eq!(
            builder.build().unwrap().describe().unwrap().to_string(),
            want
        );
    }
}
