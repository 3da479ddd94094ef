//! Power cuts of a whole broker (with `FlushPolicy::EveryBatch`) on `durable-fs`'s page-cache
//! simulator, between topic creations and deletions, produces, offset commits and producer-id
//! allocations, with the background flusher and cleaner threads running. After each cut the
//! broker reopens (unclean shutdown) and must show exactly what it acknowledged: the topics
//! created and not deleted, every produced record of them in order, every committed offset,
//! and producer ids above every id handed out. The process that "died" cannot write anything
//! after the cut (its shutdown fails), as a real power loss.
//!
//! `BROKER_POWER_CUT_CASES` (default 60) and `POWER_CUT_SEED` (default: from the clock,
//! printed) control the campaign.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;

use broker_embedded::{
    Broker, BrokerConfig, FlushPolicy, IsolationLevel, NewTopic, OffsetAndMetadata, ProduceRecord,
    TopicPartition,
};
use durable_fs::sim::SimStorage;
use durable_fs::Storage;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const GROUP: &str = "power-cut-group";

#[derive(Default)]
struct Model {
    /// Topic name -> partition count, for topics whose creation returned and that were not
    /// deleted.
    topics: BTreeMap<String, u32>,
    /// Topics created with `flush.messages` left to the OS (their records may be lost, but
    /// only as a suffix).
    unflushed: std::collections::BTreeSet<String>,
    /// Acknowledged record values per partition, in order.
    records: BTreeMap<(String, i32), Vec<String>>,
    committed: BTreeMap<(String, i32), i64>,
    max_producer_id: Option<i64>,
    next_topic: u32,
}

fn read_values(broker: &Broker, topic: &str, partition: i32) -> Vec<String> {
    let mut offset = 0;
    let mut out = Vec::new();
    loop {
        let data = broker
            .read_partition(
                topic,
                partition,
                offset,
                4096,
                IsolationLevel::ReadUncommitted,
            )
            .unwrap();
        if data.records.is_empty() {
            return out;
        }
        let recs = broker_embedded::decode_fetched(topic, &data.records, offset).unwrap();
        offset = recs.last().unwrap().offset + 1;
        for r in recs {
            out.push(String::from_utf8(r.value.unwrap().to_vec()).unwrap());
        }
    }
}

fn config() -> BrokerConfig {
    let mut c = BrokerConfig::new("/data").with_flush_policy(FlushPolicy::EveryBatch);
    c.log_defaults.segment_bytes = 600;
    c
}

