//! The in-process `Broker` handle: topics, configs, produce/fetch, offsets lookups, committed
//! offsets, producer ids and idempotent producer state, all across restarts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::Duration;

use broker_embedded::record::{encode_batch, BatchSpec, Record};
use broker_embedded::{
    AlterConfigOp, AppendOrigin, Broker, BrokerConfig, BrokerError, ConfigSource, FetchOptions,
    NewTopic, OffsetAndMetadata, OffsetSpec, ProduceRecord, TopicPartition,
};
use bytes::Bytes;
use kafka_protocol::ResponseError;

fn open(dir: &std::path::Path) -> Broker {
    let mut c = BrokerConfig::new(dir);
    c.cleaner_interval = None;
    Broker::open(c).unwrap()
}

#[test]
fn topic_lifecycle_and_validation() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    let id = b
        .create_topic(NewTopic::new("orders", 3).config("retention.ms", "1000"))
        .unwrap();
    assert_eq!(b.list_topics(), vec!["orders".to_string()]);
    let d = b.describe_topic("orders").unwrap();
    assert_eq!(d.topic_id, id);
    assert_eq!(d.partitions.len(), 3);
    let retention = d.configs.iter().find(|c| c.name == "retention.ms").unwrap();
    assert_eq!(
        (retention.value.as_str(), retention.source),
        ("1000", ConfigSource::TopicOverride)
    );
    let cleanup = d
        .configs
        .iter()
        .find(|c| c.name == "cleanup.policy")
        .unwrap();
    assert_eq!(
        (cleanup.value.as_str(), cleanup.source),
        ("delete", ConfigSource::Default)
    );

    let err = |r: Result<uuid::Uuid, BrokerError>| r.unwrap_err().kafka_error();
    assert_eq!(
        err(b.create_topic(NewTopic::new("orders", 1))),
        ResponseError::TopicAlreadyExists
    );
    assert_eq!(
        err(b.create_topic(NewTopic::new("bad/name", 1))),
        ResponseError::InvalidTopicException
    );
    assert_eq!(
        err(b.create_topic(NewTopic::new("..", 1))),
        ResponseError::InvalidTopicException
    );
    assert_eq!(
        err(b.create_topic(NewTopic::new("zero", 0))),
        ResponseError::InvalidPartitions
    );
    assert_eq!(
        err(b.create_topic(NewTopic::new("rf", 1).replication_factor(3))),
        ResponseError::InvalidReplicationFactor
    );
    assert_eq!(
        err(b.create_topic(NewTopic::new("cfg", 1).config("retention.msx", "1"))),
        ResponseError::InvalidConfig
    );
    assert_eq!(
        err(b.create_topic(NewTopic::new("cfg", 1).config("retention.ms", "soon"))),
        ResponseError::InvalidConfig
    );
    b.create_topic(NewTopic::new("a.b", 1)).unwrap();
    assert_eq!(
        err(b.create_topic(NewTopic::new("a_b", 1))),
        ResponseError::InvalidTopicException
    );

    // Alter configs: incremental set/delete, and all-or-nothing validation.
    b.alter_topic_configs(
        "orders",
        &[
            AlterConfigOp::Set("cleanup.policy".into(), "compact".into()),
            AlterConfigOp::Delete("retention.ms".into()),
        ],
    )
    .unwrap();
    let d = b.describe_topic("orders").unwrap();
    let get = |k: &str| d.configs.iter().find(|c| c.name == k).unwrap().clone();
    assert_eq!(get("cleanup.policy").value, "compact");
    assert_eq!(get("retention.ms").source, ConfigSource::Default);
    assert!(b
        .alter_topic_configs(
            "orders",
            &[AlterConfigOp::Set("segment.bytes".into(), "x".into())]
        )
        .is_err());
    assert_eq!(b.describe_topic("orders").unwrap().configs, d.configs);
    b.set_topic_configs(
        "orders",
        BTreeMap::from([("retention.bytes".to_string(), "100".to_string())]),
    )
    .unwrap();
    assert_eq!(
        b.describe_topic("orders")
            .unwrap()
            .configs
            .iter()
            .find(|c| c.name == "cleanup.policy")
            .unwrap()
            .value,
        "delete",
        "legacy AlterConfigs replaces every override"
    );

    b.create_partitions("orders", 5).unwrap();
    assert_eq!(b.partition_count("orders").unwrap(), 5);
    assert_eq!(
        b.create_partitions("orders", 2).unwrap_err().kafka_error(),
        ResponseError::InvalidPartitions
    );
    b.produce("orders", 4, &[ProduceRecord::new("k", "v")])
        .unwrap();

    // Everything survives a restart, including the topic id.
    drop(b);
    let b = open(dir.path());
    let d = b.describe_topic("orders").unwrap();
    assert_eq!(d.topic_id, id);
    assert_eq!(d.partitions.len(), 5);
    assert_eq!(d.partitions[4].offsets.log_end_offset, 1);

    b.delete_topic("orders").unwrap();
    assert!(!b.topic_exists("orders"));
    assert!(!dir.path().join("orders-0").exists());
    assert_eq!(
        b.produce("orders", 0, &[ProduceRecord::new("k", "v")])
            .unwrap_err()
            .kafka_error(),
        ResponseError::UnknownTopicOrPartition
    );
    // Re-created topics get a new id and start empty.
    let id2 = b.create_topic(NewTopic::new("orders", 1)).unwrap();
    assert_ne!(id, id2);
    assert_eq!(b.partition_offsets("orders", 0).unwrap().log_end_offset, 0);
}

