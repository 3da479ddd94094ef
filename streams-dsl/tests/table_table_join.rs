#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Table-table joins (`KTable::join`, `left_join`, `outer_join`, materialized or not)
//! against a model of Kafka Streams' rules, with every cache off and on (the test driver
//! flushes after every record). The rules, from Kafka 3.x/4.x sources:
//! - `KTableSource.process`: a table record upserts its key, a tombstone deletes it, and
//!   the update goes downstream as `Change(new, old)`. Without a cache every record is
//!   forwarded (a delete of an absent key as `Change(null, null)`); with one, the flush
//!   forwards only when the new or the old value is not null (`CachingKeyValueStore`).
//! - `KTableImpl#doJoin`: `KTABLE-JOINTHIS-<n>` joins this table's updates with the other
//!   table's value getter, `KTABLE-JOINOTHER-<n>` the other's updates with this one's;
//!   inner: `KTableKTableInnerJoin` on both sides; left: `KTableKTableLeftJoin` /
//!   `KTableKTableRightJoin`; outer: `KTableKTableOuterJoin` on both sides; a left (outer)
//!   join asks this (both) table(s) for old values.
//! - `KTableKTableInnerJoin`: nothing when the other side is absent; else
//!   `Change(joiner(new, other) or null, ...)` at `max(ts, other ts)`.
//! - `KTableKTableLeftJoin`: nothing when the other side, new and old are all absent;
//!   else `joiner(new, other?)` (null for a null new) at `max(ts, other ts or -1)`.
//! - `KTableKTableRightJoin`: nothing when this table's value is absent; else
//!   `joiner(this, new?)`, even for a null new, at `max(ts, this ts)`.
//! - `KTableKTableOuterJoin`: nothing when the other side, new and old are all absent;
//!   else `joiner(new?, other?)` (null when both are absent) at `max(ts, other ts)` or
//!   `ts` when the other side is absent.
//! - `KTableKTableJoinMerger`: forwards; materialized, it writes its store (a null value
//!   deletes) and, with a cache, the flush forwards only a non-null new or old value.
//! - `KTableKTable*JoinValueGetter`: the result read through a stream-table join is the
//!   join of both sides' current values.
//! - Old values (`enableSendingOldValues`), asked for by a downstream `groupBy`, flow
//!   through both join sides: a `groupBy(...).reduce(+, -)` over the result always equals
//!   the sum over the current result rows.

use std::collections::BTreeMap;

use proptest::prelude::*;
use streams_core::{I64Serde, Nullable, StreamsConfig, StringSerde, TopologyTestDriver};
use streams_dsl::{Consumed, Grouped, Joined, KTable, Materialized, Produced, StreamsBuilder};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Inner,
    Left,
    Outer,
}

/// One input: (0 = left table, 1 = right table, 2 = probe stream, key, value, timestamp).
type In = (u8, String, Option<i64>, i64);
type Out = (String, Option<String>, i64);

fn fmtj(l: Option<i64>, r: Option<i64>) -> String {
    let s = |v: Option<i64>| v.map_or("null".to_owned(), |v| v.to_string());
    format!("{}+{}", s(l), s(r))
}

fn mat<V: 'static>(name: &str, caching: bool) -> Materialized<String, V> {
    let m = Materialized::as_store(name);
    if caching {
        m
    } else {
        m.with_caching_disabled()
    }
}

struct Run {
    out: Vec<Out>,
    probed: Vec<(String, String)>,
    sum: Option<i64>,
}

