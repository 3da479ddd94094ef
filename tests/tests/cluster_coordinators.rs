//! The group and transaction coordinators of a cluster survive the death of their node:
//! their state lives in the replicated `__consumer_offsets` / `__transaction_state`, the leader
//! of a key's partition is its coordinator, and a new leader loads the partition.
//!
//! Real `broker serve` processes (3 nodes with both roles) on loopback; nodes are SIGKILLed.
//! Needs `cargo build -p broker-cli` first (the harness says so when the binary is missing).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use broker_embedded::client::KafkaConnection;
use common::cluster::LocalCluster;
use kafka_protocol::messages::{
    DescribeGroupsRequest, FindCoordinatorRequest, GroupId, OffsetFetchRequest,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{
    BaseRecord, DefaultProducerContext, FutureProducer, FutureRecord, Producer, ThreadedProducer,
};
use rdkafka::TopicPartitionList;

/// Short sessions (failover in seconds), replicated internal topics with few partitions.
const SETTINGS: &[&str] = &[
    "broker.session.timeout.ms=4000",
    "broker.heartbeat.interval.ms=500",
    "replica.lag.time.max.ms=3000",
    "default.replication.factor=3",
    "min.insync.replicas=2",
    "offsets.topic.replication.factor=3",
    "offsets.topic.num.partitions=6",
    "transaction.state.log.replication.factor=3",
    "transaction.state.log.num.partitions=6",
];

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// FindCoordinator through `broker` (`key_type` 0: group, 1: transactional id): the error code
/// and the coordinator's id.
fn find_coordinator(
    rt: &tokio::runtime::Runtime,
    broker: &str,
    key_type: i8,
    key: &str,
) -> (i16, i32) {
    rt.block_on(async {
        let Ok(mut c) = KafkaConnection::connect(broker, "test", Duration::from_secs(5)).await
        else {
            return (-1, -1);
        };
        let req = FindCoordinatorRequest::default()
            .with_key(StrBytes::from_string(key.to_string()))
            .with_key_type(key_type);
        match c.send(req, 1, 3, Duration::from_secs(5)).await {
            Ok((_, r)) => (r.error_code, r.node_id.0),
            Err(_) => (-1, -1),
        }
    })
}

/// Waits until every running broker names the same coordinator for `key`, other than
/// `not`; returns it.
fn wait_for_coordinator(
    cluster: &LocalCluster,
    rt: &tokio::runtime::Runtime,
    key_type: i8,
    key: &str,
    not: Option<i32>,
) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answers: Vec<(i16, i32)> = cluster
            .nodes
            .values()
            .filter(|n| n.is_running())
            .map(|n| find_coordinator(rt, &n.broker_addr(), key_type, key))
            .collect();
        let first = answers[0];
        if first.0 == 0 && answers.iter().all(|a| *a == first) && Some(first.1) != not {
            return first.1;
        }
        assert!(
            Instant::now() < deadline,
            "{key}: no agreed coordinator (other than {not:?}): {answers:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// DescribeGroups on the coordinator, retried while it loads: (state, member ids).
fn describe_group(
    rt: &tokio::runtime::Runtime,
    coordinator: &str,
    group: &str,
) -> (String, BTreeSet<String>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = rt.block_on(async {
            let mut c = KafkaConnection::connect(coordinator, "test", Duration::from_secs(5))
                .await
                .unwrap();
            let req = DescribeGroupsRequest::default()
                .with_groups(vec![GroupId(StrBytes::from_string(group.to_string()))]);
            c.send(req, 0, 5, Duration::from_secs(5)).await.unwrap().1
        });
        let g = &answer.groups[0];
        if g.error_code == 0 {
            return (
                g.group_state.to_string(),
                g.members.iter().map(|m| m.member_id.to_string()).collect(),
            );
        }
        // COORDINATOR_LOAD_IN_PROGRESS while the new leader reads the partition.
        assert_eq!(g.error_code, 14, "DescribeGroups({group}) on {coordinator}");
        assert!(Instant::now() < deadline, "{group} never loaded");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// OffsetFetch of every committed offset of `group` on its coordinator.
fn fetch_offsets(
    rt: &tokio::runtime::Runtime,
    coordinator: &str,
    group: &str,
) -> BTreeMap<(String, i32), i64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = rt.block_on(async {
            let mut c = KafkaConnection::connect(coordinator, "test", Duration::from_secs(5))
                .await
                .unwrap();
            let req = OffsetFetchRequest::default()
                .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
                .with_topics(None);
            c.send(req, 2, 7, Duration::from_secs(5)).await.unwrap().1
        });
        if answer.error_code == 0 {
            return answer
                .topics
                .iter()
                .flat_map(|t| {
                    t.partitions
                        .iter()
                        .map(move |p| ((t.name.to_string(), p.partition_index), p.committed_offset))
                })
                .collect();
        }
        assert_eq!(
            answer.error_code, 14,
            "OffsetFetch({group}) on {coordinator}"
        );
        assert!(Instant::now() < deadline, "{group} offsets never loaded");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Errors of a consumer while a node is down, which librdkafka retries by itself.
fn transient(e: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::BrokerTransportFailure
                | C::AllBrokersDown
                | C::NotCoordinator
                | C::CoordinatorNotAvailable
        )
    )
}

fn group_consumer(cluster: &LocalCluster, group: &str, topic: &str) -> BaseConsumer {
    let c: BaseConsumer = cluster
        .client_config()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "30000")
        .set("heartbeat.interval.ms", "500")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    c.subscribe(&[topic]).unwrap();
    c
}

