//! Replication on a local KRaft-style cluster of real `broker serve` processes (Kafka's
//! `server.properties` keys, formatted from `CLUSTER_ID`): acknowledged records survive leader
//! SIGKILLs, a returning old leader truncates what the new leader never had and every replica
//! ends byte-identical, `min.insync.replicas` refuses acks=all writes when the ISR is too
//! small, the ISR shrinks around a paused follower and grows back, and topic creation carries
//! on through a controller failover.
//!
//! Needs the `broker` binary: `cargo build -p broker-cli` first.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use broker_embedded::record::BatchIter;
use common::cluster::LocalCluster;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

/// Cluster settings every test uses: short sessions and lag times so failures are noticed
/// within seconds.
const FAST: &[&str] = &[
    "broker.session.timeout.ms=4000",
    "broker.heartbeat.interval.ms=500",
    "replica.lag.time.max.ms=3000",
    "default.replication.factor=3",
    "min.insync.replicas=2",
    "offsets.topic.replication.factor=3",
    "transaction.state.log.replication.factor=3",
];

fn seed() -> u64 {
    let seed = std::env::var("CLUSTER_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("seed: {seed} (CLUSTER_TEST_SEED={seed} replays the choices)");
    seed
}

/// xorshift64*, enough to pick partitions and nodes reproducibly.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// Every record of `topic`'s partitions as `(partition, value)` in offset order, read up to
/// the high watermarks.
fn consume_all(cluster: &LocalCluster, topic: &str, partitions: i32) -> BTreeMap<i32, Vec<String>> {
    let consumer: BaseConsumer = cluster
        .client_config()
        .set("group.id", "verifier")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut ends = BTreeMap::new();
    for p in 0..partitions {
        let (_, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .unwrap();
        ends.insert(p, high);
    }
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    let mut positions: BTreeMap<i32, i64> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while ends
        .iter()
        .any(|(p, end)| positions.get(p).copied().unwrap_or(0) < *end)
    {
        assert!(
            Instant::now() < deadline,
            "consuming {topic} stalled at {positions:?} of {ends:?}"
        );
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.unwrap();
            positions.insert(m.partition(), m.offset() + 1);
            out.entry(m.partition())
                .or_default()
                .push(String::from_utf8(m.payload().unwrap().to_vec()).unwrap());
        }
    }
    out
}

#[test]
fn acks_all_records_survive_repeated_leader_sigkills_without_loss_duplicates_or_reordering() {
    let mut rng = Rng(seed() | 1);
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = LocalCluster::start(dir.path(), 3, 3, false, FAST);
    const PARTITIONS: i32 = 3;
    cluster.create_topic("acked", PARTITIONS, 3, &[("min.insync.replicas", "2")]);
    let producer: FutureProducer = cluster
        .client_config()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "120000")
        .set("retry.backoff.ms", "100")
        .create()
        .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let acked: Arc<Mutex<BTreeMap<i32, Vec<u64>>>> = Arc::default();
    let failed = Arc::new(Mutex::new(0u64));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sender = {
        let (producer, acked, failed, stop) = (
            producer.clone(),
            acked.clone(),
            failed.clone(),
            stop.clone(),
        );
        rt.spawn(async move {
            let mut seq = 0u64;
            let mut inflight = tokio::task::JoinSet::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for p in 0..PARTITIONS {
                    // Enqueued here, in sequence order (the delivery is awaited in a task).
                    let value = format!("{seq:010}");
                    let mut record = FutureRecord::<(), _>::to("acked")
                        .partition(p)
                        .payload(&value);
                    let delivery = loop {
                        match producer.send_result(record) {
                            Ok(d) => break d,
                            Err((_, r)) => {
                                record = r;
                                tokio::time::sleep(Duration::from_millis(5)).await;
                            }
                        }
                    };
                    let (acked, failed) = (acked.clone(), failed.clone());
                    inflight.spawn(async move {
                        match delivery.await {
                            Ok(Ok(_)) => acked.lock().unwrap().entry(p).or_default().push(seq),
                            _ => *failed.lock().unwrap() += 1,
                        }
                    });
                }
                seq += 1;
                if seq.is_multiple_of(50) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                while inflight.len() > 3000 {
                    inflight.join_next().await;
                }
            }
            while inflight.join_next().await.is_some() {}
            seq
        })
    };
    let mut kills = 0;
    for round in 0..3 {
        std::thread::sleep(Duration::from_secs(2));
        let p = rng.below(PARTITIONS as u64) as i32;
        let states = cluster.partition_states("acked").unwrap();
        let leader = states[p as usize].leader;
        assert!(leader > 0, "partition {p} has no leader: {states:?}");
        eprintln!("round {round}: SIGKILL broker {leader}, leader of acked-{p}");
        cluster.kill(leader);
        kills += 1;
        cluster.wait_for_partitions(
            "acked",
            "moved leadership off the killed broker",
            Duration::from_secs(30),
            |ps| ps.iter().all(|s| s.leader > 0 && s.leader != leader),
        );
        std::thread::sleep(Duration::from_secs(1));
        cluster.restart(leader);
        cluster.wait_for_partitions(
            "acked",
            "taken the restarted broker back into every ISR",
            Duration::from_secs(60),
            |ps| ps.iter().all(|s| s.isr.len() == 3),
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = rt.block_on(sender).unwrap();
    let acked = acked.lock().unwrap().clone();
    let failed = *failed.lock().unwrap();
    eprintln!(
        "sent {sent} per partition, acknowledged {:?}, failed {failed}, kills {kills}",
        acked.iter().map(|(p, v)| (*p, v.len())).collect::<Vec<_>>()
    );
    assert_eq!(kills, 3);
    let read = consume_all(&cluster, "acked", PARTITIONS);
    for p in 0..PARTITIONS {
        let values: Vec<u64> = read
            .get(&p)
            .map(|v| v.iter().map(|s| s.parse().unwrap()).collect())
            .unwrap_or_default();
        let unique: BTreeSet<u64> = values.iter().copied().collect();
        assert_eq!(unique.len(), values.len(), "partition {p}: duplicates");
        assert!(
            values.windows(2).all(|w| w[0] < w[1]),
            "partition {p}: records out of order"
        );
        let acked_p = acked.get(&p).cloned().unwrap_or_default();
        assert!(
            acked_p.len() > 100,
            "partition {p}: too few acknowledged records to mean anything"
        );
        let lost: Vec<u64> = acked_p
            .iter()
            .copied()
            .filter(|s| !unique.contains(s))
            .collect();
        assert!(
            lost.is_empty(),
            "partition {p}: {} acknowledged records lost, first {:?}",
            lost.len(),
            &lost[..lost.len().min(10)]
        );
    }
}

/// A record batch as stored: `(base offset, bytes)`.
type Batch = (i64, Vec<u8>);

/// The record batches of a partition directory's segments, in order.
fn replica_batches(data_dir: &Path, topic: &str, partition: i32) -> Vec<Batch> {
    let dir = data_dir.join(format!("{topic}-{partition}"));
    let mut segments: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    segments.sort();
    let mut out = Vec::new();
    for s in segments {
        let bytes = std::fs::read(&s).unwrap();
        for b in BatchIter::new(&bytes) {
            let b = b.unwrap_or_else(|(pos, e)| panic!("{} at {pos}: {e}", s.display()));
            out.push((b.header.base_offset, b.bytes.to_vec()));
        }
    }
    out
}

#[test]
fn a_returning_old_leader_truncates_its_divergent_records_and_every_replica_ends_identical() {
    let _ = seed();
    let dir = tempfile::tempdir().unwrap();
    // A long lag time, so the paused followers stay in the ISR while the leader takes writes
    // they never fetch.
    let settings: Vec<&str> = FAST
        .iter()
        .copied()
        .filter(|s| !s.starts_with("replica.lag.time.max.ms") && !s.starts_with("broker.session"))
        .chain([
            "replica.lag.time.max.ms=60000",
            "broker.session.timeout.ms=8000",
        ])
        .collect();
    let mut cluster = LocalCluster::start(dir.path(), 3, 3, false, &settings);
    cluster.create_topic(
        "diverge",
        1,
        3,
        &[
            ("min.insync.replicas", "1"),
            ("unclean.leader.election.enable", "false"),
        ],
    );
    let producer: FutureProducer = cluster
        .client_config()
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "30000")
        .create()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let send = |producer: &FutureProducer, value: String| {
        rt.block_on(
            producer.send(
                FutureRecord::<(), _>::to("diverge")
                    .partition(0)
                    .payload(&value),
                Duration::from_secs(30),
            ),
        )
        .map(|_| ())
        .map_err(|(e, _)| e)
    };
    for i in 0..100 {
        send(&producer, format!("common-{i}")).unwrap();
    }
    let before = cluster.partition_states("diverge").unwrap()[0].clone();
    let old_leader = before.leader;
    let followers: Vec<i32> = before
        .replicas
        .iter()
        .copied()
        .filter(|r| *r != old_leader)
        .collect();
    // The followers stop fetching; the leader takes acks=1 writes only it holds.
    for f in &followers {
        cluster.pause(*f);
    }
    // Fetches the followers had already sent complete (empty) within replica.fetch.wait.max.ms
    // (500 ms); after that nothing carries the next records to them.
    std::thread::sleep(Duration::from_millis(1500));
    let acks1: FutureProducer = cluster
        .client_config()
        .set("acks", "1")
        .set("message.timeout.ms", "10000")
        .set(
            "bootstrap.servers",
            cluster.nodes[&old_leader].broker_addr(),
        )
        .create()
        .unwrap();
    for i in 0..50 {
        send(&acks1, format!("divergent-{i}")).unwrap();
    }
    cluster.kill(old_leader);
    // The case this test exists for: the old leader's log holds records past the common 100.
    let old_leader_end = replica_batches(&cluster.nodes[&old_leader].data_dir(), "diverge", 0)
        .last()
        .map_or(0, |(base, bytes)| next_offset(*base, bytes));
    assert_eq!(
        old_leader_end, 150,
        "the old leader should hold 100 common + 50 divergent records"
    );
    for f in &followers {
        cluster.resume(*f);
    }
    let after = cluster.wait_for_partitions(
        "diverge",
        "elected a new leader",
        Duration::from_secs(30),
        |ps| ps[0].leader > 0 && ps[0].leader != old_leader,
    );
    eprintln!(
        "old leader {old_leader} (log end {old_leader_end}), new leader {}",
        after[0].leader
    );
    for i in 0..80 {
        send(&producer, format!("new-{i}")).unwrap();
    }
    cluster.restart(old_leader);
    cluster.wait_for_partitions(
        "diverge",
        "taken the old leader back into the ISR",
        Duration::from_secs(60),
        |ps| ps[0].isr.len() == 3,
    );
    let read = consume_all(&cluster, "diverge", 1);
    let expected: Vec<String> = (0..100)
        .map(|i| format!("common-{i}"))
        .chain((0..80).map(|i| format!("new-{i}")))
        .collect();
    assert_eq!(read[&0], expected, "the log after the old leader returned");
    // Byte-for-byte comparison of every replica after a clean stop.
    // Brokers first (their controlled shutdown needs the controllers), then controllers.
    let mut ids: Vec<i32> = cluster.nodes.keys().copied().collect();
    ids.sort_by_key(|id| (cluster.nodes[id].roles.is_controller(), *id));
    for id in &ids {
        cluster.stop_cleanly(*id);
    }
    let replicas: Vec<(i32, Vec<Batch>)> = before
        .replicas
        .iter()
        .map(|r| {
            (
                *r,
                replica_batches(&cluster.nodes[r].data_dir(), "diverge", 0),
            )
        })
        .collect();
    let (first_id, first) = &replicas[0];
    assert!(!first.is_empty());
    for (id, batches) in &replicas[1..] {
        assert_eq!(
            batches.len(),
            first.len(),
            "replica {id} vs {first_id}: batch counts differ"
        );
        for (a, b) in first.iter().zip(batches) {
            assert_eq!(a.0, b.0, "replica {id} vs {first_id}: base offsets differ");
            assert!(
                a.1 == b.1,
                "replica {id} vs {first_id}: batch at offset {} differs",
                a.0
            );
        }
    }
}

