//! Compaction and retention with exact expected survivors.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use broker_embedded::{Broker, BrokerConfig, FetchOptions, NewTopic, OffsetSpec, ProduceRecord};
use bytes::Bytes;

fn open(dir: &std::path::Path) -> Broker {
    let mut c = BrokerConfig::new(dir);
    c.cleaner_interval = None;
    Broker::open(c).unwrap()
}

fn put(b: &Broker, t: &str, k: &str, v: Option<&str>, ts: i64) {
    let rec = ProduceRecord {
        key: Some(Bytes::copy_from_slice(k.as_bytes())),
        value: v.map(|v| Bytes::copy_from_slice(v.as_bytes())),
        headers: vec![],
        timestamp: Some(ts),
    };
    b.produce(t, 0, &[rec]).unwrap();
}

fn all(b: &Broker, t: &str) -> Vec<(i64, String, Option<String>)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let start = b
        .list_offsets(t, 0, OffsetSpec::Earliest)
        .unwrap()
        .unwrap()
        .offset;
    let opts = FetchOptions {
        max_wait: std::time::Duration::ZERO,
        ..FetchOptions::default()
    };
    let mut out = Vec::new();
    let mut offset = start;
    loop {
        let recs = rt.block_on(b.fetch_records(t, 0, offset, opts)).unwrap();
        let Some(last) = recs.last() else { break };
        offset = last.offset + 1;
        out.extend(recs.into_iter().map(|r| {
            (
                r.offset,
                String::from_utf8(r.key.unwrap().to_vec()).unwrap(),
                r.value.map(|v| String::from_utf8(v.to_vec()).unwrap()),
            )
        }));
    }
    out
}

fn kv(o: i64, k: &str, v: Option<&str>) -> (i64, String, Option<String>) {
    (o, k.to_string(), v.map(str::to_string))
}

#[test]
fn compaction_keeps_latest_per_key_and_never_touches_the_active_segment() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    b.create_topic(
        NewTopic::new("c", 1)
            .config("cleanup.policy", "compact")
            .config("delete.retention.ms", "1000"),
    )
    .unwrap();
    put(&b, "c", "a", Some("1"), 10); // 0
    put(&b, "c", "b", Some("1"), 10); // 1
    put(&b, "c", "a", Some("2"), 10); // 2
    put(&b, "c", "c", Some("1"), 10); // 3
    b.roll_segment("c", 0).unwrap();
    put(&b, "c", "b", None, 10); // 4: tombstone
    put(&b, "c", "a", Some("3"), 10); // 5
    b.roll_segment("c", 0).unwrap();
    // Active segment: a later value for "c" and a duplicate pair that must stay untouched.
    put(&b, "c", "c", Some("2"), 10); // 6
    put(&b, "c", "d", Some("1"), 10); // 7
    put(&b, "c", "d", Some("2"), 10); // 8

    let now = 1_000_000;
    let stats = b.run_cleaner_pass_at(now, true).unwrap();
    assert_eq!(stats.segments_cleaned, 2);
    assert_eq!(stats.records_removed, 3, "a@0, b@1, a@2");
    assert_eq!(
        all(&b, "c"),
        vec![
            kv(3, "c", Some("1")), // the newer "c" is in the active segment: not in the map
            kv(4, "b", None),      // tombstone kept until delete.retention.ms passes
            kv(5, "a", Some("3")),
            kv(6, "c", Some("2")),
            kv(7, "d", Some("1")),
            kv(8, "d", Some("2")),
        ]
    );
    // Offsets are preserved and the log end is unchanged.
    assert_eq!(
        b.list_offsets("c", 0, OffsetSpec::Latest)
            .unwrap()
            .unwrap()
            .offset,
        9
    );

    // Before the delete horizon the tombstone stays; after it, it goes.
    b.run_cleaner_pass_at(now + 500, true).unwrap();
    assert!(all(&b, "c").contains(&kv(4, "b", None)));
    b.roll_segment("c", 0).unwrap();
    b.run_cleaner_pass_at(now + 1_001, true).unwrap();
    assert_eq!(
        all(&b, "c"),
        vec![
            kv(5, "a", Some("3")),
            kv(6, "c", Some("2")),
            kv(8, "d", Some("2"))
        ]
    );

    // Survives a restart (the cleaned segments replaced the originals on disk).
    drop(b);
    let b = open(dir.path());
    assert_eq!(
        all(&b, "c"),
        vec![
            kv(5, "a", Some("3")),
            kv(6, "c", Some("2")),
            kv(8, "d", Some("2"))
        ]
    );
    // Appends continue after the last offset.
    put(&b, "c", "e", Some("1"), 10);
    assert_eq!(
        b.list_offsets("c", 0, OffsetSpec::Latest)
            .unwrap()
            .unwrap()
            .offset,
        10
    );
}

