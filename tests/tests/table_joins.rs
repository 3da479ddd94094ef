#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! A table-table left join (materialized) and a stream-global-table left join on the real
//! runtime and the embedded broker, with two stream threads and two partitions: the
//! joined table's last record per key is the join of both tables' final rows (Kafka's
//! `KTableKTableLeftJoin` / `KTableKTableRightJoin`, tombstones for keys that left this
//! table); after a clean close and the loss of the local state, the restarted application
//! restores the tables and the join's store from their changelogs and the global table
//! from its topic, so later updates join rows of the first run.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use broker_embedded::{
    decode_fetched, partition_for_key, Broker, BrokerConfig, IsolationLevel, NewTopic,
    ProduceRecord,
};
use streams_core::{
    EmbeddedCluster, Nullable, StreamsApp, StreamsConfig, StreamsState, StringSerde,
};
use streams_dsl::{Consumed, Materialized, Produced, StreamsBuilder};

const WAIT: Duration = Duration::from_secs(90);
const APP: &str = "table-join-app";
const LEFT: &str = "users";
const RIGHT: &str = "addresses";
const JOINED: &str = "users-with-addresses";
const PRODUCTS: &str = "products";
const ORDERS: &str = "orders";
const ENRICHED: &str = "enriched-orders";
const PARTITIONS: u32 = 2;

fn topology() -> streams_core::Topology {
    let builder = StreamsBuilder::new();
    let users = builder.table(
        LEFT,
        Consumed::with(StringSerde, StringSerde),
        Materialized::as_store("users"),
    );
    let addresses = builder.table(
        RIGHT,
        Consumed::with(StringSerde, StringSerde),
        Materialized::as_store("addresses"),
    );
    users
        .left_join_materialized(
            &addresses,
            |u: &String, a: Option<&String>| format!("{u}@{}", a.map_or("?", |a| a.as_str())),
            Materialized::as_store("joined").with_value_serde(StringSerde),
        )
        .to_stream()
        .to(JOINED, Produced::with(StringSerde, Nullable(StringSerde)));
    let products = builder.global_table(
        PRODUCTS,
        Consumed::with(StringSerde, StringSerde),
        Materialized::new(),
    );
    builder
        .stream(ORDERS, Consumed::with(StringSerde, StringSerde))
        .left_join_global(
            &products,
            |_order: &String, product: &String| product.clone(),
            |_order: &String, product: &String, name: Option<&String>| {
                format!("{product}={}", name.map_or("?", |n| n.as_str()))
            },
        )
        .to(ENRICHED, Produced::with(StringSerde, StringSerde));
    builder.build().unwrap()
}

fn start(broker: &Broker, state_dir: &Path) -> StreamsApp {
    let config = StreamsConfig::new(APP)
        .state_dir(state_dir)
        .num_stream_threads(2)
        .commit_interval(Duration::from_millis(100));
    let mut app =
        StreamsApp::new(topology(), config, EmbeddedCluster::new(broker.clone())).unwrap();
    app.start().unwrap();
    assert!(
        app.wait_for_state(StreamsState::Running, WAIT),
        "{:?}",
        app.errors()
    );
    app
}

fn produce(broker: &Broker, topic: &str, key: &str, value: Option<&str>, ts: i64) {
    let p = i32::try_from(partition_for_key(key.as_bytes(), PARTITIONS).unwrap()).unwrap();
    let mut record = ProduceRecord::new(key.as_bytes().to_vec(), Vec::new()).with_timestamp(ts);
    record.value = value.map(|v| v.as_bytes().to_vec().into());
    broker.produce(topic, p, &[record]).unwrap();
}

/// Every record of `topic`, per partition in offset order, as (key, value).
fn read(broker: &Broker, topic: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    for p in 0..PARTITIONS as i32 {
        let mut offset = 0;
        loop {
            let data = broker
                .read_partition(topic, p, offset, 4 << 20, IsolationLevel::ReadCommitted)
                .unwrap();
            let records = decode_fetched(topic, &data.records, offset).unwrap();
            let Some(last) = records.last() else { break };
            offset = last.offset + 1;
            for r in records {
                let k = String::from_utf8(r.key.unwrap().to_vec()).unwrap();
                let v = r.value.map(|v| String::from_utf8(v.to_vec()).unwrap());
                out.push((k, v));
            }
        }
    }
    out
}