#[tokio::test]
async fn produce_fetch_and_list_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    b.create_topic(NewTopic::new("t", 2)).unwrap();
    for i in 0..10i64 {
        let info = b
            .produce(
                "t",
                1,
                &[ProduceRecord::new(format!("k{i}"), format!("v{i}"))
                    .with_timestamp(1_000 + i * 10)],
            )
            .unwrap();
        assert_eq!(info.base_offset, i);
    }
    let recs = b
        .fetch_records("t", 1, 3, FetchOptions::default())
        .await
        .unwrap();
    assert_eq!(recs.len(), 7);
    assert_eq!(recs[0].offset, 3);
    assert_eq!(recs[0].value.as_deref(), Some(&b"v3"[..]));

    // KIP-74: a max_bytes below the first batch still returns that batch.
    let tiny = FetchOptions {
        max_bytes: 1,
        ..FetchOptions::default()
    };
    let recs = b.fetch_records("t", 1, 0, tiny).await.unwrap();
    assert_eq!(recs.len(), 1);

    assert_eq!(
        b.list_offsets("t", 1, OffsetSpec::Earliest)
            .unwrap()
            .unwrap()
            .offset,
        0
    );
    assert_eq!(
        b.list_offsets("t", 1, OffsetSpec::Latest)
            .unwrap()
            .unwrap()
            .offset,
        10
    );
    let by_ts = b
        .list_offsets("t", 1, OffsetSpec::Timestamp(1_025))
        .unwrap()
        .unwrap();
    assert_eq!((by_ts.offset, by_ts.timestamp), (3, 1_030));
    assert_eq!(
        b.list_offsets("t", 1, OffsetSpec::Timestamp(5_000))
            .unwrap(),
        None
    );

    // Out of range and unknown partitions are typed errors.
    let e = b
        .fetch("t", 1, 11, FetchOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.kafka_error(), ResponseError::OffsetOutOfRange);
    let e = b
        .fetch("t", 7, 0, FetchOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.kafka_error(), ResponseError::UnknownTopicOrPartition);

    // A fetch at the log end waits for new data and wakes up when it arrives.
    let b2 = b.clone();
    let waiter = tokio::spawn(async move {
        let opts = FetchOptions {
            max_wait: Duration::from_secs(10),
            ..FetchOptions::default()
        };
        b2.fetch_records("t", 0, 0, opts).await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    b.produce("t", 0, &[ProduceRecord::value_only("late")])
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].key, None);

    // And returns empty after max_wait when nothing comes.
    let opts = FetchOptions {
        max_wait: Duration::from_millis(20),
        ..FetchOptions::default()
    };
    assert!(b.fetch_records("t", 0, 1, opts).await.unwrap().is_empty());
}