fn run(kind: Kind, caching: bool, materialized: bool, group: bool, input: &[In]) -> Run {
    let builder = StreamsBuilder::new();
    let lt = builder.table(
        "left",
        Consumed::with(StringSerde, I64Serde),
        mat("lstore", caching),
    );
    let rt = builder.table(
        "right",
        Consumed::with(StringSerde, I64Serde),
        mat("rstore", caching),
    );
    let m = || mat::<String>("joined", caching).with_value_serde(StringSerde);
    let joined: KTable<String, String> = match (kind, materialized) {
        (Kind::Inner, false) => lt.join(&rt, |l: &i64, r: &i64| fmtj(Some(*l), Some(*r))),
        (Kind::Inner, true) => {
            lt.join_materialized(&rt, |l: &i64, r: &i64| fmtj(Some(*l), Some(*r)), m())
        }
        (Kind::Left, false) => {
            lt.left_join(&rt, |l: &i64, r: Option<&i64>| fmtj(Some(*l), r.copied()))
        }
        (Kind::Left, true) => lt.left_join_materialized(
            &rt,
            |l: &i64, r: Option<&i64>| fmtj(Some(*l), r.copied()),
            m(),
        ),
        (Kind::Outer, false) => lt.outer_join(&rt, |l: Option<&i64>, r: Option<&i64>| {
            fmtj(l.copied(), r.copied())
        }),
        (Kind::Outer, true) => lt.outer_join_materialized(
            &rt,
            |l: Option<&i64>, r: Option<&i64>| fmtj(l.copied(), r.copied()),
            m(),
        ),
    };
    joined
        .to_stream()
        .to("out", Produced::with(StringSerde, Nullable(StringSerde)));
    builder
        .stream("probe", Consumed::with(StringSerde, StringSerde))
        .join_table(&joined, |_p: &String, v: &String| v.clone(), Joined::new())
        .to("probed", Produced::with(StringSerde, StringSerde));
    if group {
        joined
            .group_by(
                |_k: &String, v: &String| ("all".to_owned(), v.len() as i64),
                Grouped::with(StringSerde, I64Serde),
            )
            .reduce(|a, b| a + b, |a, b| a - b, mat("sum", caching));
    }
    let driver =
        TopologyTestDriver::new(builder.build().unwrap(), StreamsConfig::new("ttj")).unwrap();
    let left = driver
        .create_input_topic("left", StringSerde, Nullable(I64Serde))
        .unwrap();
    let right = driver
        .create_input_topic("right", StringSerde, Nullable(I64Serde))
        .unwrap();
    let probe = driver
        .create_input_topic("probe", StringSerde, StringSerde)
        .unwrap();
    for (side, k, v, ts) in input {
        match side {
            0 => left.pipe_input_with_timestamp(k.clone(), *v, *ts).unwrap(),
            1 => right.pipe_input_with_timestamp(k.clone(), *v, *ts).unwrap(),
            _ => probe
                .pipe_input_with_timestamp(k.clone(), String::new(), *ts)
                .unwrap(),
        }
    }
    let out = driver
        .create_output_topic("out", StringSerde, Nullable(StringSerde))
        .read_records_to_vec()
        .unwrap()
        .into_iter()
        .map(|r| (r.key, r.value, r.timestamp))
        .collect();
    let probed = driver
        .create_output_topic("probed", StringSerde, StringSerde)
        .read_key_values_to_vec()
        .unwrap();
    let sum = group.then(|| {
        driver
            .read_key_value_store::<String, i64>("sum")
            .unwrap()
            .into_iter()
            .find(|(k, _)| k == "all")
            .map_or(0, |(_, v)| v)
    });
    Run { out, probed, sum }
}

type Table = BTreeMap<String, (i64, i64)>;

/// The join's current row for `k` (Kafka's `KTableKTable*JoinValueGetter`).
fn row(kind: Kind, l: &Table, r: &Table, k: &str) -> Option<(String, i64)> {
    let (a, b) = (l.get(k), r.get(k));
    match kind {
        Kind::Inner => {
            let (a, b) = (a?, b?);
            Some((fmtj(Some(a.0), Some(b.0)), a.1.max(b.1)))
        }
        Kind::Left => {
            let a = a?;
            Some((
                fmtj(Some(a.0), b.map(|b| b.0)),
                b.map_or(a.1, |b| a.1.max(b.1)),
            ))
        }
        Kind::Outer => {
            if a.is_none() && b.is_none() {
                return None;
            }
            let ts = a.map_or(-1, |a| a.1).max(b.map_or(-1, |b| b.1));
            Some((fmtj(a.map(|a| a.0), b.map(|b| b.0)), ts))
        }
    }
}

