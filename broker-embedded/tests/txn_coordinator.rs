//! The transaction coordinator end to end with librdkafka's transactional producer over TCP:
//! commit and abort across several partitions with group offsets (send_offsets_to_transaction),
//! read_committed vs read_uncommitted consumers, a transaction timeout aborted by the
//! coordinator, a second producer with the same transactional id fencing the first, and a
//! broker restart in the middle of a transaction; plus the `__transaction_state` reload of a
//! transaction prepared before a stop.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use broker_embedded::{
    Broker, BrokerConfig, KafkaServer, NewTopic, ServerConfig, TopicPartition, TxnState,
    TRANSACTION_STATE_TOPIC,
};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Message, Offset, TopicPartitionList};

async fn start(dir: &Path, listen: &str) -> (Broker, KafkaServer) {
    let mut c = BrokerConfig::new(dir);
    c.cleaner_interval = None;
    c.group_initial_rebalance_delay = Duration::ZERO;
    c.transaction_abort_timed_out_transaction_cleanup_interval = Duration::from_millis(100);
    // Small, to keep the test quick to set up.
    c.transaction_state_log_num_partitions = 4;
    c.offsets_topic_num_partitions = 4;
    let broker = Broker::open(c).unwrap();
    let server = KafkaServer::start(
        broker.clone(),
        ServerConfig {
            listen: listen.into(),
            ..ServerConfig::default()
        },
    )
    .await
    .unwrap();
    (broker, server)
}

type TxProducer = ThreadedProducer<DefaultProducerContext>;

fn producer(addr: &str, id: &str, timeout_ms: u32) -> TxProducer {
    ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("transactional.id", id)
        .set("transaction.timeout.ms", timeout_ms.to_string())
        .set("message.timeout.ms", timeout_ms.min(30_000).to_string())
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "1")
        .create()
        .unwrap()
}

const T: Duration = Duration::from_secs(20);

fn send(p: &TxProducer, topic: &str, partition: i32, value: &str) {
    p.send(
        BaseRecord::<str, str>::to(topic)
            .partition(partition)
            .key(value)
            .payload(value),
    )
    .map_err(|(e, _)| e)
    .unwrap();
}

/// Every value of `topic` a consumer with `isolation` reads from the beginning, up to the end
/// of every partition.
fn read_all(addr: &str, topic: &str, partitions: i32, isolation: &str) -> Vec<String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", format!("reader-{topic}-{isolation}"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", isolation)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let mut eof = std::collections::HashSet::new();
    let deadline = Instant::now() + T;
    while eof.len() < partitions as usize {
        assert!(
            Instant::now() < deadline,
            "reading {topic} ({isolation}) timed out with {out:?}"
        );
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                out.push(String::from_utf8(m.payload().unwrap().to_vec()).unwrap());
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                eof.insert(p);
            }
            Some(Err(e)) => panic!("consume error: {e}"),
            None => {}
        }
    }
    out.sort();
    out
}

fn offsets(topic: &str, partition: i32, offset: i64) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(offset))
        .unwrap();
    tpl
}