#[test]
fn a_group_keeps_its_committed_offsets_and_members_through_the_death_of_its_coordinator() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = LocalCluster::start(dir.path(), 3, 0, true, SETTINGS);
    let rt = runtime();
    let topic = "orders";
    let group = "billing";
    cluster.create_topic(topic, 3, 3, &[]);
    let producer: FutureProducer = cluster
        .client_config()
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    let send_range = |range: std::ops::Range<i32>| {
        for i in range {
            let value = format!("r{i}");
            let key = format!("k{i}");
            rt.block_on(
                producer.send(
                    FutureRecord::to(topic)
                        .partition(i % 3)
                        .key(&key)
                        .payload(&value),
                    Duration::from_secs(30),
                ),
            )
            .unwrap();
        }
    };
    send_range(0..300);

    // Two members consume half of the records, committing each one synchronously.
    let members = [
        group_consumer(&cluster, group, topic),
        group_consumer(&cluster, group, topic),
    ];
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let poll_until = |members: &[BaseConsumer; 2],
                      seen: &mut BTreeMap<String, usize>,
                      want: usize,
                      what: &str| {
        let deadline = Instant::now() + Duration::from_secs(120);
        while seen.len() < want
            || members
                .iter()
                .any(|m| m.assignment().map(|a| a.count()).unwrap_or(0) == 0)
        {
            assert!(
                Instant::now() < deadline,
                "{what}: stalled with {} of {want} records",
                seen.len()
            );
            for m in members {
                let msg = match m.poll(Duration::from_millis(50)) {
                    None => continue,
                    Some(Ok(msg)) => msg,
                    // The killed node's connections failing: librdkafka reports and retries.
                    Some(Err(e)) if transient(&e) => {
                        eprintln!("{what}: {e}");
                        continue;
                    }
                    Some(Err(e)) => panic!("{what}: {e}"),
                };
                let v = String::from_utf8(msg.payload().unwrap().to_vec()).unwrap();
                *seen.entry(v).or_default() += 1;
                // A commit that fails while the coordinator moves is retried until it lands.
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition_offset(
                    msg.topic(),
                    msg.partition(),
                    rdkafka::Offset::Offset(msg.offset() + 1),
                )
                .unwrap();
                while let Err(e) = m.commit(&tpl, CommitMode::Sync) {
                    assert!(
                        Instant::now() < deadline,
                        "{what}: commit never landed: {e}"
                    );
                    eprintln!("{what}: commit retried: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    };
    poll_until(&members, &mut seen, 150, "before the failover");

    let coordinator = wait_for_coordinator(&cluster, &rt, 0, group, None);
    let coordinator_addr = cluster.nodes[&coordinator].broker_addr();
    let (state, member_ids) = describe_group(&rt, &coordinator_addr, group);
    assert_eq!(state, "Stable");
    assert_eq!(member_ids.len(), 2, "{member_ids:?}");
    let committed = fetch_offsets(&rt, &coordinator_addr, group);
    let total: i64 = committed.values().sum();
    assert!(total >= 150, "committed before the kill: {committed:?}");
    eprintln!("coordinator {coordinator}: members {member_ids:?}, committed {committed:?}");

    cluster.kill(coordinator);
    let successor = wait_for_coordinator(&cluster, &rt, 0, group, Some(coordinator));
    let successor_addr = cluster.nodes[&successor].broker_addr();
    eprintln!("coordinator moved {coordinator} -> {successor}");
    // The new coordinator loaded the group from the replicated log: the same members (no
    // rebalance needed) and every acknowledged commit.
    let (state, ids_after) = describe_group(&rt, &successor_addr, group);
    assert_eq!(state, "Stable");
    assert_eq!(ids_after, member_ids, "members after the failover");
    assert_eq!(
        fetch_offsets(&rt, &successor_addr, group),
        committed,
        "committed offsets after the failover"
    );

    // The members carry on with the new coordinator: the rest of the records, and more.
    send_range(300..450);
    poll_until(&members, &mut seen, 450, "after the failover");
    let mut after: BTreeMap<(String, i32), i64> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while after.values().sum::<i64>() < 450 {
        assert!(
            Instant::now() < deadline,
            "final commits missing: {after:?}"
        );
        after = fetch_offsets(&rt, &successor_addr, group);
        std::thread::sleep(Duration::from_millis(100));
    }
    for ((t, p), o) in &after {
        assert_eq!(o, &150, "{t}-{p}");
    }
    for i in 0..450 {
        assert!(seen.contains_key(&format!("r{i}")), "r{i} never consumed");
    }
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    eprintln!("records: {} distinct, {duplicates} redelivered", seen.len());
    // Members neither left nor were replaced: no rebalance, so nothing was redelivered.
    assert_eq!(duplicates, 0);
    let (_, ids_end) = describe_group(&rt, &successor_addr, group);
    assert_eq!(ids_end, member_ids);
    cluster.restart(coordinator);
}

#[test]
fn a_transaction_across_brokers_commits_through_a_transaction_coordinator_failover() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = LocalCluster::start(dir.path(), 3, 0, true, SETTINGS);
    let rt = runtime();
    let topic = "payments";
    cluster.create_topic(topic, 3, 3, &[]);
    let leaders: BTreeSet<i32> = cluster
        .partition_states(topic)
        .unwrap()
        .iter()
        .map(|p| p.leader)
        .collect();
    assert_eq!(leaders.len(), 3, "the partitions are led by three brokers");

    let txn_id = "payments-writer";
    let producer: ThreadedProducer<DefaultProducerContext> = cluster
        .client_config()
        .set("transactional.id", txn_id)
        .set("transaction.timeout.ms", "60000")
        .create()
        .unwrap();
    producer.init_transactions(Duration::from_secs(60)).unwrap();
    let coordinator = wait_for_coordinator(&cluster, &rt, 1, txn_id, None);

    // A committed transaction before anything happens.
    producer.begin_transaction().unwrap();
    for p in 0..3 {
        producer
            .send(
                BaseRecord::to(topic)
                    .partition(p)
                    .key("a")
                    .payload(&format!("first-{p}")),
            )
            .unwrap();
    }
    producer
        .commit_transaction(Duration::from_secs(60))
        .unwrap();

    // The second transaction is open on all three partitions (acknowledged by their
    // leaders) when its coordinator's node dies; it commits through the new coordinator.
    producer.begin_transaction().unwrap();
    for p in 0..3 {
        for i in 0..10 {
            producer
                .send(
                    BaseRecord::to(topic)
                        .partition(p)
                        .key("b")
                        .payload(&format!("second-{p}-{i}")),
                )
                .unwrap();
        }
    }
    producer.flush(Duration::from_secs(60)).unwrap();
    eprintln!("killing transaction coordinator {coordinator}");
    cluster.kill(coordinator);
    let successor = wait_for_coordinator(&cluster, &rt, 1, txn_id, Some(coordinator));
    eprintln!("transaction coordinator moved {coordinator} -> {successor}");
    producer
        .commit_transaction(Duration::from_secs(120))
        .unwrap();

    // A third transaction is aborted: never visible.
    producer.begin_transaction().unwrap();
    for p in 0..3 {
        producer
            .send(
                BaseRecord::to(topic)
                    .partition(p)
                    .key("c")
                    .payload(&format!("aborted-{p}")),
            )
            .unwrap();
    }
    producer.flush(Duration::from_secs(60)).unwrap();
    producer.abort_transaction(Duration::from_secs(60)).unwrap();
    // And a last committed one marks the end.
    producer.begin_transaction().unwrap();
    for p in 0..3 {
        producer
            .send(
                BaseRecord::to(topic)
                    .partition(p)
                    .key("d")
                    .payload(&format!("last-{p}")),
            )
            .unwrap();
    }
    producer
        .commit_transaction(Duration::from_secs(60))
        .unwrap();

    // read_committed: per partition, first, the ten records of the second transaction in
    // order, last; nothing aborted, nothing twice.
    let consumer: BaseConsumer = cluster
        .client_config()
        .set("group.id", "verifier")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut read: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while (0..3).any(|p| {
        read.get(&p)
            .is_none_or(|v| v.last() != Some(&format!("last-{p}")))
    }) {
        assert!(Instant::now() < deadline, "read so far: {read:?}");
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = match m {
                Ok(m) => m,
                Err(e) if transient(&e) => continue,
                Err(e) => panic!("{e}"),
            };
            read.entry(m.partition())
                .or_default()
                .push(String::from_utf8(m.payload().unwrap().to_vec()).unwrap());
        }
    }
    for p in 0..3 {
        let mut want = vec![format!("first-{p}")];
        want.extend((0..10).map(|i| format!("second-{p}-{i}")));
        want.push(format!("last-{p}"));
        assert_eq!(read[&p], want, "partition {p}");
    }
    cluster.restart(coordinator);
}

/// `lines` of seeded random words.
fn text(seed: u64, lines: usize) -> Vec<String> {
    let mut rng = common::XorShift::new(seed);
    (0..lines)
        .map(|_| {
            let n = 1 + rng.next() % 8;
            (0..n)
                .map(|_| format!("w{}", rng.next() % 200))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// Waits until the `read_committed` word counts equal `truth`, never above it on the way.
fn wait_for_exact_counts(bootstrap: &str, truth: &BTreeMap<String, i64>, timeout: Duration) {
    use examples::word_count_cluster as wcc;
    let deadline = Instant::now() + timeout;
    loop {
        // A read may fail while a broker is down; the next one is retried.
        if let Ok(counts) = wcc::read_counts(bootstrap, None) {
            for (word, got) in &counts {
                let want = truth.get(word).copied().unwrap_or(0);
                assert!(
                    *got <= want,
                    "`{word}` counted {got} times, more than the {want} times it was written"
                );
            }
            if &counts == truth {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "counts never reached the truth: {} of {} words right",
                truth
                    .iter()
                    .filter(|(w, c)| counts.get(*w) == Some(c))
                    .count(),
                truth.len()
            );
        }
        assert!(Instant::now() < deadline, "counts never readable");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Also the regression test of librdkafka's `send_offsets_to_transaction` that waits forever
/// for the killed group coordinator (it left the metadata): the wire producer bounds the call
/// and is replaced (see `streams-core/src/wire/producer.rs`).
#[test]
fn streams_word_count_exactly_once_stays_exact_while_a_broker_is_killed_and_restarted() {
    use examples::word_count::direct_count;
    use examples::word_count_cluster as wcc;
    let seed = std::env::var("CLUSTER_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x0e05_3b0c_u64);
    eprintln!("seed: {seed} (CLUSTER_TEST_SEED={seed} replays it)");
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = LocalCluster::start(dir.path(), 3, 0, true, SETTINGS);
    let bootstrap = cluster.bootstrap();
    cluster.create_topic(wcc::INPUT_TOPIC, wcc::PARTITIONS, 3, &[]);
    cluster.create_topic(wcc::OUTPUT_TOPIC, wcc::PARTITIONS, 3, &[]);

    let first = text(seed, 2_000);
    wcc::produce_lines(&bootstrap, &first).unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut options = wcc::ClusterOptions::new(&bootstrap, "wc-cluster-eos", state.path());
    options.commit_interval = Duration::from_millis(100);
    options.session_timeout = Duration::from_secs(10);
    options.properties = vec![
        ("processing.guarantee".into(), "exactly_once_v2".into()),
        ("producer.transaction.timeout.ms".into(), "10000".into()),
        // Changelog and repartition topics replicated like the data.
        ("replication.factor".into(), "3".into()),
    ];
    let mut app = wcc::start(&options).unwrap();
    let mut truth = direct_count(&first.join("\n"));
    wait_for_exact_counts(&bootstrap, &truth, Duration::from_secs(60));

    // The group's coordinator is the node to kill: the app loses its coordinator, the leaders
    // of some of its partitions and maybe its transaction coordinator at once.
    let rt = runtime();
    let victim = wait_for_coordinator(&cluster, &rt, 0, "wc-cluster-eos", None);
    eprintln!("killing node {victim} (the application's group coordinator)");
    cluster.kill(victim);
    let second = text(seed ^ 0x5eed, 2_000);
    // The producer retries while leaders move.
    wcc::produce_lines(&bootstrap, &second).unwrap();
    for (w, c) in direct_count(&second.join("\n")) {
        *truth.entry(w).or_default() += c;
    }
    wait_for_exact_counts(&bootstrap, &truth, Duration::from_secs(120));

    eprintln!("restarting node {victim}");
    cluster.restart(victim);
    cluster.wait_for_brokers(Duration::from_secs(60));
    let third = text(seed ^ 0x7777, 1_000);
    wcc::produce_lines(&bootstrap, &third).unwrap();
    for (w, c) in direct_count(&third.join("\n")) {
        *truth.entry(w).or_default() += c;
    }
    wait_for_exact_counts(&bootstrap, &truth, Duration::from_secs(120));
    app.close();
    // No stream thread died on the way (retriable errors are handled inside the threads).
    assert!(app.thread_errors().is_empty(), "{:?}", app.errors());
}
