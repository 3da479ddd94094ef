#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Foreign-key table-table joins on the real runtime and the embedded broker: two stream
//! threads, tables with different partition counts (a foreign-key join needs no
//! co-partitioning), foreign-key changes racing right-table updates across partitions.
//! Once the input is processed, the latest result per key is the join of the final
//! tables (Kafka's `ResponseJoinProcessorSupplier` drops the responses computed for older
//! left values, so a late answer cannot overwrite a newer one). The internal topics get
//! the partition counts Kafka gives them: the right table's for the subscription
//! registration topic, the left table's for the response topic.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use broker_embedded::{
    decode_fetched, partition_for_key, Broker, BrokerConfig, IsolationLevel, NewTopic,
    ProduceRecord,
};
use bytes::Bytes;
use streams_core::{
    EmbeddedCluster, Nullable, StreamsApp, StreamsConfig, StreamsState, StringSerde,
};
use streams_dsl::{Consumed, Materialized, Produced, StreamsBuilder};

const WAIT: Duration = Duration::from_secs(90);
const APP: &str = "fk-app";
const LEFT: &str = "employees";
const RIGHT: &str = "teams";
const LEFT_OUT: &str = "employees-with-teams";
const INNER_OUT: &str = "employees-in-teams";
const LEFT_PARTITIONS: u32 = 3;
const RIGHT_PARTITIONS: u32 = 2;

#[allow(clippy::ptr_arg)] // the extractor signature: Fn(&V) -> Option<KO>
fn extract(v: &String) -> Option<String> {
    let fk = v.split(':').next()?;
    (fk != "-").then(|| fk.to_owned())
}

fn topology() -> streams_core::Topology {
    let builder = StreamsBuilder::new();
    let employees = builder.table(
        LEFT,
        Consumed::with(StringSerde, StringSerde),
        Materialized::new(),
    );
    let teams = builder.table(
        RIGHT,
        Consumed::with(StringSerde, StringSerde),
        Materialized::new(),
    );
    employees
        .left_join_on_foreign_key(&teams, extract, |e: &String, t: Option<&String>| {
            format!("{e}+{}", t.map_or("null", |t| t.as_str()))
        })
        .to_stream()
        .to(LEFT_OUT, Produced::with(StringSerde, Nullable(StringSerde)));
    employees
        .join_on_foreign_key(&teams, extract, |e: &String, t: &String| format!("{e}+{t}"))
        .to_stream()
        .to(
            INNER_OUT,
            Produced::with(StringSerde, Nullable(StringSerde)),
        );
    builder.build().unwrap()
}

/// One input record: (is a left row, key, value or tombstone).
type In = (bool, String, Option<String>);

fn records(n: usize) -> Vec<In> {
    let mut x = 0x2545_F491_4F6C_DD1D_u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|i| {
            let r = next();
            match r % 10 {
                0..=4 => {
                    let fk = match (r >> 8) % 7 {
                        6 => "-".to_owned(),
                        f => format!("t{f}"),
                    };
                    (
                        true,
                        format!("e{}", (r >> 16) % 12),
                        Some(format!("{fk}:{i}")),
                    )
                }
                5 => (true, format!("e{}", (r >> 16) % 12), None),
                6..=8 => (
                    false,
                    format!("t{}", (r >> 16) % 6),
                    Some(format!("team{i}")),
                ),
                _ => (false, format!("t{}", (r >> 16) % 6), None),
            }
        })
        .collect()
}

fn produce(broker: &Broker, records: &[In]) {
    for (i, (left, key, value)) in records.iter().enumerate() {
        let (topic, partitions) = if *left {
            (LEFT, LEFT_PARTITIONS)
        } else {
            (RIGHT, RIGHT_PARTITIONS)
        };
        let p = i32::try_from(partition_for_key(key.as_bytes(), partitions).unwrap()).unwrap();
        let record = ProduceRecord {
            key: Some(Bytes::from(key.clone().into_bytes())),
            value: value.clone().map(|v| Bytes::from(v.into_bytes())),
            headers: Vec::new(),
            timestamp: Some(1_000 + i as i64),
        };
        broker.produce(topic, p, &[record]).unwrap();
    }
}

