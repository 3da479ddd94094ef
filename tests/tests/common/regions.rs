//! The users-per-region fixture of `table_restore.rs` and `reuse_source_topic.rs`: a
//! source table of `(user, region)` re-grouped by region and counted.

use std::collections::BTreeMap;

use broker_embedded::Broker;
use streams_core::{I64Serde, Nullable, StringSerde};
use streams_dsl::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};

use super::{be_i64, latest_by_key, produce_keyed, read_topic, record, text, XorShift};

/// The input topic: `(user, region)` updates.
pub(crate) const INPUT: &str = "users";
/// The output topic: the count of users per region.
pub(crate) const OUTPUT: &str = "users-per-region";
/// Partitions of both topics.
pub(crate) const PARTITIONS: u32 = 2;

/// The table `users-store` of [`INPUT`], grouped by region and counted in
/// `region-counts`, to [`OUTPUT`].
pub(crate) fn topology() -> streams_core::Topology {
    let builder = StreamsBuilder::new();
    builder
        .table(
            INPUT,
            Consumed::with(StringSerde, StringSerde),
            Materialized::as_store("users-store"),
        )
        .group_by(
            |_user: &String, region: &String| (region.clone(), region.clone()),
            Grouped::with(StringSerde, StringSerde),
        )
        .count(Materialized::as_store("region-counts"))
        .to_stream()
        .to(OUTPUT, Produced::with(StringSerde, Nullable(I64Serde)));
    builder.build().unwrap()
}

/// Produces `(user, region)` updates (`None`: the user is deleted).
pub(crate) fn produce(broker: &Broker, updates: &[(String, Option<String>)]) {
    let records: Vec<_> = updates
        .iter()
        .map(|(user, region)| record(user, region.as_deref()))
        .collect();
    produce_keyed(broker, INPUT, PARTITIONS, &records);
}

/// The latest count per region on the output topic.
pub(crate) fn latest(broker: &Broker) -> BTreeMap<String, i64> {
    latest_by_key(&read_topic(broker, OUTPUT), |r| {
        (text(&r.key).unwrap(), be_i64(r.value.as_deref().unwrap()))
    })
}

/// Users per region after `updates`, with 0 for a region every user left.
pub(crate) fn expected(updates: &[(String, Option<String>)]) -> BTreeMap<String, i64> {
    let mut users = BTreeMap::new();
    let mut out = BTreeMap::new();
    for (user, region) in updates {
        if let Some(r) = region {
            out.entry(r.clone()).or_insert(0);
            users.insert(user.clone(), r.clone());
        } else {
            users.remove(user);
        }
    }
    for r in users.values() {
        *out.get_mut(r).unwrap() += 1;
    }
    out
}

/// `n` updates of 20 users over 5 regions, one in seven a delete.
pub(crate) fn updates(round: u64, n: usize) -> Vec<(String, Option<String>)> {
    let mut rng = XorShift::new(round);
    (0..n)
        .map(|_| {
            let x = rng.next();
            let region = (!x.is_multiple_of(7)).then(|| format!("region-{}", (x >> 8) % 5));
            (format!("user-{}", (x >> 16) % 20), region)
        })
        .collect()
}