#[test]
fn retention_by_time_and_size_deletes_whole_segments() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    b.create_topic(NewTopic::new("r", 1).config("retention.ms", "1000"))
        .unwrap();
    // Three sealed segments of two records each, with increasing timestamps.
    for (i, ts) in [100, 200, 1_100, 1_200, 2_100, 2_200].iter().enumerate() {
        put(&b, "r", &format!("k{i}"), Some("v"), *ts);
        if i % 2 == 1 {
            b.roll_segment("r", 0).unwrap();
        }
    }
    put(&b, "r", "k6", Some("v"), 3_000); // active segment
                                          // At now=2_250 segment 1 (max ts 200) and 2 (max 1_200) are older than 1000 ms.
    let stats = b.run_cleaner_pass_at(2_250, true).unwrap();
    assert_eq!(stats.segments_deleted, 2);
    assert_eq!(
        b.list_offsets("r", 0, OffsetSpec::Earliest)
            .unwrap()
            .unwrap()
            .offset,
        4
    );
    let offsets: Vec<i64> = all(&b, "r").iter().map(|r| r.0).collect();
    assert_eq!(offsets, vec![4, 5, 6]);
    // Fetching below the log start is out of range.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let e = rt
        .block_on(b.fetch("r", 0, 1, FetchOptions::default()))
        .unwrap_err();
    assert_eq!(
        e.kafka_error(),
        kafka_protocol::ResponseError::OffsetOutOfRange
    );

    // Everything expired, the active segment included: it is rolled and deleted too.
    let stats = b.run_cleaner_pass_at(10_000, true).unwrap();
    assert_eq!(stats.segments_deleted, 2);
    let earliest = b
        .list_offsets("r", 0, OffsetSpec::Earliest)
        .unwrap()
        .unwrap()
        .offset;
    assert_eq!(earliest, 7);
    assert!(all(&b, "r").is_empty());
    put(&b, "r", "k7", Some("v"), 20_000);
    assert_eq!(all(&b, "r"), vec![kv(7, "k7", Some("v"))]);

    // Size: with three sealed segments of known size, retention.bytes keeps the newest that fit.
    b.create_topic(NewTopic::new("s", 1)).unwrap();
    for i in 0..6 {
        put(&b, "s", &format!("k{i}"), Some("0123456789"), 5);
        b.roll_segment("s", 0).unwrap();
    }
    let seg_size = b.partition_offsets("s", 0).unwrap().size_bytes / 6;
    // Kafka deletes an old segment only while what remains is still at least retention.bytes.
    let set_retention = |bytes: u64| {
        b.alter_topic_configs(
            "s",
            &[broker_embedded::AlterConfigOp::Set(
                "retention.bytes".into(),
                bytes.to_string(),
            )],
        )
        .unwrap();
        b.run_cleaner_pass_at(10, true).unwrap();
        all(&b, "s").iter().map(|r| r.0).collect::<Vec<i64>>()
    };
    assert_eq!(set_retention(seg_size * 3 + 1), vec![2, 3, 4, 5]);
    assert_eq!(set_retention(seg_size * 2), vec![4, 5]);
}