/// The latest value per key of an output topic (each key lives in one partition, in
/// the order it was written).
fn latest(broker: &Broker, topic: &str) -> BTreeMap<String, Option<String>> {
    let mut out = BTreeMap::new();
    for p in 0..LEFT_PARTITIONS as i32 {
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
                out.insert(k, v);
            }
        }
    }
    out
}

fn expected(records: &[In], left_join: bool) -> BTreeMap<String, String> {
    let (mut lt, mut rt) = (BTreeMap::new(), BTreeMap::new());
    for (left, k, v) in records {
        let table = if *left { &mut lt } else { &mut rt };
        match v {
            Some(v) => table.insert(k.clone(), v.clone()),
            None => table.remove(k),
        };
    }
    lt.iter()
        .filter_map(
            |(k, v)| match (extract(v).and_then(|fk| rt.get(&fk)), left_join) {
                (Some(t), _) => Some((k.clone(), format!("{v}+{t}"))),
                (None, true) => Some((k.clone(), format!("{v}+null"))),
                (None, false) => None,
            },
        )
        .collect()
}

fn present(m: BTreeMap<String, Option<String>>) -> BTreeMap<String, String> {
    m.into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect()
}

#[test]
#[ignore = "open bug: under CPU load (6 runs of 12 with two `yes` burners) the left join's last result for a key can stay `+null` while the inner join has the right-table value; docs/TESTING.md, Known intermittent failures. Run with --ignored"]
fn foreign_key_joins_converge_across_threads_and_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = BrokerConfig::new(dir.path().join("broker"));
    c.group_initial_rebalance_delay = Duration::ZERO;
    let broker = Broker::open(c).unwrap();
    broker
        .create_topic(NewTopic::new(LEFT, LEFT_PARTITIONS))
        .unwrap();
    broker
        .create_topic(NewTopic::new(RIGHT, RIGHT_PARTITIONS))
        .unwrap();
    broker
        .create_topic(NewTopic::new(LEFT_OUT, LEFT_PARTITIONS))
        .unwrap();
    broker
        .create_topic(NewTopic::new(INNER_OUT, LEFT_PARTITIONS))
        .unwrap();
    let config = StreamsConfig::new(APP)
        .state_dir(dir.path().join("state"))
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

    let input = records(400);
    // In bursts, so that updates race the subscriptions and responses still in flight.
    for chunk in input.chunks(50) {
        produce(&broker, chunk);
        std::thread::sleep(Duration::from_millis(20));
    }
    let deadline = Instant::now() + WAIT;
    let (want_left, want_inner) = (expected(&input, true), expected(&input, false));
    loop {
        let (got_left, got_inner) = (
            present(latest(&broker, LEFT_OUT)),
            present(latest(&broker, INNER_OUT)),
        );
        if got_left == want_left && got_inner == want_inner {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "timed out: left {got_left:?} != {want_left:?} or inner {got_inner:?} != {want_inner:?}; errors {:?}",
            app.errors()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for (topic, partitions) in [
        (
            "KTABLE-FK-JOIN-SUBSCRIPTION-REGISTRATION-0000000006-topic",
            RIGHT_PARTITIONS,
        ),
        (
            "KTABLE-FK-JOIN-SUBSCRIPTION-RESPONSE-0000000014-topic",
            LEFT_PARTITIONS,
        ),
    ] {
        let described = broker.describe_topic(&format!("{APP}-{topic}")).unwrap();
        assert_eq!(described.partitions.len(), partitions as usize, "{topic}");
    }
    let changelog = broker
        .describe_topic(&format!(
            "{APP}-KTABLE-FK-JOIN-SUBSCRIPTION-STATE-STORE-0000000010-changelog"
        ))
        .unwrap();
    assert_eq!(changelog.partitions.len(), RIGHT_PARTITIONS as usize);
    assert!(app.errors().is_empty(), "{:?}", app.errors());
    app.close();
}
