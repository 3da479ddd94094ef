//! Topic configs in a cluster: AlterConfigs and IncrementalAlterConfigs sent to any broker go
//! to the controller, which writes them to the metadata log; every broker then describes the
//! same configs, and the partition's leader (another broker) enforces them.
//!
//! Real `broker serve` processes (3 nodes with both roles) on loopback. Needs
//! `cargo build -p broker-cli` first (or `BROKER_BIN`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use broker_embedded::client::KafkaConnection;
use broker_embedded::record::{encode_batch, BatchSpec, Record};
use bytes::Bytes;
use common::cluster::LocalCluster;
use kafka_protocol::messages::{
    describe_configs_request, incremental_alter_configs_request, produce_request,
    DescribeConfigsRequest, IncrementalAlterConfigsRequest, ProduceRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};

const SETTINGS: &[&str] = &[
    "broker.session.timeout.ms=4000",
    "broker.heartbeat.interval.ms=500",
    "replica.lag.time.max.ms=3000",
    "default.replication.factor=3",
    "min.insync.replicas=2",
    "offsets.topic.replication.factor=3",
    "transaction.state.log.replication.factor=3",
];

const TOPIC_RESOURCE: i8 = 2;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// One described config: value and Kafka's config source id.
type Described = BTreeMap<String, (String, i8)>;

/// DescribeConfigs of `topic` on `broker`: the error code and every config.
fn describe(rt: &tokio::runtime::Runtime, broker: &str, topic: &str) -> (i16, Described) {
    rt.block_on(async {
        let mut c = KafkaConnection::connect(broker, "test", Duration::from_secs(5))
            .await
            .unwrap();
        let req = DescribeConfigsRequest::default().with_resources(vec![
            describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(TOPIC_RESOURCE)
                .with_resource_name(StrBytes::from_string(topic.to_string()))
                .with_configuration_keys(None),
        ]);
        let (_, resp) = c.send(req, 1, 4, Duration::from_secs(5)).await.unwrap();
        let r = &resp.results[0];
        (
            r.error_code,
            r.configs
                .iter()
                .map(|e| {
                    (
                        e.name.to_string(),
                        (
                            e.value.as_ref().map(|v| v.to_string()).unwrap_or_default(),
                            e.config_source,
                        ),
                    )
                })
                .collect(),
        )
    })
}

/// IncrementalAlterConfigs of `topic` sent to `broker`: (error code, message).
fn incremental_alter(
    rt: &tokio::runtime::Runtime,
    broker: &str,
    topic: &str,
    ops: &[(&str, i8, Option<&str>)],
) -> (i16, Option<String>) {
    rt.block_on(async {
        let mut c = KafkaConnection::connect(broker, "test", Duration::from_secs(5))
            .await
            .unwrap();
        let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
            incremental_alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(TOPIC_RESOURCE)
                .with_resource_name(StrBytes::from_string(topic.to_string()))
                .with_configs(
                    ops.iter()
                        .map(|(k, op, v)| {
                            incremental_alter_configs_request::AlterableConfig::default()
                                .with_name(StrBytes::from_string(k.to_string()))
                                .with_config_operation(*op)
                                .with_value(v.map(|v| StrBytes::from_string(v.to_string())))
                        })
                        .collect(),
                ),
        ]);
        let (_, resp) = c.send(req, 0, 1, Duration::from_secs(40)).await.unwrap();
        let r = &resp.responses[0];
        (
            r.error_code,
            r.error_message.as_ref().map(|m| m.to_string()),
        )
    })
}

/// Produce v9 (acks=1) of one batch of records with these keys to `broker`: the partition's
/// error code and the indexes of `record_errors`.
fn produce_raw(
    rt: &tokio::runtime::Runtime,
    broker: &str,
    topic: &str,
    keys: &[Option<&str>],
) -> (i16, Vec<i32>) {
    let records: Vec<Record> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| Record {
            offset: i as i64,
            timestamp: 1_000,
            key: k.map(|k| Bytes::copy_from_slice(k.as_bytes())),
            value: Some(Bytes::from_static(b"v")),
            headers: vec![],
        })
        .collect();
    let batch = encode_batch(&BatchSpec::default(), &records).unwrap();
    let req = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(Bytes::from(batch))),
            ])]);
    rt.block_on(async {
        let mut c = KafkaConnection::connect(broker, "test", Duration::from_secs(5))
            .await
            .unwrap();
        let resp = c.call(req, 9, Duration::from_secs(15)).await.unwrap();
        let p = &resp.responses[0].partition_responses[0];
        (
            p.error_code,
            p.record_errors.iter().map(|e| e.batch_index).collect(),
        )
    })
}