fn run_case(seed: u64) -> (usize, usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let sim = SimStorage::new();
    let broker = Broker::open_with_storage(config(), sim.shared()).unwrap();
    let mut m = Model::default();
    let ops = rng.random_range(1..30);
    for _ in 0..ops {
        match rng.random_range(0..100) {
            0..=14 => {
                let name = format!("t{}", m.next_topic);
                m.next_topic += 1;
                let partitions = rng.random_range(1..4);
                let mut new = NewTopic::new(name.clone(), partitions);
                if rng.random_bool(0.4) {
                    new = new.config("flush.messages", "1000000");
                    m.unflushed.insert(name.clone());
                }
                broker.create_topic(new).unwrap();
                m.topics.insert(name, partitions);
            }
            15..=69 if !m.topics.is_empty() => {
                let i = rng.random_range(0..m.topics.len());
                let (name, &parts) = m.topics.iter().nth(i).unwrap();
                let name = name.clone();
                let p = rng.random_range(0..parts) as i32;
                let n = rng.random_range(1..4);
                let list = m.records.entry((name.clone(), p)).or_default();
                let values: Vec<String> = (0..n)
                    .map(|j| format!("{name}/{p}/{}", list.len() + j))
                    .collect();
                let recs: Vec<ProduceRecord> = values
                    .iter()
                    .map(|v| ProduceRecord::new(format!("k{}", rng.random_range(0..5)), v.clone()))
                    .collect();
                broker.produce(&name, p, &recs).unwrap();
                list.extend(values);
            }
            70..=79 if !m.topics.is_empty() => {
                let i = rng.random_range(0..m.topics.len());
                let name = m.topics.keys().nth(i).unwrap().clone();
                let offset = rng.random_range(0..100);
                broker
                    .commit_offsets(
                        GROUP,
                        &[(
                            TopicPartition::new(name.clone(), 0),
                            OffsetAndMetadata {
                                offset,
                                leader_epoch: None,
                                metadata: String::new(),
                                commit_timestamp: 0,
                            },
                        )],
                    )
                    .unwrap();
                m.committed.insert((name, 0), offset);
            }
            80..=89 => {
                let id = broker.allocate_producer_id().unwrap();
                m.max_producer_id = Some(m.max_producer_id.map_or(id, |x| x.max(id)));
            }
            90..=95 if !m.topics.is_empty() => {
                let i = rng.random_range(0..m.topics.len());
                let name = m.topics.keys().nth(i).unwrap().clone();
                broker.delete_topic(&name).unwrap();
                m.topics.remove(&name);
                m.records.retain(|(t, _), _| *t != name);
                m.committed.retain(|(t, _), _| *t != name);
            }
            _ => {
                // Let the background threads (flusher, cleaner) run for a moment.
                std::thread::sleep(std::time::Duration::from_millis(rng.random_range(0..3)));
            }
        }
    }
    let before = sim.stats();
    sim.power_cut(rng.random());
    let lost = sim.stats().lost_dir_ops + sim.stats().lost_file_ops
        - before.lost_dir_ops
        - before.lost_file_ops;
    // The dead broker's shutdown fails against the cut storage; it must not panic or hang.
    drop(broker);

    let broker = Broker::open_with_storage(config(), sim.shared())
        .unwrap_or_else(|e| panic!("reopen after the power cut failed: {e}"));
    let mut listed: Vec<String> = broker
        .list_topics()
        .into_iter()
        .filter(|t| !t.starts_with("__"))
        .collect();
    listed.sort();
    let expected: Vec<String> = m.topics.keys().cloned().collect();
    assert_eq!(listed, expected, "topics after the cut");
    let mut checked = 0;
    for (name, &parts) in &m.topics {
        assert_eq!(broker.partition_count(name).unwrap(), parts, "{name}");
        for p in 0..parts as i32 {
            let want = m
                .records
                .get(&(name.clone(), p))
                .cloned()
                .unwrap_or_default();
            let got = read_values(&broker, name, p);
            if m.unflushed.contains(name) {
                assert!(
                    want.starts_with(&got),
                    "records of unflushed {name}-{p} are not a prefix: {got:?} vs {want:?}"
                );
            } else {
                assert_eq!(got, want, "records of {name}-{p}");
                checked += want.len();
            }
        }
    }
    for ((t, p), offset) in &m.committed {
        let c = broker
            .committed_offset(GROUP, &TopicPartition::new(t.clone(), *p))
            .unwrap_or_else(|| panic!("committed offset of {t}-{p} lost"));
        assert_eq!(c.offset, *offset, "committed offset of {t}-{p}");
    }
    if let Some(max) = m.max_producer_id {
        let next = broker.allocate_producer_id().unwrap();
        assert!(
            next > max,
            "producer id {next} handed out again (max before the cut {max})"
        );
    }
    // The broker works after recovery.
    broker
        .create_topic(NewTopic::new("after-the-cut", 1))
        .unwrap();
    broker
        .produce("after-the-cut", 0, &[ProduceRecord::value_only("x")])
        .unwrap();
    assert_eq!(read_values(&broker, "after-the-cut", 0), vec!["x"]);
    broker.shutdown().unwrap();
    assert!(sim.exists(Path::new("/data/.kafka_cleanshutdown")));
    (checked, usize::from(lost > 0))
}

#[test]
fn a_broker_shows_exactly_what_it_acknowledged_after_power_cuts() {
    let cases: u64 = std::env::var("BROKER_POWER_CUT_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let base: u64 = std::env::var("POWER_CUT_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    eprintln!("broker power-cut campaign: {cases} cases from seed {base} (POWER_CUT_SEED={base} to replay)");
    let (mut records, mut losing) = (0, 0);
    for i in 0..cases {
        let seed = base.wrapping_add(i);
        match std::panic::catch_unwind(|| run_case(seed)) {
            Ok((r, l)) => {
                records += r;
                losing += l;
            }
            Err(e) => {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                panic!("case seed {seed} failed: {msg}");
            }
        }
    }
    eprintln!(
        "checked {records} acknowledged records; {losing} of {cases} cuts destroyed unsynced data"
    );
    if cases >= 20 {
        assert!(records > 0 && losing > 0, "the campaign exercised nothing");
    }
}
