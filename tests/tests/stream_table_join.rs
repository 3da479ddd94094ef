#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Stream–table joins (`join_table`, `left_join_table`) on the real runtime and the
//! embedded broker, with 2 stream threads over 3 co-partitioned partitions: each click
//! meets the user's row as it is when the click is processed (Kafka's
//! `KStreamKTableJoinProcessor`: table updates emit nothing, a deleted row no longer
//! joins, a left join emits the click with no row); after a clean close and the loss of
//! the local state, the table is restored from its changelog, so clicks of the second run
//! join the rows written in the first.

mod common;

use std::collections::BTreeMap;

use common::{text, Env};
use streams_core::{StreamsApp, StringSerde};
use streams_dsl::{Consumed, Joined, Materialized, Produced, StreamsBuilder};

const APP: &str = "stream-table-app";
const USERS: &str = "users";
const CLICKS: &str = "clicks";
const INNER: &str = "clicks-with-region";
const LEFT: &str = "clicks-with-region-or-not";
const PARTITIONS: u32 = 3;

fn topology() -> streams_core::Topology {
    let builder = StreamsBuilder::new();
    let users = builder.table(
        USERS,
        Consumed::with(StringSerde, StringSerde),
        Materialized::as_store("users"),
    );
    let clicks = builder.stream(CLICKS, Consumed::with(StringSerde, StringSerde));
    clicks
        .clone()
        .join_table(
            &users,
            |c: &String, region: &String| format!("{c}@{region}"),
            Joined::with(StringSerde, StringSerde, StringSerde),
        )
        .to(INNER, Produced::with(StringSerde, StringSerde));
    clicks
        .left_join_table(
            &users,
            |c: &String, region: Option<&String>| {
                format!("{c}@{}", region.map_or("?", String::as_str))
            },
            Joined::with(StringSerde, StringSerde, StringSerde),
        )
        .to(LEFT, Produced::with(StringSerde, StringSerde));
    builder.build().unwrap()
}

fn start(env: &Env) -> StreamsApp {
    common::start_running(
        topology(),
        common::config(APP, &env.state_dir()).num_stream_threads(2),
        &env.broker,
    )
}

fn user(i: u32) -> String {
    format!("user-{i:02}")
}

/// (key, value) of every record on `topic`, sorted.
fn output(env: &Env, topic: &str) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = env
        .read_all(topic)
        .iter()
        .map(|r| (text(&r.key).unwrap(), text(&r.value).unwrap()))
        .collect();
    v.sort();
    v
}

fn sorted(mut v: Vec<(String, String)>) -> Vec<(String, String)> {
    v.sort();
    v
}

#[test]
fn clicks_join_the_table_as_it_is_and_after_a_restore() {
    let env = Env::new(&[
        (USERS, PARTITIONS),
        (CLICKS, PARTITIONS),
        (INNER, PARTITIONS),
        (LEFT, PARTITIONS),
    ]);
    let mut app = start(&env);
    // Users 0..20 in region a; clicks of users 0..30 after them.
    let rows: Vec<_> = (0..20)
        .map(|i| common::timed(&user(i), "region-a", 1_000))
        .collect();
    common::produce_keyed(&env.broker, USERS, PARTITIONS, &rows);
    let clicks = |round: &str, ts: i64| -> Vec<_> {
        (0..30)
            .map(|i| common::timed(&user(i), &format!("click-{round}"), ts))
            .collect()
    };
    common::produce_keyed(&env.broker, CLICKS, PARTITIONS, &clicks("1", 2_000));
    let mut region: BTreeMap<String, &str> = (0..20).map(|i| (user(i), "region-a")).collect();
    let expect = |round: &str, region: &BTreeMap<String, &str>, inner: bool| {
        (0..30)
            .filter_map(|i| {
                let u = user(i);
                match region.get(&u) {
                    Some(r) => Some((u, format!("click-{round}@{r}"))),
                    None if !inner => Some((u, format!("click-{round}@?"))),
                    None => None,
                }
            })
            .collect::<Vec<_>>()
    };
    let (mut want_inner, mut want_left) = (expect("1", &region, true), expect("1", &region, false));
    common::wait_for("the first clicks", || {
        output(&env, INNER) == sorted(want_inner.clone())
            && output(&env, LEFT) == sorted(want_left.clone())
    });

    // Table updates emit nothing: users 0..10 move to region b, user 10 is deleted.
    let mut updates: Vec<_> = (0..10)
        .map(|i| common::timed(&user(i), "region-b", 3_000))
        .collect();
    updates.push(common::record(&user(10), None).with_timestamp(3_000));
    common::produce_keyed(&env.broker, USERS, PARTITIONS, &updates);
    for i in 0..10 {
        region.insert(user(i), "region-b");
    }
    region.remove(&user(10));
    common::wait_for("the updates to be committed", || {
        (0..PARTITIONS as i32).all(|p| env.committed(APP, USERS, p) == Some(env.end(USERS, p)))
    });
    assert_eq!(
        output(&env, INNER),
        sorted(want_inner.clone()),
        "a table update emitted something"
    );
    app.close();

    // Lose the local state: the table comes back from its changelog.
    std::fs::remove_dir_all(env.state_dir()).unwrap();
    let mut app = start(&env);
    common::produce_keyed(&env.broker, CLICKS, PARTITIONS, &clicks("2", 4_000));
    want_inner.extend(expect("2", &region, true));
    want_left.extend(expect("2", &region, false));
    common::wait_for("the second clicks", || {
        output(&env, INNER) == sorted(want_inner.clone())
            && output(&env, LEFT) == sorted(want_left.clone())
    });
    assert_eq!(app.dropped_records(), 0);
    app.close();
    assert!(app.errors().is_empty(), "{:?}", app.errors());
}