#[test]
fn bad_batches_are_rejected_with_kafka_errors() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    b.create_topic(NewTopic::new("t", 1).config("max.message.bytes", "200"))
        .unwrap();
    b.create_topic(NewTopic::new("c", 1).config("cleanup.policy", "compact"))
        .unwrap();
    let rec = |v: &[u8]| Record {
        offset: 0,
        timestamp: 1,
        key: Some(Bytes::from_static(b"k")),
        value: Some(Bytes::copy_from_slice(v)),
        headers: vec![],
    };
    let mut big = encode_batch(&BatchSpec::default(), &[rec(&[0u8; 500])]).unwrap();
    let e = b
        .append_batches("t", 0, &mut big, AppendOrigin::Client)
        .unwrap_err();
    assert_eq!(e.kafka_error(), ResponseError::MessageTooLarge);

    let mut corrupt = encode_batch(&BatchSpec::default(), &[rec(b"v")]).unwrap();
    let n = corrupt.len();
    corrupt[n - 1] ^= 0xff;
    let e = b
        .append_batches("t", 0, &mut corrupt, AppendOrigin::Client)
        .unwrap_err();
    assert_eq!(e.kafka_error(), ResponseError::CorruptMessage);

    let mut garbage = vec![7u8; 100];
    let e = b
        .append_batches("t", 0, &mut garbage, AppendOrigin::Client)
        .unwrap_err();
    assert_eq!(e.kafka_error(), ResponseError::CorruptMessage);
    let e = b
        .append_batches("t", 0, &mut [], AppendOrigin::Client)
        .unwrap_err();
    assert_eq!(e.kafka_error(), ResponseError::CorruptMessage);

    // Clients may not write control batches, nor two batches at once; transactional
    // batches are accepted (tests/transactions.rs covers them).
    let control = BatchSpec {
        control: true,
        producer_id: 1,
        producer_epoch: 0,
        ..BatchSpec::default()
    };
    let mut batch = encode_batch(&control, &[rec(b"v")]).unwrap();
    let e = b
        .append_batches("t", 0, &mut batch, AppendOrigin::Client)
        .unwrap_err();
    assert_eq!(e.kafka_error(), ResponseError::InvalidRecord);
    let mut two = encode_batch(&BatchSpec::default(), &[rec(b"a")]).unwrap();
    two.extend(encode_batch(&BatchSpec::default(), &[rec(b"b")]).unwrap());
    let e = b
        .append_batches("t", 0, &mut two, AppendOrigin::Client)
        .unwrap_err();
    assert_eq!(e.kafka_error(), ResponseError::InvalidRecord);

    let e = b
        .produce("c", 0, &[ProduceRecord::value_only("no key")])
        .unwrap_err();
    assert_eq!(e.kafka_error(), ResponseError::InvalidRecord);
    assert_eq!(
        b.partition_offsets("t", 0).unwrap().log_end_offset,
        0,
        "nothing was appended"
    );
    assert_eq!(b.partition_offsets("c", 0).unwrap().log_end_offset, 0);
    let transactional = BatchSpec {
        transactional: true,
        producer_id: 1,
        producer_epoch: 0,
        base_sequence: 0,
        ..BatchSpec::default()
    };
    let mut batch = encode_batch(&transactional, &[rec(b"v")]).unwrap();
    b.append_batches("t", 0, &mut batch, AppendOrigin::Client)
        .unwrap();
    let o = b.partition_offsets("t", 0).unwrap();
    assert_eq!((o.log_end_offset, o.last_stable_offset), (1, 0));
}

#[test]
fn committed_offsets_survive_restarts_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    let tp = |p| TopicPartition::new("in", p);
    b.commit_offsets(
        "app",
        &[
            (tp(0), OffsetAndMetadata::new(5)),
            (tp(1), OffsetAndMetadata::new(9)),
        ],
    )
    .unwrap();
    b.commit_offsets("app", &[(tp(0), OffsetAndMetadata::new(7))])
        .unwrap();
    b.commit_offsets("other", &[(tp(0), OffsetAndMetadata::new(1))])
        .unwrap();
    assert_eq!(b.committed_offset("app", &tp(0)).unwrap().offset, 7);
    assert!(b.topic_exists(broker_embedded::OFFSETS_TOPIC));
    assert_eq!(
        b.partition_count(broker_embedded::OFFSETS_TOPIC).unwrap(),
        50
    );
    drop(b);

    let b = open(dir.path());
    let app = b.committed_offsets("app");
    assert_eq!(app.len(), 2);
    assert_eq!(app[&tp(0)].offset, 7);
    assert_eq!(app[&tp(1)].offset, 9);
    assert_eq!(
        b.groups_with_offsets(),
        vec!["app".to_string(), "other".to_string()]
    );
    assert_eq!(b.delete_group_offsets("other").unwrap(), 1);
    // Compaction keeps the latest commit per key and the tombstone for a while. It only
    // touches sealed segments, so roll every offsets partition first.
    for p in 0..50 {
        b.roll_segment(broker_embedded::OFFSETS_TOPIC, p).unwrap();
    }
    let stats = b.run_cleaner_pass().unwrap();
    assert!(
        stats.segments_cleaned > 0 && stats.records_removed > 0,
        "the superseded commit of app/in-0 (5, then 7) was compacted away: {stats:?}"
    );
    drop(b);

    let b = open(dir.path());
    assert_eq!(b.committed_offset("app", &tp(0)).unwrap().offset, 7);
    assert!(b.committed_offsets("other").is_empty());
}

