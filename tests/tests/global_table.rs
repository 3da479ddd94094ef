#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `StreamsBuilder::global_table` on the real runtime and the embedded broker (Kafka's
//! `GlobalStreamThread` / `GlobalStateManagerImpl`): with two stream threads, every task
//! reads every key of every partition of the global topic; the store is restored (to the
//! end of every partition) before stream processing starts, kept up to date while running,
//! checkpointed in `<state.dir>/<application.id>/global/.checkpoint`, restored after a
//! restart (from the checkpoint, and from the topic alone once the local state is lost),
//! and no changelog topic is created for it (the topic is its changelog).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use broker_embedded::Broker;
use common::{record, Env, Patience, WAIT};
use streams_core::{
    EmbeddedCluster, Processor, ProcessorContext, Record, Result, StreamsApp, StreamsConfig,
    StreamsState, StringSerde,
};
use streams_dsl::{Consumed, Materialized, Produced, StreamsBuilder};

const APP: &str = "global-app";
const COUNTRIES: &str = "countries";
const ORDERS: &str = "orders";
const OUTPUT: &str = "order-countries";
const COUNTRY_PARTITIONS: u32 = 3;
const ORDER_PARTITIONS: u32 = 4;
const STORE: &str = "countries-store";

/// Looks the order's customer up in the global store: value `<customer>=<country>` or
/// `<customer>=missing`, plus the task that looked it up.
struct Lookup;

impl Processor<String, String, String, String> for Lookup {
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, String>,
        r: Record<String, String>,
    ) -> Result<()> {
        let country = ctx.global_store::<String, String>(STORE)?.get(&r.key)?;
        let v = format!(
            "{}={}@{}",
            r.key,
            country.unwrap_or_else(|| "missing".into()),
            ctx.task_id()
        );
        ctx.forward(r.with_value(v))
    }
}

fn topology() -> streams_core::Topology {
    let builder = StreamsBuilder::new();
    let table = builder.global_table(
        COUNTRIES,
        Consumed::with(StringSerde, StringSerde),
        Materialized::as_store(STORE),
    );
    assert_eq!(table.store_name(), STORE);
    builder
        .stream(ORDERS, Consumed::with(StringSerde, StringSerde))
        .process(|| Lookup, &[])
        .to(OUTPUT, Produced::with(StringSerde, StringSerde));
    builder.build().unwrap()
}

fn start(broker: &Broker, state_dir: &Path) -> StreamsApp {
    let config = common::config(APP, state_dir).num_stream_threads(2);
    common::start_running(topology(), config, broker)
}

/// Country updates, each key to a partition of its own choosing (`i % 3`), so that the
/// global store must read every partition.
fn produce_countries(broker: &Broker, updates: &[(usize, Option<&str>)]) {
    for &(i, country) in updates {
        let p = i32::try_from(i as u32 % COUNTRY_PARTITIONS).unwrap();
        broker
            .produce(COUNTRIES, p, &[record(&format!("c{i}"), country)])
            .unwrap();
    }
}

/// One order per customer in every order partition: every task looks every key up.
fn produce_orders(broker: &Broker, customers: &[usize]) {
    for p in 0..ORDER_PARTITIONS as i32 {
        let records: Vec<_> = customers
            .iter()
            .map(|i| record(&format!("c{i}"), Some("order")))
            .collect();
        broker.produce(ORDERS, p, &records).unwrap();
    }
}

/// Output values from offset `from` per partition on: `(customer=country, task)`.
fn read_output(broker: &Broker, from: &mut BTreeMap<i32, i64>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in 0..ORDER_PARTITIONS as i32 {
        let offset = from.entry(p).or_insert(0);
        let records = common::read_partition(broker, OUTPUT, p, *offset);
        if let Some(last) = records.last() {
            *offset = last.offset + 1;
        }
        for r in records {
            let v = String::from_utf8(r.value.unwrap().to_vec()).unwrap();
            let (lookup, task) = v.split_once('@').unwrap();
            out.push((lookup.to_owned(), task.to_owned()));
        }
    }
    out
}

