#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Stream-global-table joins (`join_global`, `left_join_global`) against a model of
//! Kafka Streams' rules. The rules, from Kafka 3.9/4.0 sources:
//! - `KTableSource` on the global store: a record upserts its key, a tombstone deletes
//!   it; global table updates reach no join output.
//! - `KStreamKTableJoinProcessor.maybeDropRecord` (with `KStreamGlobalKTableJoin`'s key
//!   selector): a left join keeps a record with a null key and a value, whatever its
//!   selected key (KIP-962); otherwise a record whose selected key or value is null is
//!   dropped and counted (`dropped-records`). The key selector sees a null key (and
//!   may map it to a key: an inner join then joins it).
//! - `KStreamKTableJoinProcessor.doJoin`: the global value of the selected key (none for a
//!   null selected key); an inner join forwards only when there is one; the result keeps
//!   the stream record's key and timestamp, value `joiner(key, value, globalValue)`.
//! - `KStreamImpl#globalTableJoin`: processor `KSTREAM-LEFTJOIN-<n>` for both joins (the
//!   prefix Kafka draws), connected to no store, no repartition.

use std::collections::BTreeMap;

use proptest::prelude::*;
use streams_core::{I64Serde, Nullable, StreamsConfig, StringSerde, TopologyTestDriver};
use streams_dsl::{Consumed, Grouped, Materialized, Named, Produced, StreamsBuilder};

type K = Option<String>;
/// One input: (is a global table record, key, value, timestamp).
type In = (bool, K, Option<i64>, i64);
type Out = (K, String, i64);

/// The key selector: from the value (a null value to `g0`), `v % 4 == 0` to null.
fn select(v: &Option<i64>) -> K {
    match v {
        None => Some("g0".to_owned()),
        Some(n) if n % 4 == 0 => None,
        Some(n) => Some(format!("g{}", n % 3)),
    }
}

fn joined(k: &K, v: &Option<i64>, g: Option<&i64>) -> String {
    format!("{k:?}|{v:?}|{g:?}")
}

fn run(left: bool, input: &[In]) -> (Vec<Out>, u64) {
    let builder = StreamsBuilder::new();
    let table = builder.global_table(
        "global",
        Consumed::with(Nullable(StringSerde), I64Serde),
        Materialized::new(),
    );
    let stream = builder.stream(
        "stream",
        Consumed::with(Nullable(StringSerde), Nullable(I64Serde)),
    );
    let out = if left {
        stream.left_join_global(
            &table,
            |_k: &K, v: &Option<i64>| select(v),
            |k: &K, v: &Option<i64>, g: Option<&i64>| joined(k, v, g),
        )
    } else {
        stream.join_global(
            &table,
            |_k: &K, v: &Option<i64>| select(v),
            |k: &K, v: &Option<i64>, g: &i64| joined(k, v, Some(g)),
        )
    };
    out.to("out", Produced::with(Nullable(StringSerde), StringSerde));
    let driver =
        TopologyTestDriver::new(builder.build().unwrap(), StreamsConfig::new("gj")).unwrap();
    let g = driver
        .create_input_topic("global", Nullable(StringSerde), Nullable(I64Serde))
        .unwrap();
    let s = driver
        .create_input_topic("stream", Nullable(StringSerde), Nullable(I64Serde))
        .unwrap();
    for (global, k, v, ts) in input {
        if *global {
            g.pipe_input_with_timestamp(k.clone(), *v, *ts).unwrap();
        } else {
            s.pipe_input_with_timestamp(k.clone(), *v, *ts).unwrap();
        }
    }
    let out = driver
        .create_output_topic("out", Nullable(StringSerde), StringSerde)
        .read_records_to_vec()
        .unwrap()
        .into_iter()
        .map(|r| (r.key, r.value, r.timestamp))
        .collect();
    (out, driver.dropped_records())
}

/// What Kafka Streams emits for `input`, by the rules in the module doc.
fn model(left: bool, input: &[In]) -> (Vec<Out>, u64) {
    let mut table: BTreeMap<String, i64> = BTreeMap::new();
    let (mut out, mut dropped) = (Vec::new(), 0);
    for (global, k, v, ts) in input {
        if *global {
            // KTableSource: a null key is skipped (and counted).
            let Some(k) = k else {
                dropped += 1;
                continue;
            };
            match v {
                Some(v) => table.insert(k.clone(), *v),
                None => table.remove(k),
            };
            continue;
        }
        let mapped = select(v);
        let kept = left && k.is_none() && v.is_some();
        if !kept && (mapped.is_none() || v.is_none()) {
            dropped += 1;
            continue;
        }
        let g = mapped.as_ref().and_then(|m| table.get(m));
        if left || g.is_some() {
            out.push((k.clone(), joined(k, v, g), *ts));
        }
    }
    (out, dropped)
}