/// What Kafka Streams emits for `input`, by the rules in the module doc.
fn model(kind: Kind, caching: bool, materialized: bool, input: &[In]) -> Run {
    let (mut l, mut r, mut merged) = (
        Table::new(),
        Table::new(),
        BTreeMap::<String, String>::new(),
    );
    let mut out = Vec::new();
    let mut probed = Vec::new();
    for (side, k, v, ts) in input {
        if *side == 2 {
            if let Some((value, _)) = row(kind, &l, &r, k) {
                probed.push((k.clone(), value));
            }
            continue;
        }
        let (this, other) = if *side == 0 {
            (&mut l, &r)
        } else {
            (&mut r, &l)
        };
        // KTableSource: apply the update; the cache swallows a delete of an absent key.
        let prev = match v {
            Some(v) => this.insert(k.clone(), (*v, *ts)),
            None => this.remove(k),
        };
        if caching && v.is_none() && prev.is_none() {
            continue;
        }
        let o = other.get(k).copied();
        let ov = o.map(|o| o.0);
        let ots = o.map(|o| o.1);
        // The join processor of this side.
        let emitted: Option<(Option<String>, i64)> = match (kind, *side) {
            (Kind::Inner, s) => o.map(|o| {
                let new = v.map(|n| {
                    if s == 0 {
                        fmtj(Some(n), Some(o.0))
                    } else {
                        fmtj(Some(o.0), Some(n))
                    }
                });
                (new, ts.max(&o.1).to_owned())
            }),
            // KTableKTableLeftJoin (this = left).
            (Kind::Left, 0) => {
                if o.is_none() && v.is_none() && prev.is_none() {
                    None
                } else {
                    Some((v.map(|n| fmtj(Some(n), ov)), (*ts).max(ots.unwrap_or(-1))))
                }
            }
            // KTableKTableRightJoin (updates of the right table; `o` is the left value).
            (Kind::Left, _) => o.map(|o| (Some(fmtj(Some(o.0), *v)), (*ts).max(o.1))),
            (Kind::Outer, s) => {
                if o.is_none() && v.is_none() && prev.is_none() {
                    None
                } else {
                    let new = (o.is_some() || v.is_some())
                        .then(|| if s == 0 { fmtj(*v, ov) } else { fmtj(ov, *v) });
                    Some((new, ots.map_or(*ts, |t| (*ts).max(t))))
                }
            }
        };
        let Some((new, ts)) = emitted else { continue };
        // KTableKTableJoinMerger.
        if materialized {
            let old = match &new {
                Some(n) => merged.insert(k.clone(), n.clone()),
                None => merged.remove(k),
            };
            if caching && new.is_none() && old.is_none() {
                continue;
            }
        }
        out.push((k.clone(), new, ts));
    }
    let sum = l
        .keys()
        .chain(r.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter_map(|k| row(kind, &l, &r, k))
        .map(|(v, _)| v.len() as i64)
        .sum();
    Run {
        out,
        probed,
        sum: Some(sum),
    }
}

fn input_strategy() -> impl Strategy<Value = Vec<In>> {
    prop::collection::vec(
        (
            prop_oneof![4 => Just(0u8), 4 => Just(1u8), 1 => Just(2u8)],
            prop::sample::select(vec!["a", "b", "c"]).prop_map(str::to_owned),
            prop::option::weighted(0.7, 0i64..20),
            0i64..100,
        ),
        0..40,
    )
}

fn check(
    kind: Kind,
    caching: bool,
    materialized: bool,
    group: bool,
    input: &[In],
) -> Result<(), TestCaseError> {
    let got = run(kind, caching, materialized, group, input);
    let want = model(kind, caching, materialized, input);
    prop_assert_eq!(&got.out, &want.out, "emitted records");
    prop_assert_eq!(
        &got.probed,
        &want.probed,
        "the result read through its value getter"
    );
    if group {
        prop_assert_eq!(
            got.sum,
            want.sum,
            "groupBy/reduce over the result (old values)"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn inner_join_matches_kafka_rules(input in input_strategy(), caching in any::<bool>(),
                                      materialized in any::<bool>(), group in any::<bool>()) {
        check(Kind::Inner, caching, materialized, group, &input)?;
    }

    #[test]
    fn left_join_matches_kafka_rules(input in input_strategy(), caching in any::<bool>(),
                                     materialized in any::<bool>(), group in any::<bool>()) {
        check(Kind::Left, caching, materialized, group, &input)?;
    }

    #[test]
    fn outer_join_matches_kafka_rules(input in input_strategy(), caching in any::<bool>(),
                                      materialized in any::<bool>(), group in any::<bool>()) {
        check(Kind::Outer, caching, materialized, group, &input)?;
    }
}

/// Kafka's names (`KTableImpl#doJoin`): unmaterialized, `KTABLE-MERGE-`, then
/// `KTABLE-JOINTHIS-`, `KTABLE-JOINOTHER-`, each join side connected to the other
/// side's store; materialized without a name, the store name is drawn first.
#[test]
fn join_nodes_are_named_as_kafka_names_them() {
    let builder = StreamsBuilder::new();
    let a = builder.table::<String, String>("a", Consumed::default(), Materialized::new());
    let b = builder.table::<String, String>("b", Consumed::default(), Materialized::new());
    a.join(&b, |x: &String, y: &String| format!("{x}{y}"))
        .to_stream()
        .to("out", Produced::default());
    let text = builder.build().unwrap().describe().unwrap().to_string();
    for line in [
        "Processor: KTABLE-SOURCE-0000000002 (stores: [a-STATE-STORE-0000000000])",
        "Processor: KTABLE-SOURCE-0000000005 (stores: [b-STATE-STORE-0000000003])",
        "Processor: KTABLE-JOINTHIS-0000000007 (stores: [b-STATE-STORE-0000000003])",
        "Processor: KTABLE-JOINOTHER-0000000008 (stores: [a-STATE-STORE-0000000000])",
        "Processor: KTABLE-MERGE-0000000006 (stores: [])",
        "Processor: KTABLE-TOSTREAM-0000000009 (stores: [])",
        "Sink: KSTREAM-SINK-0000000010 (topic: out)",
    ] {
        assert!(text.contains(line), "{line} missing in\n{text}");
    }

    let builder = StreamsBuilder::new();
    let a = builder.table::<String, String>("a", Consumed::default(), Materialized::new());
    let b = builder.table::<String, String>("b", Consumed::default(), Materialized::new());
    let j = a.left_join_materialized(
        &b,
        |x: &String, y: Option<&String>| format!("{x}{y:?}"),
        Materialized::new(),
    );
    assert_eq!(j.store_name(), Some("KTABLE-MERGE-STATE-STORE-0000000006"));
    let o = j.outer_join(&a, |x: Option<&String>, y: Option<&String>| {
        format!("{x:?}{y:?}")
    });
    assert_eq!(o.store_name(), None);
    o.to_stream().to("out", Produced::default());
    let text = builder.build().unwrap().describe().unwrap().to_string();
    for line in [
        "Processor: KTABLE-JOINTHIS-0000000008 (stores: [b-STATE-STORE-0000000003])",
        "Processor: KTABLE-JOINOTHER-0000000009 (stores: [a-STATE-STORE-0000000000])",
        "Processor: KTABLE-MERGE-0000000007 (stores: [KTABLE-MERGE-STATE-STORE-0000000006])",
        "Processor: KTABLE-JOINTHIS-0000000011 (stores: [a-STATE-STORE-0000000000])",
        "Processor: KTABLE-JOINOTHER-0000000012 (stores: [KTABLE-MERGE-STATE-STORE-0000000006])",
        "Processor: KTABLE-MERGE-0000000010 (stores: [])",
    ] {
        assert!(text.contains(line), "{line} missing in\n{text}");
    }
}

/// A join of an unmaterialized join result reads it through Kafka's join value getter:
/// both sides' stores are connected, and the result's timestamp is the largest of the
/// three rows'.
#[test]
fn chained_join_reads_the_unmaterialized_result_through_its_getter() {
    for caching in [false, true] {
        let builder = StreamsBuilder::new();
        let t = |n: &str| {
            builder.table(
                n,
                Consumed::with(StringSerde, StringSerde),
                mat::<String>(&format!("{n}-store"), caching),
            )
        };
        let (a, b, c) = (t("a"), t("b"), t("c"));
        let ab = a.join(&b, |x: &String, y: &String| format!("{x}{y}"));
        c.join(&ab, |z: &String, xy: &String| format!("{z}{xy}"))
            .to_stream()
            .to("out", Produced::with(StringSerde, Nullable(StringSerde)));
        let topology = builder.build().unwrap();
        let text = topology.describe().unwrap().to_string();
        assert!(
            text.contains("(stores: [a-store, b-store])"),
            "the getter of the join result reads both stores\n{text}"
        );
        let driver = TopologyTestDriver::new(topology, StreamsConfig::new("ttj")).unwrap();
        let input = |n: &str| {
            driver
                .create_input_topic(n, StringSerde, StringSerde)
                .unwrap()
        };
        input("a")
            .pipe_input_with_timestamp("k".into(), "x".into(), 30)
            .unwrap();
        input("b")
            .pipe_input_with_timestamp("k".into(), "y".into(), 10)
            .unwrap();
        input("c")
            .pipe_input_with_timestamp("k".into(), "z".into(), 20)
            .unwrap();
        input("b")
            .pipe_input_with_timestamp("k".into(), "w".into(), 40)
            .unwrap();
        let out: Vec<Out> = driver
            .create_output_topic("out", StringSerde, Nullable(StringSerde))
            .read_records_to_vec()
            .unwrap()
            .into_iter()
            .map(|r| (r.key, r.value, r.timestamp))
            .collect();
        assert_eq!(
            out,
            vec![
                ("k".to_owned(), Some("zxy".to_owned()), 30),
                ("k".to_owned(), Some("zxw".to_owned()), 40),
            ],
            "caching {caching}"
        );
    }
}