/// The last joined record per key, a tombstone dropped (as a key never emitted).
fn last_per_key(broker: &Broker) -> BTreeMap<String, String> {
    let mut last = BTreeMap::new();
    for (k, v) in read(broker, JOINED) {
        match v {
            Some(v) => last.insert(k, v),
            None => last.remove(&k),
        };
    }
    last
}

fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

type Tables = (BTreeMap<String, String>, BTreeMap<String, String>);

/// Random updates and deletes of both tables (keys `u0`..`u7`), applied to `tables`.
fn updates(broker: &Broker, round: u64, n: usize, tables: &mut Tables, ts: &mut i64) {
    let mut x = 0x9E37_79B9_7F4A_7C15_u64 ^ round;
    for i in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let key = format!("u{}", (x >> 3) % 8);
        let left = x.is_multiple_of(2);
        let value = (!(x >> 9).is_multiple_of(4))
            .then(|| format!("{}{round}.{i}", if left { "n" } else { "a" }));
        *ts += 1;
        let (topic, table) = if left {
            (LEFT, &mut tables.0)
        } else {
            (RIGHT, &mut tables.1)
        };
        produce(broker, topic, &key, value.as_deref(), *ts);
        match value {
            Some(v) => table.insert(key, v),
            None => table.remove(&key),
        };
    }
}

/// `KTableKTableLeftJoinValueGetter` over the final rows.
fn expected_join(tables: &Tables) -> BTreeMap<String, String> {
    tables
        .0
        .iter()
        .map(|(k, u)| {
            (
                k.clone(),
                format!("{u}@{}", tables.1.get(k).map_or("?", |a| a.as_str())),
            )
        })
        .collect()
}

#[test]
fn table_and_global_joins_survive_a_restart_with_lost_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = BrokerConfig::new(dir.path().join("broker"));
    c.group_initial_rebalance_delay = Duration::ZERO;
    let broker = Broker::open(c).unwrap();
    for t in [LEFT, RIGHT, JOINED, PRODUCTS, ORDERS, ENRICHED] {
        broker.create_topic(NewTopic::new(t, PARTITIONS)).unwrap();
    }
    let state = dir.path().join("state");
    for p in 0..3 {
        produce(
            &broker,
            PRODUCTS,
            &format!("p{p}"),
            Some(&format!("name{p}")),
            1,
        );
    }

    let mut app = start(&broker, &state);
    let mut tables = Tables::default();
    let mut ts = 0;
    updates(&broker, 1, 150, &mut tables, &mut ts);
    wait_for("the joined table of the first run", || {
        last_per_key(&broker) == expected_join(&tables)
    });
    for o in 0..5 {
        produce(
            &broker,
            ORDERS,
            &format!("o{o}"),
            Some(&format!("p{o}")),
            10 + o,
        );
    }
    let enriched = |n: usize| {
        let mut e = read(&broker, ENRICHED);
        e.sort();
        e.len() == n
    };
    wait_for("the first orders", || enriched(5));
    app.close();
    // While stopped: a new product, then the local state is lost.
    produce(&broker, PRODUCTS, "p3", Some("name3"), 2);
    std::fs::remove_dir_all(&state).unwrap();

    let mut app = start(&broker, &state);
    updates(&broker, 2, 150, &mut tables, &mut ts);
    for o in 5..10 {
        produce(
            &broker,
            ORDERS,
            &format!("o{o}"),
            Some(&format!("p{}", o - 5)),
            10 + o,
        );
    }
    wait_for("the joined table over both runs", || {
        last_per_key(&broker) == expected_join(&tables)
    });
    wait_for("the second orders", || enriched(10));
    let mut got = read(&broker, ENRICHED);
    got.sort();
    let want: Vec<(String, Option<String>)> = [
        ("o0", "p0=name0"),
        ("o1", "p1=name1"),
        ("o2", "p2=name2"),
        ("o3", "p3=?"),
        ("o4", "p4=?"),
        ("o5", "p0=name0"),
        ("o6", "p1=name1"),
        ("o7", "p2=name2"),
        ("o8", "p3=name3"),
        ("o9", "p4=?"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), Some(v.to_owned())))
    .collect();
    assert_eq!(got, want);
    assert_eq!(app.dropped_records(), 0);
    // The join's store is change-logged as Kafka names it.
    assert!(broker
        .describe_topic(&format!("{APP}-joined-changelog"))
        .is_ok());
    app.close();
}
