//! Compatibility with librdkafka (through the `rdkafka` crate), unmodified, against our broker
//! served on an ephemeral port: keyed produce with acks=all and the murmur2 partitioner, manual
//! assignment consumption from the beginning, by timestamp and after a broker restart, admin
//! operations, and every compression codec.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::Duration;

use broker_embedded::{partition_for_key, Broker, BrokerConfig, KafkaServer, ServerConfig};
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(20);

async fn start(dir: &std::path::Path) -> (Broker, KafkaServer) {
    let mut c = BrokerConfig::new(dir);
    c.cleaner_interval = None;
    let broker = Broker::open(c).unwrap();
    let server = KafkaServer::start(
        broker.clone(),
        ServerConfig {
            listen: "127.0.0.1:0".into(),
            ..ServerConfig::default()
        },
    )
    .await
    .unwrap();
    (broker, server)
}

fn config(server: &KafkaServer) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", server.local_addr().to_string())
        .set("partitioner", "murmur2_random")
        .set("message.timeout.ms", "20000")
        .set("socket.timeout.ms", "20000");
    c
}

fn admin(server: &KafkaServer) -> AdminClient<DefaultClientContext> {
    config(server).create().unwrap()
}

fn opts() -> AdminOptions {
    AdminOptions::new().operation_timeout(Some(TIMEOUT))
}

async fn create_topic(server: &KafkaServer, name: &str, partitions: i32) {
    let nt = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for r in admin(server).create_topics([&nt], &opts()).await.unwrap() {
        r.unwrap();
    }
}