fn input_strategy() -> impl Strategy<Value = Vec<In>> {
    prop::collection::vec(
        (
            prop::bool::weighted(0.4),
            prop::option::weighted(0.8, prop::sample::select(vec!["a", "b", "g0", "g1", "g2"]))
                .prop_map(|k| k.map(str::to_owned)),
            prop::option::weighted(0.8, 0i64..12),
            0i64..100,
        ),
        0..40,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn join_global_matches_kafka_rules(input in input_strategy()) {
        prop_assert_eq!(run(false, &input), model(false, &input));
    }

    #[test]
    fn left_join_global_matches_kafka_rules(input in input_strategy()) {
        prop_assert_eq!(run(true, &input), model(true, &input));
    }
}

/// No repartition before a global join even after a key change (the global table holds
/// every partition), the processor drawn as `KSTREAM-LEFTJOIN-` for both joins and
/// connected to no store; the joined stream still needs a repartition to be grouped.
#[test]
fn global_joins_are_named_and_wired_as_kafka_does() {
    let builder = StreamsBuilder::new();
    let table =
        builder.global_table::<String, String>("g", Consumed::default(), Materialized::new());
    builder
        .stream::<String, String>("s", Consumed::default())
        .select_key(|_k: &String, v: &String| v.clone())
        .join_global(
            &table,
            |k: &String, _v: &String| k.clone(),
            |_k: &String, v: &String, g: &String| format!("{v}{g}"),
        )
        .named(Named::as_name("enriched"))
        .left_join_global(
            &table,
            |k: &String, _v: &String| k.clone(),
            |_k: &String, v: &String, g: Option<&String>| format!("{v}{g:?}"),
        )
        .group_by_key(Grouped::with(StringSerde, StringSerde))
        .count(Materialized::new());
    let text = builder.build().unwrap().describe().unwrap().to_string();
    for line in [
        "Processor: KSTREAM-KEY-SELECT-0000000004 (stores: [])",
        "Processor: KSTREAM-LEFTJOIN-0000000005 (stores: [])",
        "Processor: enriched (stores: [])",
        "Sink: KSTREAM-SINK-0000000008 (topic: KSTREAM-AGGREGATE-STATE-STORE-0000000006-repartition)",
    ] {
        assert!(text.contains(line), "{line} missing in\n{text}");
    }
    assert_eq!(text.matches("-repartition)").count(), 1, "\n{text}");
}

/// The global value a record joins is the one at processing time; a later global update
/// changes later results only (no emission of its own). Values of `I64Serde`.
#[test]
fn global_updates_affect_later_records_only() {
    let builder = StreamsBuilder::new();
    let rates = builder.global_table(
        "rates",
        Consumed::with(StringSerde, I64Serde),
        Materialized::new(),
    );
    builder
        .stream("amounts", Consumed::with(StringSerde, I64Serde))
        .left_join_global(
            &rates,
            |_k: &String, _v: &i64| "eur".to_owned(),
            |_k: &String, v: &i64, r: Option<&i64>| v * r.copied().unwrap_or(0),
        )
        .to("out", Produced::with(StringSerde, I64Serde));
    let driver =
        TopologyTestDriver::new(builder.build().unwrap(), StreamsConfig::new("gj")).unwrap();
    let r = driver
        .create_input_topic("rates", StringSerde, Nullable(I64Serde))
        .unwrap();
    let a = driver
        .create_input_topic("amounts", StringSerde, I64Serde)
        .unwrap();
    a.pipe_input_with_timestamp("x".into(), 2, 5).unwrap();
    r.pipe_input_with_timestamp("eur".into(), Some(10), 50)
        .unwrap();
    a.pipe_input_with_timestamp("y".into(), 3, 6).unwrap();
    r.pipe_input_with_timestamp("eur".into(), None, 60).unwrap();
    a.pipe_input_with_timestamp("z".into(), 4, 7).unwrap();
    let out: Vec<(String, i64, i64)> = driver
        .create_output_topic("out", StringSerde, I64Serde)
        .read_records_to_vec()
        .unwrap()
        .into_iter()
        .map(|r| (r.key, r.value, r.timestamp))
        .collect();
    assert_eq!(
        out,
        vec![("x".into(), 0, 5), ("y".into(), 30, 6), ("z".into(), 0, 7)]
    );
}