/// Waits for `n` new output records and returns them.
fn wait_output(broker: &Broker, from: &mut BTreeMap<i32, i64>, n: usize) -> Vec<(String, String)> {
    let deadline = Instant::now() + WAIT;
    let mut got = Vec::new();
    while got.len() < n {
        assert!(
            Instant::now() < deadline,
            "timed out: {} of {n} records",
            got.len()
        );
        got.extend(read_output(broker, from));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(got.len(), n, "{got:?}");
    got
}

fn lookups(got: &[(String, String)]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for (l, _) in got {
        *out.entry(l.clone()).or_insert(0) += 1;
    }
    out
}

#[test]
fn global_table_is_read_by_every_task_restored_and_kept_up_to_date() {
    let env = Env::new(&[
        (COUNTRIES, COUNTRY_PARTITIONS),
        (ORDERS, ORDER_PARTITIONS),
        (OUTPUT, ORDER_PARTITIONS),
    ]);
    let broker = &env.broker;
    let state = env.state_dir();
    let all: Vec<usize> = (0..12).collect();
    let initial: Vec<(usize, Option<&str>)> = all
        .iter()
        .map(|&i| (i, Some(["NO", "SE", "DK"][i % 3])))
        .collect();
    produce_countries(broker, &initial);

    // Restored before processing: every task of both threads finds every key at once.
    let mut app = start(broker, &state);
    assert_eq!(app.active_tasks().len(), ORDER_PARTITIONS as usize);
    let mut from = BTreeMap::new();
    produce_orders(broker, &all);
    let got = wait_output(broker, &mut from, all.len() * ORDER_PARTITIONS as usize);
    let tasks: std::collections::BTreeSet<_> = got.iter().map(|(_, t)| t.clone()).collect();
    assert_eq!(tasks.len(), ORDER_PARTITIONS as usize, "{tasks:?}");
    let expected: BTreeMap<String, usize> = all
        .iter()
        .map(|&i| (format!("c{i}={}", ["NO", "SE", "DK"][i % 3]), 4))
        .collect();
    assert_eq!(lookups(&got), expected);

    // Kept up to date while running: an update and a delete reach every task.
    produce_countries(broker, &[(0, Some("FI")), (1, None)]);
    let deadline = Instant::now() + WAIT;
    loop {
        produce_orders(broker, &[0, 1]);
        let got = wait_output(broker, &mut from, 2 * ORDER_PARTITIONS as usize);
        if lookups(&got) == BTreeMap::from([("c0=FI".to_owned(), 4), ("c1=missing".to_owned(), 4)])
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the update never arrived: {got:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    app.close();
    assert_eq!(app.state(), StreamsState::NotRunning);
    assert!(app.errors().is_empty(), "{:?}", app.errors());

    // The topic is the store's changelog: no changelog topic; a global checkpoint.
    assert!(
        !broker
            .list_topics()
            .iter()
            .any(|t| t.ends_with("-changelog")),
        "{:?}",
        broker.list_topics()
    );
    let checkpoint = state.join(APP).join("global").join(".checkpoint");
    let text = std::fs::read_to_string(&checkpoint).unwrap();
    for p in 0..COUNTRY_PARTITIONS {
        assert!(text.contains(&format!("{COUNTRIES} {p} ")), "{text}");
    }

    // Updates while stopped are restored from the checkpoint before processing resumes.
    produce_countries(broker, &[(2, Some("IS")), (3, None), (1, Some("EE"))]);
    let mut app = start(broker, &state);
    produce_orders(broker, &[1, 2, 3, 4]);
    let got = wait_output(broker, &mut from, 4 * ORDER_PARTITIONS as usize);
    let expected = BTreeMap::from([
        ("c1=EE".to_owned(), 4),
        ("c2=IS".to_owned(), 4),
        ("c3=missing".to_owned(), 4),
        ("c4=SE".to_owned(), 4),
    ]);
    assert_eq!(lookups(&got), expected);
    app.close();

    // Without local state, the store is rebuilt from the topic alone.
    std::fs::remove_dir_all(&state).unwrap();
    let mut app = start(broker, &state);
    produce_orders(broker, &[0, 1, 3, 5]);
    let got = wait_output(broker, &mut from, 4 * ORDER_PARTITIONS as usize);
    let expected = BTreeMap::from([
        ("c0=FI".to_owned(), 4),
        ("c1=EE".to_owned(), 4),
        ("c3=missing".to_owned(), 4),
        ("c5=DK".to_owned(), 4),
    ]);
    assert_eq!(lookups(&got), expected);
    app.close();
    assert!(app.errors().is_empty(), "{:?}", app.errors());
}

/// A global topic that does not exist fails `start` (Kafka's global consumer cannot
/// restore it), before any stream thread runs.
#[test]
fn a_missing_global_topic_fails_start() {
    let env = Env::new(&[(ORDERS, ORDER_PARTITIONS), (OUTPUT, ORDER_PARTITIONS)]);
    let broker = &env.broker;
    let config = StreamsConfig::new(APP).state_dir(env.state_dir());
    let mut app =
        StreamsApp::new(topology(), config, EmbeddedCluster::new(broker.clone())).unwrap();
    let err = app.start().unwrap_err().to_string();
    assert!(err.contains(COUNTRIES), "{err}");
    assert_eq!(app.state(), StreamsState::Created);
}

/// A topology of global tables only runs no stream thread (as Kafka creates none): it is
/// RUNNING once restored, and its global thread keeps the store up to date until closed
/// (the checkpoint then holds every partition's end).
#[test]
fn a_global_only_topology_runs_the_global_thread() {
    let env = Env::new(&[(COUNTRIES, COUNTRY_PARTITIONS)]);
    let broker = &env.broker;
    produce_countries(broker, &[(0, Some("NO")), (1, Some("SE"))]);
    let builder = StreamsBuilder::new();
    builder.global_table(
        COUNTRIES,
        Consumed::with(StringSerde, StringSerde),
        Materialized::as_store(STORE),
    );
    let state = env.state_dir();
    let config = StreamsConfig::new(APP)
        .state_dir(&state)
        .commit_interval(Duration::from_millis(50));
    let mut app = common::start_app(builder.build().unwrap(), config, broker);
    assert!(app.wait_for_state(StreamsState::Running, WAIT));
    produce_countries(broker, &[(2, Some("DK")), (5, Some("FI"))]);
    let checkpoint = state.join(APP).join("global").join(".checkpoint");
    let caught_up = |text: &str| text.contains(&format!("{COUNTRIES} 2 2"));
    Patience::new(WAIT, Duration::from_millis(20))
        .wait_for("the global thread to checkpoint the update", || {
            std::fs::read_to_string(&checkpoint).is_ok_and(|t| caught_up(&t))
        });
    app.close();
    assert_eq!(app.state(), StreamsState::NotRunning);
    assert!(app.errors().is_empty(), "{:?}", app.errors());
}