/// The offset after a batch: its base offset plus its last offset delta plus one.
fn next_offset(base: i64, batch: &[u8]) -> i64 {
    let delta = i32::from_be_bytes(batch[23..27].try_into().unwrap());
    base + i64::from(delta) + 1
}

#[test]
fn min_insync_replicas_refuses_acks_all_and_the_isr_shrinks_and_grows_around_a_paused_follower() {
    let _ = seed();
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = LocalCluster::start(dir.path(), 3, 0, true, FAST);
    cluster.create_topic("strict", 1, 3, &[("min.insync.replicas", "3")]);
    let producer: FutureProducer = cluster
        .client_config()
        .set("acks", "all")
        .set("retries", "0")
        .set("enable.idempotence", "false")
        .set("message.timeout.ms", "20000")
        .create()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let send = |value: &str| {
        rt.block_on(
            producer.send(
                FutureRecord::<(), _>::to("strict")
                    .partition(0)
                    .payload(value),
                Duration::from_secs(20),
            ),
        )
        .map(|_| ())
        .map_err(|(e, _)| e)
    };
    send("all three in sync").unwrap();
    let state = cluster.partition_states("strict").unwrap()[0].clone();
    let follower = *state.replicas.iter().find(|r| **r != state.leader).unwrap();
    cluster.pause(follower);
    cluster.wait_for_partitions("strict", "shrunk the ISR", Duration::from_secs(30), |ps| {
        !ps[0].isr.contains(&follower) && ps[0].leader > 0
    });
    // NOT_ENOUGH_REPLICAS refuses before the append; NOT_ENOUGH_REPLICAS_AFTER_APPEND (the
    // leader had not yet learnt the shrink when the record arrived) leaves the record in the
    // log, where consumers read it once the high watermark passes it, as in Kafka.
    let mut expected = vec!["all three in sync"];
    match send("two in sync") {
        Err(KafkaError::MessageProduction(RDKafkaErrorCode::NotEnoughReplicas)) => {}
        Err(KafkaError::MessageProduction(RDKafkaErrorCode::NotEnoughReplicasAfterAppend)) => {
            expected.push("two in sync");
        }
        other => panic!("expected NOT_ENOUGH_REPLICAS, got {other:?}"),
    }
    cluster.resume(follower);
    cluster.wait_for_partitions(
        "strict",
        "taken the follower back into the ISR",
        Duration::from_secs(60),
        |ps| ps[0].isr.contains(&follower),
    );
    // Metadata from any broker can show the expanded ISR before the leader has learnt it
    // (from its AlterPartition answer or the next metadata image); until then the leader
    // refuses acks=all before appending, exactly as Kafka's leader does with its committed
    // ISR. A refusal appends nothing, so retrying cannot duplicate the record.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut refusals = 0;
    loop {
        match send("three in sync again") {
            Ok(()) => break,
            Err(KafkaError::MessageProduction(RDKafkaErrorCode::NotEnoughReplicas))
                if Instant::now() < deadline =>
            {
                refusals += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("acks=all after the ISR grew back ({refusals} refusals): {e:?}"),
        }
    }
    eprintln!("NOT_ENOUGH_REPLICAS refusals while the leader learnt the ISR: {refusals}");
    let read = consume_all(&cluster, "strict", 1);
    expected.push("three in sync again");
    assert_eq!(read[&0], expected);
}

/// The active controller as a voter reports it in DescribeQuorum.
fn active_controller(cluster: &LocalCluster) -> Option<i32> {
    use broker_embedded::client::KafkaConnection;
    use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
    use kafka_protocol::messages::{DescribeQuorumRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for n in cluster
        .nodes
        .values()
        .filter(|n| n.roles.is_controller() && n.is_running())
    {
        let r = rt.block_on(async {
            let mut c =
                KafkaConnection::connect(&n.controller_addr(), "test", Duration::from_secs(3))
                    .await
                    .ok()?;
            let req = DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
                .with_topic_name(TopicName(StrBytes::from_static_str("__cluster_metadata")))
                .with_partitions(vec![PartitionData::default().with_partition_index(0)])]);
            let (_, resp) = c.send(req, 0, 2, Duration::from_secs(3)).await.ok()?;
            let p = resp.topics.first()?.partitions.first()?;
            (p.error_code == 0 && p.leader_id.0 >= 0).then_some(p.leader_id.0)
        });
        if r.is_some() {
            return r;
        }
    }
    None
}