/// Reads every record of `topic` from the beginning with manual assignment.
fn read_all(
    server: &KafkaServer,
    topic: &str,
    partitions: i32,
    expected: usize,
) -> Vec<(i32, i64, String, String, i64)> {
    let consumer: BaseConsumer = config(server)
        .set("group.id", "compat-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + TIMEOUT;
    while out.len() < expected && std::time::Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => out.push((
                m.partition(),
                m.offset(),
                String::from_utf8(m.key().unwrap_or_default().to_vec()).unwrap(),
                String::from_utf8(m.payload().unwrap_or_default().to_vec()).unwrap(),
                m.timestamp().to_millis().unwrap_or(-1),
            )),
            Some(Err(e)) => panic!("consume error: {e}"),
            None => {}
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_consume_restart_admin_and_codecs() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, server) = start(dir.path()).await;

    // Keyed produce with acks=all: keys land where the Java client's murmur2 puts them.
    create_topic(&server, "compat", 6).await;
    create_topic(&server, "vectors", 12).await;
    let producer: FutureProducer = config(&server)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    let mut sent = BTreeMap::new();
    for i in 0..300i64 {
        let key = format!("key-{i}");
        let value = format!("value-{i}");
        let ts = 1_700_000_000_000 + i * 1000;
        let rdkafka::producer::future_producer::Delivery {
            partition, offset, ..
        } = producer
            .send(
                FutureRecord::to("compat")
                    .key(&key)
                    .payload(&value)
                    .timestamp(ts),
                TIMEOUT,
            )
            .await
            .unwrap();
        assert_eq!(
            partition as u32,
            partition_for_key(key.as_bytes(), 6).unwrap(),
            "{key}"
        );
        sent.insert((partition, offset), (key, value, ts));
    }
    for (key, p12) in [
        ("", 9),
        ("a", 4),
        ("foo", 8),
        ("truck-42", 5),
        ("hello world", 7),
        ("21", 0),
        ("ñandú", 4),
    ] {
        let rdkafka::producer::future_producer::Delivery { partition, .. } = producer
            .send(FutureRecord::to("vectors").key(key).payload("x"), TIMEOUT)
            .await
            .unwrap();
        assert_eq!(partition, p12, "key {key:?} (REFERENCE.md vector)");
    }

    // Manual assignment from the beginning reads back exactly what was acknowledged.
    let got = read_all(&server, "compat", 6, sent.len());
    assert_eq!(got.len(), sent.len());
    for (p, o, k, v, ts) in &got {
        assert_eq!(sent.get(&(*p, *o)), Some(&(k.clone(), v.clone(), *ts)));
    }

    // By timestamp: offsets_for_times finds the first record at or after the time.
    let consumer: BaseConsumer = config(&server)
        .set("group.id", "compat-ts")
        .create()
        .unwrap();
    let target = 1_700_000_000_000 + 150 * 1000;
    let mut tpl = TopicPartitionList::new();
    for p in 0..6 {
        tpl.add_partition_offset("compat", p, Offset::Offset(target))
            .unwrap();
    }
    let found = consumer.offsets_for_times(tpl, TIMEOUT).unwrap();
    for e in found.elements() {
        let expect = sent
            .iter()
            .filter(|((p, _), (_, _, ts))| *p == e.partition() && *ts >= target)
            .map(|((_, o), _)| *o)
            .min();
        match expect {
            Some(o) => assert_eq!(e.offset(), Offset::Offset(o), "partition {}", e.partition()),
            None => assert!(
                matches!(e.offset(), Offset::End | Offset::Offset(-1)),
                "{:?}",
                e.offset()
            ),
        }
    }

    // Committed offsets for a consumer with manual assignment (FindCoordinator, OffsetCommit
    // with generation -1, OffsetFetch), read back by another consumer of the same group.
    let committer: BaseConsumer = config(&server)
        .set("group.id", "compat-group")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut offsets = TopicPartitionList::new();
    for p in 0..6 {
        offsets
            .add_partition_offset("compat", p, Offset::Offset(10 + i64::from(p)))
            .unwrap();
    }
    committer.assign(&offsets).unwrap();
    committer
        .commit(&offsets, rdkafka::consumer::CommitMode::Sync)
        .unwrap();
    let committed_by_other = |server: &KafkaServer| {
        let reader: BaseConsumer = config(server)
            .set("group.id", "compat-group")
            .create()
            .unwrap();
        let mut query = TopicPartitionList::new();
        for p in 0..6 {
            query.add_partition("compat", p);
        }
        let got = reader.committed_offsets(query, TIMEOUT).unwrap();
        got.elements()
            .iter()
            .map(|e| (e.partition(), e.offset()))
            .collect::<Vec<_>>()
    };
    let expected_commits: Vec<(i32, Offset)> = (0..6)
        .map(|p| (p, Offset::Offset(10 + i64::from(p))))
        .collect();
    assert_eq!(committed_by_other(&server), expected_commits);

    // Admin: alter (legacy AlterConfigs), describe, delete.
    let admin = admin(&server);
    let ac = AlterConfig::new(ResourceSpecifier::Topic("compat")).set("retention.ms", "86400000");
    for r in admin.alter_configs([&ac], &opts()).await.unwrap() {
        r.unwrap();
    }
    let described = admin
        .describe_configs([&ResourceSpecifier::Topic("compat")], &opts())
        .await
        .unwrap();
    let entries = &described[0].as_ref().unwrap().entries;
    let retention = entries.iter().find(|e| e.name == "retention.ms").unwrap();
    assert_eq!(retention.value.as_deref(), Some("86400000"));
    create_topic(&server, "doomed", 1).await;
    for r in admin.delete_topics(&["doomed"], &opts()).await.unwrap() {
        r.unwrap();
    }
    assert!(!broker.topic_exists("doomed"));
    let bad = NewTopic::new("rf3", 1, TopicReplication::Fixed(3));
    let r = admin.create_topics([&bad], &opts()).await.unwrap();
    assert!(
        r[0].is_err(),
        "replication factor 3 on one broker is refused"
    );

    // Every compression codec round-trips.
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("codec-{codec}");
        create_topic(&server, &topic, 1).await;
        let p: FutureProducer = config(&server)
            .set("compression.codec", codec)
            .set("linger.ms", "20")
            .create()
            .unwrap();
        let futures: Vec<_> = (0..50)
            .map(|i| {
                let p = p.clone();
                let topic = topic.clone();
                async move {
                    let key = format!("k{i}");
                    let value = format!("{codec}-{i}-{}", "z".repeat(200));
                    p.send(FutureRecord::to(&topic).key(&key).payload(&value), TIMEOUT)
                        .await
                        .unwrap();
                }
            })
            .collect();
        futures_util::future::join_all(futures).await;
        let got = read_all(&server, &topic, 1, 50);
        assert_eq!(got.len(), 50, "{codec}");
        assert!(got
            .iter()
            .all(|(_, _, k, v, _)| v.starts_with(&format!("{codec}-{}-", &k[1..]))));
    }

    // Restart the broker (new port): everything is still there.
    drop(producer);
    server.shutdown().await;
    broker.shutdown().unwrap();
    drop(broker);
    let (_broker, server) = start(dir.path()).await;
    let got = read_all(&server, "compat", 6, sent.len());
    assert_eq!(got.len(), sent.len(), "records survive a restart");
    assert_eq!(
        committed_by_other(&server),
        expected_commits,
        "commits survive a restart"
    );
    server.shutdown().await;
}