/// Waits until every broker describes `topic` so that `check` holds; returns the descriptions.
fn wait_for_every_broker(
    rt: &tokio::runtime::Runtime,
    brokers: &[String],
    topic: &str,
    what: &str,
    check: impl Fn(&Described) -> bool,
) -> Vec<Described> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let all: Vec<(i16, Described)> = brokers.iter().map(|b| describe(rt, b, topic)).collect();
        if all.iter().all(|(code, d)| *code == 0 && check(d)) {
            return all.into_iter().map(|(_, d)| d).collect();
        }
        assert!(
            Instant::now() < deadline,
            "the brokers never all described {topic} with {what}: {all:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn configs_altered_through_one_broker_are_described_by_all_and_enforced_by_the_leader() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = LocalCluster::start(dir.path(), 3, 0, true, SETTINGS);
    cluster.wait_for_brokers(Duration::from_secs(60));
    cluster.create_topic("cfg", 1, 3, &[("retention.ms", "3600000")]);
    let rt = runtime();
    let leader = cluster.partition_states("cfg").unwrap()[0].leader;
    let other = cluster
        .nodes
        .values()
        .find(|n| n.id != leader)
        .unwrap()
        .broker_addr();
    let brokers: Vec<String> = cluster.nodes.values().map(|n| n.broker_addr()).collect();
    eprintln!("leader of cfg-0: {leader}; altering through {other}");

    // Before: the override from CreateTopics, the broker's own setting, Kafka's default.
    let before = wait_for_every_broker(&rt, &brokers, "cfg", "its creation configs", |d| {
        d.get("retention.ms") == Some(&("3600000".into(), 1))
    });
    for d in &before {
        assert_eq!(d["min.insync.replicas"], ("2".into(), 4), "{d:?}");
        assert_eq!(d["cleanup.policy"], ("delete".into(), 5), "{d:?}");
    }

    let producer: FutureProducer = cluster
        .client_config()
        .set("acks", "all")
        .set("retries", "0")
        .set("enable.idempotence", "false")
        .set("message.timeout.ms", "20000")
        .create()
        .unwrap();
    let send = |key: Option<&str>, value: &str| {
        let mut record = FutureRecord::<str, str>::to("cfg")
            .partition(0)
            .payload(value);
        if let Some(k) = key {
            record = record.key(k);
        }
        rt.block_on(producer.send(record, Duration::from_secs(20)))
            .map(|_| ())
            .map_err(|(e, _)| e)
    };
    send(None, "keyless while delete").unwrap();

    // IncrementalAlterConfigs through a broker that does not lead the partition.
    let (code, message) = incremental_alter(
        &rt,
        &other,
        "cfg",
        &[
            ("cleanup.policy", 0, Some("compact")),
            ("max.message.bytes", 0, Some("4000")),
            ("retention.ms", 1, None),
        ],
    );
    assert_eq!(code, 0, "{message:?}");
    let after = wait_for_every_broker(&rt, &brokers, "cfg", "the altered configs", |d| {
        d.get("cleanup.policy") == Some(&("compact".into(), 1))
    });
    for d in &after {
        assert_eq!(d["max.message.bytes"], ("4000".into(), 1), "{d:?}");
        assert_eq!(d["retention.ms"], ("604800000".into(), 5), "{d:?}");
    }
    assert_eq!(after[0], after[1]);
    assert_eq!(after[1], after[2]);

    // The leader enforces them: keyless records are refused on a compacted topic, and so
    // is a batch over max.message.bytes.
    match send(None, "keyless while compact") {
        Err(KafkaError::MessageProduction(RDKafkaErrorCode::InvalidRecord)) => {}
        other => panic!("expected INVALID_RECORD from the leader, got {other:?}"),
    }
    send(Some("k"), "keyed while compact").unwrap();
    // KIP-467: a batch with one keyless record among keyed ones is refused, and the leader
    // names the record at fault (Produce v9 `record_errors`).
    let leader_addr = cluster.nodes[&leader].broker_addr();
    let (code, record_errors) =
        produce_raw(&rt, &leader_addr, "cfg", &[Some("a"), None, Some("b")]);
    assert_eq!(code, ResponseError::InvalidRecord.code());
    assert_eq!(record_errors, vec![1]);
    match send(Some("k"), &"x".repeat(8000)) {
        Err(KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge)) => {}
        other => panic!("expected MESSAGE_TOO_LARGE from the leader, got {other:?}"),
    }

    // APPEND to the list config, through the leader this time.
    let (code, message) = incremental_alter(
        &rt,
        &leader_addr,
        "cfg",
        &[("cleanup.policy", 2, Some("delete"))],
    );
    assert_eq!(code, 0, "{message:?}");
    wait_for_every_broker(&rt, &brokers, "cfg", "cleanup.policy=compact,delete", |d| {
        d.get("cleanup.policy") == Some(&("compact,delete".into(), 1))
    });

    // Refusals come back from the controller with Kafka's codes and change nothing.
    let (code, message) =
        incremental_alter(&rt, &other, "cfg", &[("retention.ms", 0, Some("tomorrow"))]);
    assert_eq!(code, ResponseError::InvalidConfig.code(), "{message:?}");
    let (code, message) =
        incremental_alter(&rt, &other, "cfg", &[("no.such.config", 0, Some("1"))]);
    assert_eq!(code, ResponseError::InvalidConfig.code(), "{message:?}");
    assert_eq!(
        message.as_deref(),
        Some("Unknown topic config name: no.such.config")
    );
    let (code, _) = incremental_alter(&rt, &other, "missing", &[("retention.ms", 0, Some("1"))]);
    assert_eq!(code, ResponseError::UnknownTopicOrPartition.code());

    // Legacy AlterConfigs (rdkafka's alter_configs) replaces every override: cleanup.policy
    // and max.message.bytes go back to the defaults, so keyless records are accepted again.
    let admin: AdminClient<DefaultClientContext> = cluster.client_config().create().unwrap();
    let results = rt
        .block_on(admin.alter_configs(
            [&AlterConfig::new(ResourceSpecifier::Topic("cfg")).set("segment.ms", "600000")],
            &AdminOptions::new(),
        ))
        .unwrap();
    for r in results {
        r.unwrap_or_else(|(res, e)| panic!("altering {res:?}: {e}"));
    }
    let replaced = wait_for_every_broker(&rt, &brokers, "cfg", "only segment.ms overridden", |d| {
        d.get("segment.ms") == Some(&("600000".into(), 1))
            && d.get("cleanup.policy") == Some(&("delete".into(), 5))
    });
    for d in &replaced {
        let overridden: Vec<&String> = d
            .iter()
            .filter(|(_, (_, source))| *source == 1)
            .map(|(k, _)| k)
            .collect();
        assert_eq!(overridden, vec!["segment.ms"], "{d:?}");
    }
    send(None, "keyless while delete again").unwrap();
}

