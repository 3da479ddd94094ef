#![allow(clippy::unwrap_used)]
//! `table → groupBy → count` against a brute-force model of Kafka Streams' rules
//! (`KTableSource`, `KTableRepartitionMap`, `KTableAggregate`): random updates and deletes
//! of rows moving between groups, with out-of-order timestamps, cache off and on; every
//! output record (key, count, timestamp, order) must be the model's.

use std::collections::BTreeMap;

use proptest::prelude::*;
use streams_core::{I64Serde, Nullable, StreamsConfig, StringSerde, TopologyTestDriver};
use streams_dsl::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};

type Update = (u8, Option<u8>, i64);

/// The records Kafka Streams emits for `updates` (with the test driver committing after
/// each record, so the cache changes nothing but skipping deletes of absent rows, which
/// never reach the count anyway).
fn model(updates: &[Update]) -> Vec<(String, i64, i64)> {
    let mut table: BTreeMap<u8, u8> = BTreeMap::new();
    let mut counts: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let mut out = Vec::new();
    let mut apply = |group: u8, delta: i64, ts: i64, out: &mut Vec<(String, i64, i64)>| {
        let key = format!("g{group}");
        let entry = counts.get(&key).copied();
        let (n, t) = match entry {
            Some((n, t)) => (n + delta, ts.max(t)),
            // A subtraction from an absent group changes nothing (never happens here).
            None => (delta, ts),
        };
        counts.insert(key.clone(), (n, t));
        out.push((key, n, t));
    };
    for &(row, group, ts) in updates {
        let old = table.get(&row).copied();
        match group {
            Some(g) => {
                table.insert(row, g);
            }
            None => {
                table.remove(&row);
            }
        }
        match (old, group) {
            (Some(o), Some(n)) if o == n => apply(n, 0, ts, &mut out),
            (old, new) => {
                if let Some(o) = old {
                    apply(o, -1, ts, &mut out);
                }
                if let Some(n) = new {
                    apply(n, 1, ts, &mut out);
                }
            }
        }
    }
    out
}

fn update() -> impl Strategy<Value = Update> {
    (0u8..6, prop::option::weighted(0.8, 0u8..4), 0i64..100)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn grouped_table_count_matches_the_model(
        updates in prop::collection::vec(update(), 1..40),
        caching in any::<bool>(),
    ) {
        let builder = StreamsBuilder::new();
        let mut m = Materialized::as_store("rows");
        let mut c = Materialized::as_store("counts");
        if !caching {
            m = m.with_caching_disabled();
            c = c.with_caching_disabled();
        }
        builder
            .table("rows", Consumed::with(StringSerde, StringSerde), m)
            .group_by(
                |_row: &String, group: &String| (group.clone(), group.clone()),
                Grouped::with(StringSerde, StringSerde),
            )
            .count(c)
            .to_stream()
            .to("out", Produced::with(StringSerde, Nullable(I64Serde)));
        let driver =
            TopologyTestDriver::new(builder.build().unwrap(), StreamsConfig::new("app")).unwrap();
        let input = driver
            .create_input_topic("rows", StringSerde, Nullable(StringSerde))
            .unwrap();
        for &(row, group, ts) in &updates {
            input
                .pipe_input_with_timestamp(format!("r{row}"), group.map(|g| format!("g{g}")), ts)
                .unwrap();
        }
        let got: Vec<(String, i64, i64)> = driver
            .create_output_topic("out", StringSerde, Nullable(I64Serde))
            .read_records_to_vec()
            .unwrap()
            .into_iter()
            .map(|r| (r.key, r.value.unwrap(), r.timestamp))
            .collect();
        prop_assert_eq!(got, model(&updates));
    }
}
