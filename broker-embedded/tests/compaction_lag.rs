//! `max.compaction.lag.ms` and the background compaction check (`log.cleaner.backoff.ms`,
//! `BrokerConfig::compaction_check_interval`): a compacted log whose dirty ratio stays below
//! `min.cleanable.dirty.ratio` is compacted once its oldest dirty segment is older than
//! `max.compaction.lag.ms`, and the background cleaner checks for that (and for the dirty
//! ratio) on its own short interval, not only every `log.retention.check.interval.ms`
//! (librdkafka's 0077 compaction test relies on both). Also: `file.delete.delay.ms` is an
//! accepted topic config.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use broker_embedded::record::decode_records;
use broker_embedded::{Broker, BrokerConfig, IsolationLevel, NewTopic, ProduceRecord};

/// Every (key, value) of partition 0 of `topic`, in offset order (a read stops at the end of a
/// segment, so this reads on from the next offset up to the high watermark).
fn contents(b: &Broker, topic: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let data = b
            .read_partition(topic, 0, offset, 64 << 20, IsolationLevel::ReadUncommitted)
            .unwrap();
        let bytes = data.records;
        if bytes.is_empty() {
            assert!(offset >= data.high_watermark, "nothing read at {offset}");
            return out;
        }
        let mut pos = 0;
        while pos + 12 <= bytes.len() {
            let len = i32::from_be_bytes(bytes[pos + 8..pos + 12].try_into().unwrap()) as usize;
            let batch = &bytes[pos..pos + 12 + len];
            for r in decode_records(batch).unwrap() {
                if r.offset < offset {
                    continue;
                }
                let s = |b: Option<bytes::Bytes>| String::from_utf8(b.unwrap_or_default().to_vec());
                out.push((s(r.key).unwrap(), s(r.value).unwrap()));
                offset = r.offset + 1;
            }
            pos += 12 + len;
        }
    }
}

fn produce(b: &Broker, topic: &str, pairs: &[(&str, &str)]) {
    for (k, v) in pairs {
        b.produce(
            topic,
            0,
            &[ProduceRecord::new(k.to_string(), v.to_string())],
        )
        .unwrap();
    }
}

fn compacted_topic(b: &Broker, name: &str, max_lag_ms: &str) {
    b.create_topic(
        NewTopic::new(name, 1)
            .config("cleanup.policy", "compact")
            .config("min.cleanable.dirty.ratio", "0.9")
            .config("max.compaction.lag.ms", max_lag_ms)
            .config("file.delete.delay.ms", "10000"),
    )
    .unwrap();
}

#[test]
fn an_overdue_log_is_compacted_below_the_dirty_ratio() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = BrokerConfig::new(dir.path());
    c.cleaner_interval = None;
    let b = Broker::open(c).unwrap();
    compacted_topic(&b, "c", "60000");
    let cfg = b.describe_topic("c").unwrap().configs;
    assert!(
        cfg.iter()
            .any(|e| e.name == "file.delete.delay.ms" && e.value == "10000"),
        "file.delete.delay.ms is accepted and reported: {cfg:?}"
    );

    // A clean head: 40 records over two keys, compacted (forced) down to two.
    let head: Vec<(String, String)> = (0..40)
        .map(|i| (format!("k{}", i % 2), format!("v{i}")))
        .collect();
    let head: Vec<(&str, &str)> = head.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    produce(&b, "c", &head);
    b.roll_segment("c", 0).unwrap();
    b.run_cleaner_pass().unwrap();
    assert_eq!(contents(&b, "c").len(), 2);

    // A small dirty tail (a dirty ratio far below 0.9) that supersedes k0, sealed.
    produce(&b, "c", &[("k0", "new")]);
    b.roll_segment("c", 0).unwrap();
    let now = broker_now();

    // Not yet overdue: the dirty ratio decides, and it is too low.
    let s = b.run_cleaner_pass_at(now, false).unwrap();
    assert_eq!(s.segments_cleaned, 0, "{s:?}");
    assert_eq!(contents(&b, "c").len(), 3);

    // Older than max.compaction.lag.ms: compacted whatever the ratio.
    let s = b.run_cleaner_pass_at(now + 60_001, false).unwrap();
    assert!(s.records_removed >= 1, "{s:?}");
    let got = contents(&b, "c");
    assert_eq!(
        got,
        vec![("k1".into(), "v39".into()), ("k0".into(), "new".into())],
        "{got:?}"
    );
}

#[test]
fn the_background_cleaner_checks_compaction_on_its_own_interval() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = BrokerConfig::new(dir.path());
    // Retention once an hour, compaction checks every 50 ms.
    c.cleaner_interval = Some(Duration::from_secs(3600));
    c.compaction_check_interval = Duration::from_millis(50);
    let b = Broker::open(c).unwrap();
    compacted_topic(&b, "c", "100");

    // All dirty: compacted by the dirty ratio at the next check.
    produce(&b, "c", &[("a", "1"), ("a", "2"), ("b", "1"), ("a", "3")]);
    b.roll_segment("c", 0).unwrap();
    wait_for(&b, "c", &[("b", "1"), ("a", "3")]);

    // A small dirty tail: the ratio stays below 0.9, max.compaction.lag.ms (100 ms) decides.
    produce(&b, "c", &[("b", "2")]);
    b.roll_segment("c", 0).unwrap();
    wait_for(&b, "c", &[("a", "3"), ("b", "2")]);
}

fn wait_for(b: &Broker, topic: &str, want: &[(&str, &str)]) {
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = contents(b, topic);
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not compacted in 20 s: {got:?}, want {want:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn broker_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
