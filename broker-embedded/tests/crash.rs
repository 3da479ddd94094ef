//! Crash test with a real process: a child appends with fsync per batch and reports every
//! acknowledged offset on stdout; the parent SIGKILLs it at a random point, reopens the log and
//! checks that every acknowledged record is present and intact. Several rounds on one data
//! directory, so each round also recovers what the previous kill left behind.
//!
//! The child is this test binary itself, re-executed with `CRASH_CHILD_DIR` set.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use broker_embedded::{
    Broker, BrokerConfig, FetchOptions, FlushPolicy, NewTopic, OffsetSpec, ProduceRecord,
};
use rand::Rng;

const TOPIC: &str = "crash";
const PARTITIONS: i32 = 2;

fn payload(round: u32, seq: u64) -> String {
    // Variable-length values so batches straddle index intervals and segment boundaries.
    format!("r{round}-s{seq}-{}", "p".repeat((seq % 300) as usize))
}

fn config(dir: &std::path::Path) -> BrokerConfig {
    let mut c = BrokerConfig::new(dir).with_flush_policy(FlushPolicy::EveryBatch);
    c.cleaner_interval = None;
    c
}

/// Child mode: append forever, printing `ACK <partition> <base offset> <round> <first seq> <n>`
/// after each acknowledged (fsynced) append.
#[test]
#[ignore = "child-process entry of sigkill_loses_no_acknowledged_record"]
fn crash_child() {
    let Ok(dir) = std::env::var("CRASH_CHILD_DIR") else {
        return;
    };
    let round: u32 = std::env::var("CRASH_CHILD_ROUND").unwrap().parse().unwrap();
    let broker = Broker::open(config(std::path::Path::new(&dir))).unwrap();
    if !broker.topic_exists(TOPIC) {
        broker
            .create_topic(NewTopic::new(TOPIC, PARTITIONS as u32).config("segment.bytes", "20000"))
            .unwrap();
    }
    let mut out = std::io::stdout().lock();
    let mut seq = 0u64;
    loop {
        let partition = (seq % PARTITIONS as u64) as i32;
        let n = 1 + (seq % 4) as usize;
        let records: Vec<ProduceRecord> = (0..n as u64)
            .map(|i| ProduceRecord::new(format!("k{}", seq + i), payload(round, seq + i)))
            .collect();
        let info = broker.produce(TOPIC, partition, &records).unwrap();
        writeln!(
            out,
            "ACK {partition} {} {round} {seq} {n}",
            info.base_offset
        )
        .unwrap();
        out.flush().unwrap();
        seq += n as u64;
    }
}

struct Ack {
    partition: i32,
    offset: i64,
    round: u32,
    seq: u64,
}

#[test]
fn sigkill_loses_no_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::rng();
    let mut acked: Vec<Ack> = Vec::new();
    for round in 0..5u32 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("CRASH_CHILD_DIR", dir.path())
            .env("CRASH_CHILD_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let kill_after = rng.random_range(20..400);
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut lines = BufReader::new(stdout).lines();
        let mut seen = 0;
        while seen < kill_after && Instant::now() < deadline {
            let Some(Ok(line)) = lines.next() else { break };
            let Some(rest) = line.strip_prefix("ACK ") else {
                continue;
            };
            let f: Vec<&str> = rest.split(' ').collect();
            let (partition, offset, r, seq, n): (i32, i64, u32, u64, u64) = (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
                f[3].parse().unwrap(),
                f[4].parse().unwrap(),
            );
            for i in 0..n {
                acked.push(Ack {
                    partition,
                    offset: offset + i as i64,
                    round: r,
                    seq: seq + i,
                });
            }
            seen += 1;
        }
        assert_eq!(
            seen, kill_after,
            "child produced acknowledgements (round {round})"
        );
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        // Reopen (unclean: recovery runs) and check every acknowledged record.
        let broker = Broker::open(config(dir.path())).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for p in 0..PARTITIONS {
            let end = broker
                .list_offsets(TOPIC, p, OffsetSpec::Latest)
                .unwrap()
                .unwrap()
                .offset;
            let opts = FetchOptions {
                max_wait: Duration::ZERO,
                ..FetchOptions::default()
            };
            let mut got = std::collections::HashMap::new();
            let mut next = 0;
            while next < end {
                let recs = rt
                    .block_on(broker.fetch_records(TOPIC, p, next, opts))
                    .unwrap();
                assert!(!recs.is_empty());
                for r in recs {
                    next = r.offset + 1;
                    got.insert(r.offset, r.value.unwrap());
                }
            }
            for a in acked.iter().filter(|a| a.partition == p) {
                let v = got.get(&a.offset).unwrap_or_else(|| {
                    panic!("acknowledged offset {} of partition {p} lost", a.offset)
                });
                assert_eq!(
                    &v[..],
                    payload(a.round, a.seq).as_bytes(),
                    "record at {p}/{} intact",
                    a.offset
                );
            }
        }
        broker.shutdown().unwrap();
        // Start the next round from an unclean state again: remove the clean marker the check
        // just wrote, as if the check itself had crashed.
        if round % 2 == 1 {
            std::fs::remove_file(dir.path().join(".kafka_cleanshutdown")).unwrap();
        }
    }
    assert!(acked.len() > 100);
}