#[test]
fn producer_ids_are_never_reused_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    let first: Vec<i64> = (0..5).map(|_| b.allocate_producer_id().unwrap()).collect();
    assert_eq!(first, vec![0, 1, 2, 3, 4]);
    drop(b);
    let b = open(dir.path());
    let next = b.allocate_producer_id().unwrap();
    assert!(next > 4, "got {next}");
}

fn idempotent_batch(pid: i64, epoch: i16, seq: i32, n: usize) -> Vec<u8> {
    let recs: Vec<Record> = (0..n)
        .map(|i| Record {
            offset: i as i64,
            timestamp: 10,
            key: None,
            value: Some(Bytes::from(format!("s{}", seq + i as i32))),
            headers: vec![],
        })
        .collect();
    let spec = BatchSpec {
        producer_id: pid,
        producer_epoch: epoch,
        base_sequence: seq,
        ..BatchSpec::default()
    };
    encode_batch(&spec, &recs).unwrap()
}

#[test]
fn idempotent_producer_state_dedupes_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    b.create_topic(NewTopic::new("t", 1)).unwrap();
    let pid = b.allocate_producer_id().unwrap();
    let a = b
        .append_batches(
            "t",
            0,
            &mut idempotent_batch(pid, 0, 0, 3),
            AppendOrigin::Client,
        )
        .unwrap();
    let c = b
        .append_batches(
            "t",
            0,
            &mut idempotent_batch(pid, 0, 3, 2),
            AppendOrigin::Client,
        )
        .unwrap();
    assert_eq!((a.base_offset, c.base_offset), (0, 3));
    // A retry of the first batch gets its original offsets back and writes nothing.
    let dup = b
        .append_batches(
            "t",
            0,
            &mut idempotent_batch(pid, 0, 0, 3),
            AppendOrigin::Client,
        )
        .unwrap();
    assert!(dup.duplicate);
    assert_eq!((dup.base_offset, dup.last_offset), (0, 2));
    // A gap is out of order; an older epoch is fenced.
    let e = b
        .append_batches(
            "t",
            0,
            &mut idempotent_batch(pid, 0, 9, 1),
            AppendOrigin::Client,
        )
        .unwrap_err();
    assert_eq!(e.kafka_error(), ResponseError::OutOfOrderSequenceNumber);
    b.append_batches(
        "t",
        0,
        &mut idempotent_batch(pid, 1, 0, 1),
        AppendOrigin::Client,
    )
    .unwrap();
    let e = b
        .append_batches(
            "t",
            0,
            &mut idempotent_batch(pid, 0, 5, 1),
            AppendOrigin::Client,
        )
        .unwrap_err();
    assert_eq!(e.kafka_error(), ResponseError::InvalidProducerEpoch);
    assert_eq!(b.partition_offsets("t", 0).unwrap().log_end_offset, 6);
    drop(b);

    let b = open(dir.path());
    let state = b.producer_state("t", 0, pid).unwrap().unwrap();
    assert_eq!(state.epoch, 1);
    let dup = b
        .append_batches(
            "t",
            0,
            &mut idempotent_batch(pid, 1, 0, 1),
            AppendOrigin::Client,
        )
        .unwrap();
    assert!(dup.duplicate, "duplicate detection survives a restart");
    assert_eq!(dup.base_offset, 5);
}

#[test]
fn data_dir_is_locked_against_a_second_broker() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    let e = Broker::open(BrokerConfig::new(dir.path())).unwrap_err();
    assert!(matches!(e, BrokerError::DataDirLocked(_)), "{e}");
    b.shutdown().unwrap();
    assert!(matches!(b.produce("x", 0, &[]), Err(BrokerError::Closed)));
    drop(b);
    open(dir.path());
}

#[test]
fn log_append_time_topics_stamp_the_broker_time() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    b.create_topic(NewTopic::new("t", 1).config("message.timestamp.type", "LogAppendTime"))
        .unwrap();
    let info = b
        .produce("t", 0, &[ProduceRecord::new("k", "v").with_timestamp(5)])
        .unwrap();
    assert!(info.log_append_time > 1_600_000_000_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let recs = rt
        .block_on(b.fetch_records("t", 0, 0, FetchOptions::default()))
        .unwrap();
    assert_eq!(recs[0].timestamp, info.log_append_time);
}