fn group_metadata(addr: &str, group: &str) -> rdkafka::consumer::ConsumerGroupMetadata {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", group)
        .create()
        .unwrap();
    consumer.group_metadata().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_and_abort_across_partitions_with_group_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, server) = start(dir.path(), "127.0.0.1:0").await;
    let addr = server.local_addr().to_string();
    broker.create_topic(NewTopic::new("out", 3)).unwrap();
    broker.create_topic(NewTopic::new("in", 1)).unwrap();
    let a = addr.clone();
    let b2 = broker.clone();
    tokio::task::spawn_blocking(move || {
        let p = producer(&a, "tx-commit", 60_000);
        p.init_transactions(T).unwrap();
        let cgm = group_metadata(&a, "g");
        p.begin_transaction().unwrap();
        for part in 0..3 {
            for i in 0..3 {
                send(&p, "out", part, &format!("c-{part}-{i}"));
            }
        }
        p.send_offsets_to_transaction(&offsets("in", 0, 5), &cgm, T)
            .unwrap();
        p.commit_transaction(T).unwrap();
        let in0 = TopicPartition::new("in", 0);
        assert_eq!(b2.committed_offset("g", &in0).unwrap().offset, 5);

        p.begin_transaction().unwrap();
        for part in 0..3 {
            for i in 0..3 {
                send(&p, "out", part, &format!("a-{part}-{i}"));
            }
        }
        p.send_offsets_to_transaction(&offsets("in", 0, 9), &cgm, T)
            .unwrap();
        p.flush(T).unwrap();
        let d = b2.transaction_coordinator().describe("tx-commit").unwrap();
        assert_eq!(d.state, TxnState::Ongoing);
        assert_eq!(
            d.partitions.len(),
            4,
            "3 output partitions and the group's offsets partition"
        );
        assert!(b2.has_pending_txn_offset("g", &in0));
        p.abort_transaction(T).unwrap();
        // The aborted offset commit never becomes visible.
        assert_eq!(b2.committed_offset("g", &in0).unwrap().offset, 5);
        assert!(!b2.has_pending_txn_offset("g", &in0));
        let d = b2.transaction_coordinator().describe("tx-commit").unwrap();
        assert_eq!(d.state, TxnState::CompleteAbort);

        let committed = read_all(&a, "out", 3, "read_committed");
        assert_eq!(committed.len(), 9, "{committed:?}");
        assert!(committed.iter().all(|v| v.starts_with("c-")));
        let all = read_all(&a, "out", 3, "read_uncommitted");
        assert_eq!(all.len(), 18, "{all:?}");
    })
    .await
    .unwrap();
    assert!(broker.topic_exists(TRANSACTION_STATE_TOPIC));
    // The committed group offset survives a restart (read back from __consumer_offsets).
    server.shutdown().await;
    broker.shutdown().unwrap();
    drop(broker);
    let (broker, server) = start(dir.path(), "127.0.0.1:0").await;
    assert_eq!(
        broker
            .committed_offset("g", &TopicPartition::new("in", 0))
            .unwrap()
            .offset,
        5
    );
    assert_eq!(
        broker
            .transaction_coordinator()
            .describe("tx-commit")
            .unwrap()
            .state,
        TxnState::CompleteAbort
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_transaction_is_aborted_by_the_coordinator() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, server) = start(dir.path(), "127.0.0.1:0").await;
    let addr = server.local_addr().to_string();
    broker.create_topic(NewTopic::new("slow", 1)).unwrap();
    let b2 = broker.clone();
    tokio::task::spawn_blocking(move || {
        let p = producer(&addr, "tx-slow", 1000);
        p.init_transactions(T).unwrap();
        p.begin_transaction().unwrap();
        send(&p, "slow", 0, "late");
        p.flush(T).unwrap();
        let deadline = Instant::now() + T;
        while b2
            .transaction_coordinator()
            .describe("tx-slow")
            .unwrap()
            .state
            != TxnState::CompleteAbort
        {
            assert!(Instant::now() < deadline, "the coordinator never aborted");
            std::thread::sleep(Duration::from_millis(50));
        }
        // The producer was fenced by the abort: its commit fails.
        assert!(p.commit_transaction(T).is_err());
        assert!(read_all(&addr, "slow", 1, "read_committed").is_empty());
        assert_eq!(read_all(&addr, "slow", 1, "read_uncommitted"), ["late"]);
    })
    .await
    .unwrap();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_producer_with_the_same_id_fences_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, server) = start(dir.path(), "127.0.0.1:0").await;
    let addr = server.local_addr().to_string();
    broker.create_topic(NewTopic::new("f", 2)).unwrap();
    tokio::task::spawn_blocking(move || {
        let old = producer(&addr, "tx-fence", 60_000);
        old.init_transactions(T).unwrap();
        old.begin_transaction().unwrap();
        send(&old, "f", 0, "old");
        old.flush(T).unwrap();
        // The new producer's InitProducerId aborts the old transaction first.
        let new = producer(&addr, "tx-fence", 60_000);
        new.init_transactions(T).unwrap();
        let err = old.commit_transaction(T).unwrap_err();
        let fatal = match &err {
            KafkaError::Transaction(e) => e.is_fatal(),
            _ => false,
        };
        assert!(fatal, "the old producer must be fenced (fatal): {err}");
        new.begin_transaction().unwrap();
        send(&new, "f", 1, "new");
        new.commit_transaction(T).unwrap();
        assert_eq!(read_all(&addr, "f", 2, "read_committed"), ["new"]);
        assert_eq!(read_all(&addr, "f", 2, "read_uncommitted"), ["new", "old"]);
    })
    .await
    .unwrap();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_survives_a_broker_restart_in_its_middle() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, server) = start(dir.path(), "127.0.0.1:0").await;
    let addr = server.local_addr().to_string();
    broker.create_topic(NewTopic::new("r", 2)).unwrap();
    let a = addr.clone();
    let p = tokio::task::spawn_blocking(move || {
        let p = producer(&a, "tx-restart", 60_000);
        p.init_transactions(T).unwrap();
        p.begin_transaction().unwrap();
        send(&p, "r", 0, "before-0");
        send(&p, "r", 1, "before-1");
        p.flush(T).unwrap();
        p
    })
    .await
    .unwrap();
    server.shutdown().await;
    broker.shutdown().unwrap();
    drop(broker);
    let (broker, server) = start(dir.path(), &addr).await;
    assert_eq!(
        broker
            .transaction_coordinator()
            .describe("tx-restart")
            .unwrap()
            .state,
        TxnState::Ongoing
    );
    let a = addr.clone();
    tokio::task::spawn_blocking(move || {
        send(&p, "r", 0, "after-0");
        p.commit_transaction(T).unwrap();
        assert_eq!(
            read_all(&a, "r", 2, "read_committed"),
            ["after-0", "before-0", "before-1"]
        );
    })
    .await
    .unwrap();
    let listed: HashMap<String, TxnState> = broker
        .transaction_coordinator()
        .list(&[], &[], -1, 0)
        .into_iter()
        .map(|l| (l.transactional_id, l.state))
        .collect();
    assert_eq!(listed["tx-restart"], TxnState::CompleteCommit);
    server.shutdown().await;
}