#[test]
fn topics_created_while_the_active_controller_is_killed_all_exist_with_leaders() {
    let _ = seed();
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = LocalCluster::start(dir.path(), 3, 2, false, FAST);
    let killed = active_controller(&cluster).expect("no active controller");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        cluster.client_config().create().unwrap();
    let mut retries = 0;
    for i in 0..20 {
        if i == 5 {
            eprintln!("SIGKILL active controller {killed}");
            cluster.kill(killed);
        }
        let name = format!("failover-{i}");
        let topic =
            rdkafka::admin::NewTopic::new(&name, 2, rdkafka::admin::TopicReplication::Fixed(2));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = rt
                .block_on(
                    admin.create_topics(
                        [&topic],
                        &rdkafka::admin::AdminOptions::new()
                            .operation_timeout(Some(Duration::from_secs(10))),
                    ),
                )
                .map_err(|e| e.to_string())
                .and_then(|mut v| v.remove(0).map_err(|(_, e)| format!("{e:?}")));
            match r {
                Ok(_) => break,
                Err(e) if e.contains("TopicAlreadyExists") => break,
                Err(e) => {
                    retries += 1;
                    assert!(Instant::now() < deadline, "creating {name}: {e}");
                    std::thread::sleep(Duration::from_millis(300));
                }
            }
        }
    }
    eprintln!("retries during the failover: {retries}");
    let new_active = active_controller(&cluster).expect("no active controller after the kill");
    assert_ne!(new_active, killed);
    for i in 0..20 {
        cluster.wait_for_partitions(
            &format!("failover-{i}"),
            "got leaders",
            Duration::from_secs(30),
            |ps| ps.len() == 2 && ps.iter().all(|p| p.leader > 0 && p.replicas.len() == 2),
        );
    }
    cluster.restart(killed);
    std::thread::sleep(Duration::from_secs(2));
    assert!(active_controller(&cluster).is_some());
}