/// `message.timestamp.before.max.ms` set at creation (through the controller) is enforced by the
/// partition's leader: a batch of records stamped in 1970 is refused with INVALID_TIMESTAMP, each
/// record named in `record_errors` (KIP-467); a topic without the bound takes the same batch.
#[test]
fn the_leader_refuses_records_outside_the_topics_timestamp_window_and_names_them() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = LocalCluster::start(dir.path(), 3, 0, true, SETTINGS);
    cluster.wait_for_brokers(Duration::from_secs(60));
    cluster.create_topic(
        "bounded",
        1,
        3,
        &[("message.timestamp.before.max.ms", "3600000")],
    );
    cluster.create_topic("unbounded", 1, 3, &[]);
    let rt = runtime();
    for (topic, want_code, want_errors) in [
        (
            "bounded",
            ResponseError::InvalidTimestamp.code(),
            vec![0, 1],
        ),
        ("unbounded", 0, vec![]),
    ] {
        let leader = cluster.partition_states(topic).unwrap()[0].leader;
        let leader_addr = cluster.nodes[&leader].broker_addr();
        // produce_raw stamps every record at 1000 ms after the epoch.
        let (code, record_errors) = produce_raw(&rt, &leader_addr, topic, &[Some("a"), Some("b")]);
        assert_eq!(code, want_code, "{topic}");
        assert_eq!(record_errors, want_errors, "{topic}");
    }
}