/// KIP-447: offsets sent with the group metadata of a live member (its generation and member
/// id) are checked by the group coordinator: accepted for the member, refused for a stale
/// generation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_offsets_with_a_members_group_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, server) = start(dir.path(), "127.0.0.1:0").await;
    let addr = server.local_addr().to_string();
    broker.create_topic(NewTopic::new("src", 1)).unwrap();
    broker.create_topic(NewTopic::new("dst", 1)).unwrap();
    let b2 = broker.clone();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &addr)
            .set("group.id", "members")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        consumer.subscribe(&["src"]).unwrap();
        let deadline = Instant::now() + T;
        while consumer.assignment().unwrap().count() == 0 {
            assert!(Instant::now() < deadline, "never assigned");
            let _ = consumer.poll(Duration::from_millis(100));
        }
        let cgm = consumer.group_metadata().unwrap();
        let p = producer(&addr, "tx-member", 60_000);
        p.init_transactions(T).unwrap();
        p.begin_transaction().unwrap();
        send(&p, "dst", 0, "x");
        p.send_offsets_to_transaction(&offsets("src", 0, 3), &cgm, T)
            .unwrap();
        p.commit_transaction(T).unwrap();
        let src0 = TopicPartition::new("src", 0);
        assert_eq!(b2.committed_offset("members", &src0).unwrap().offset, 3);
        // Metadata without membership, while the group has a member: refused.
        let outsider = group_metadata(&addr, "members");
        p.begin_transaction().unwrap();
        send(&p, "dst", 0, "y");
        assert!(p
            .send_offsets_to_transaction(&offsets("src", 0, 4), &outsider, T)
            .is_err());
        assert_eq!(b2.committed_offset("members", &src0).unwrap().offset, 3);
    })
    .await
    .unwrap();
    server.shutdown().await;
}