#[test]
fn every_broker_describes_the_cluster_and_names_the_same_coordinator_for_a_key() {
    use broker_embedded::client::KafkaConnection;
    use kafka_protocol::messages::FindCoordinatorRequest;
    use kafka_protocol::protocol::StrBytes;
    let _ = seed();
    let dir = tempfile::tempdir().unwrap();
    let cluster = LocalCluster::start(dir.path(), 3, 0, true, FAST);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut coordinators = BTreeSet::new();
    for (key_type, key) in [(0i8, "orders-app"), (0, "billing"), (1, "txn-7")] {
        // The first FindCoordinator has the internal topic created: COORDINATOR_NOT_AVAILABLE
        // until its partitions have leaders.
        let deadline = Instant::now() + Duration::from_secs(60);
        let answers: Vec<i32> = loop {
            let answers: Vec<(i16, i32)> = cluster
                .nodes
                .values()
                .map(|n| {
                    rt.block_on(async {
                        let mut c = KafkaConnection::connect(
                            &n.broker_addr(),
                            "test",
                            Duration::from_secs(5),
                        )
                        .await
                        .unwrap();
                        let req = FindCoordinatorRequest::default()
                            .with_key(StrBytes::from_static_str(key))
                            .with_key_type(key_type);
                        let (_, resp) = c.send(req, 1, 3, Duration::from_secs(5)).await.unwrap();
                        (resp.error_code, resp.node_id.0)
                    })
                })
                .collect();
            if answers.iter().all(|(e, _)| *e == 0) {
                break answers.into_iter().map(|(_, id)| id).collect();
            }
            // Brokers learn the new partitions' leaders from their own metadata fetches, so
            // some may answer while others still say COORDINATOR_NOT_AVAILABLE.
            assert!(
                answers.iter().all(|(e, _)| *e == 0 || *e == 15),
                "{key}: unexpected errors {answers:?}"
            );
            assert!(
                Instant::now() < deadline,
                "{key}: no coordinator: {answers:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        eprintln!("{key} (type {key_type}): {answers:?}");
        assert!(
            answers.iter().all(|a| *a == answers[0]),
            "{key}: brokers disagree: {answers:?}"
        );
        // The coordinator is the leader of the key's partition (Java's hashCode, 50
        // partitions by default).
        let (topic, partitions) = if key_type == 0 {
            ("__consumer_offsets", 50)
        } else {
            ("__transaction_state", 50)
        };
        let partition = broker_embedded::java_string_hash(key).unsigned_abs() as i32 % partitions;
        let states = cluster.partition_states(topic).unwrap();
        assert_eq!(states.len(), partitions as usize, "{topic}");
        assert_eq!(
            states[partition as usize].replicas.len(),
            3,
            "{topic} replicated"
        );
        assert_eq!(
            states[partition as usize].leader, answers[0],
            "{key}: the coordinator is the leader of {topic}-{partition}"
        );
        coordinators.insert(answers[0]);
    }
    assert!(!coordinators.is_empty());
    // DescribeCluster (KIP-700) from every broker: the cluster id and the three brokers.
    for n in cluster.nodes.values() {
        let resp = rt.block_on(async {
            let mut c = KafkaConnection::connect(&n.broker_addr(), "test", Duration::from_secs(5))
                .await
                .unwrap();
            let req =
                kafka_protocol::messages::DescribeClusterRequest::default().with_endpoint_type(1);
            c.send(req, 0, 1, Duration::from_secs(5)).await.unwrap().1
        });
        assert_eq!(resp.error_code, 0);
        assert_eq!(resp.cluster_id.as_str(), cluster.cluster_id);
        let mut ids: Vec<i32> = resp.brokers.iter().map(|b| b.broker_id.0).collect();
        ids.sort_unstable();
        assert_eq!(ids, vec![1, 2, 3], "node {}", n.id);
    }
}

#[test]
fn a_group_coordinator_accepts_and_returns_commits_for_partitions_led_by_other_brokers() {
    use broker_embedded::client::KafkaConnection;
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    use kafka_protocol::messages::{
        FindCoordinatorRequest, GroupId, OffsetCommitRequest, OffsetFetchRequest, TopicName,
    };
    use kafka_protocol::protocol::StrBytes;
    // librdkafka's 0137 on the cluster: a consumer of a replication-factor-1 topic committed
    // to a coordinator that held no replica of it and got UNKNOWN_TOPIC_OR_PARTITION (the
    // coordinator checked its own topics, not the cluster's metadata as Kafka does).
    let _ = seed();
    let dir = tempfile::tempdir().unwrap();
    let cluster = LocalCluster::start(dir.path(), 3, 0, true, FAST);
    let topic = "rf1-commits";
    // One partition, one replica: two of the three brokers hold nothing of the topic.
    cluster.create_topic(topic, 1, 1, &[]);
    let leader = cluster.partition_states(topic).unwrap()[0].leader;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let any = cluster.nodes.values().next().unwrap().broker_addr();
        let mut c = KafkaConnection::connect(&any, "test", Duration::from_secs(5))
            .await
            .unwrap();
        // A group whose coordinator is not the partition's leader (coordinators are spread
        // by the group id's hash: one of the first few names will do).
        // COORDINATOR_NOT_AVAILABLE (15) while `__consumer_offsets` is being created: retry,
        // as clients do, for at most 60 s.
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut found = None;
        for i in 0..50 {
            let group = format!("commits-elsewhere-{i}");
            let resp = loop {
                let req = FindCoordinatorRequest::default()
                    .with_key(StrBytes::from_string(group.clone()))
                    .with_key_type(0);
                let (_, resp) = c.send(req, 1, 3, Duration::from_secs(5)).await.unwrap();
                if resp.error_code != 15 || Instant::now() > deadline {
                    break resp;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            };
            assert_eq!(resp.error_code, 0);
            if resp.node_id.0 != leader {
                found = Some((group, resp.node_id.0));
                break;
            }
        }
        let (group, coordinator) = found.expect("every group's coordinator is the leader");
        eprintln!("{topic}[0] leader {leader}; {group} coordinated by {coordinator}");
        let mut c = KafkaConnection::connect(
            &cluster.nodes[&coordinator].broker_addr(),
            "test",
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        // A "simple" commit (no member, generation -1) of offset 42.
        let req = OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.clone())))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(StrBytes::from_static_str(topic)))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(42)])]);
        // COORDINATOR_LOAD_IN_PROGRESS (14) while the new coordinator loads its partition.
        let resp = loop {
            let (_, resp) = c
                .send(req.clone(), 2, 8, Duration::from_secs(10))
                .await
                .unwrap();
            if resp.topics[0].partitions[0].error_code != 14 || Instant::now() > deadline {
                break resp;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(resp.topics[0].partitions[0].error_code, 0, "OffsetCommit");
        let req = OffsetFetchRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group)))
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(TopicName(StrBytes::from_static_str(topic)))
                .with_partition_indexes(vec![0])]));
        let (_, resp) = c.send(req, 1, 7, Duration::from_secs(10)).await.unwrap();
        let p = &resp.topics[0].partitions[0];
        assert_eq!((p.committed_offset, p.error_code), (42, 0), "OffsetFetch");
    });
}
