//! Exhaustive recovery sweeps on `durable-fs`'s simulator (in memory, so every case is cheap):
//! every truncation length and every single-byte flip (three patterns) in the last two batches
//! of a segment, fields outside the CRC included (base offset, batch length, partition leader
//! epoch, magic); every truncation and flip of the segment's `.index`, `.timeindex` and
//! producer-state `.snapshot`, and of the cleaner checkpoint.
//!
//! Reopening must never panic or fail, never serve a record that differs from what was
//! appended (key, value, timestamp, offset), and after damage to the log itself truncate
//! exactly at the first bad batch. A flip in the partition leader epoch (not covered by the CRC
//! and not part of any record) may leave the batch in place.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use broker_embedded::record::{encode_batch, BatchIter, BatchSpec, Record};
use broker_embedded::{AppendOrigin, IsolationLevel, LogConfig, PartitionLog};
use bytes::Bytes;
use durable_fs::sim::SimStorage;
use durable_fs::{OpenMode, Storage};

const DIR: &str = "/data/t-0";
const SEGMENT: &str = "/data/t-0/00000000000000000000.log";
const PRODUCER_ID: i64 = 11;
/// Byte range of the partition leader epoch in a batch header.
const LEADER_EPOCH: std::ops::Range<usize> = 12..16;

fn config() -> Arc<LogConfig> {
    Arc::new(LogConfig {
        segment_bytes: 1 << 20,
        index_interval_bytes: 1,
        ..LogConfig::default()
    })
}

/// One batch of the prepared log: its records (offsets assigned) and byte range.
struct Batch {
    records: Vec<Record>,
    start: usize,
    end: usize,
}

struct Prepared {
    sim: SimStorage,
    batches: Vec<Batch>,
    segment: Vec<u8>,
}

fn records(n: usize, first_offset: i64, tag: usize) -> Vec<Record> {
    (0..n)
        .map(|i| Record {
            offset: first_offset + i as i64,
            timestamp: 1_000 + (tag * 10 + i) as i64,
            key: Some(Bytes::from(format!("key-{tag}-{i}"))),
            value: Some(Bytes::from(format!("value-{tag}-{i}-{}", "x".repeat(tag)))),
            headers: vec![],
        })
        .collect()
}

/// A log with six batches (the last two idempotent), closed cleanly.
fn prepare() -> Prepared {
    let sim = SimStorage::new();
    let log = PartitionLog::open_with_storage(
        sim.shared(),
        PathBuf::from(DIR),
        "t",
        0,
        config(),
        true,
        0,
    )
    .unwrap();
    let mut next = 0i64;
    let mut seq = 0;
    let mut batches = Vec::new();
    for tag in 0..6 {
        let n = 1 + tag % 3;
        let recs = records(n, 0, tag);
        let spec = if tag >= 4 {
            let s = BatchSpec {
                producer_id: PRODUCER_ID,
                producer_epoch: 0,
                base_sequence: seq,
                ..BatchSpec::default()
            };
            seq += n as i32;
            s
        } else {
            BatchSpec::default()
        };
        let mut bytes = encode_batch(&spec, &recs).unwrap();
        let info = log.append(&mut bytes, AppendOrigin::Client, 0).unwrap();
        assert_eq!(info.base_offset, next);
        batches.push(Batch {
            records: records(n, next, tag),
            start: 0,
            end: 0,
        });
        next += n as i64;
    }
    log.close().unwrap();
    drop(log);
    let segment = sim.read(Path::new(SEGMENT)).unwrap();
    let mut pos = 0;
    for (b, item) in batches.iter_mut().zip(BatchIter::new(&segment)) {
        let item = item.unwrap();
        b.start = pos;
        pos += item.bytes.len();
        b.end = pos;
    }
    assert_eq!(
        pos,
        segment.len(),
        "the segment holds exactly the six batches"
    );
    Prepared {
        sim,
        batches,
        segment,
    }
}

fn read_all(log: &PartitionLog) -> Vec<Record> {
    let mut offset = log.offsets().log_start_offset;
    let mut out = Vec::new();
    loop {
        let data = log
            .read(offset, 256, IsolationLevel::ReadUncommitted)
            .unwrap_or_else(|e| panic!("read at {offset} failed: {e}"));
        if data.records.is_empty() {
            return out;
        }
        let recs = broker_embedded::decode_fetched("t", &data.records, offset)
            .unwrap_or_else(|e| panic!("served a corrupt batch at {offset}: {e}"));
        offset = recs.last().unwrap().offset + 1;
        out.extend(recs);
    }
}

/// Opens the damaged copy and returns every record it serves.
fn reopen(disk: &SimStorage, clean: bool) -> (PartitionLog, Vec<Record>) {
    let log = PartitionLog::open_with_storage(
        disk.shared(),
        PathBuf::from(DIR),
        "t",
        0,
        config(),
        clean,
        0,
    )
    .unwrap_or_else(|e| panic!("reopen failed: {e}"));
    let served = read_all(&log);
    (log, served)
}

fn expected(p: &Prepared, batches: usize) -> Vec<Record> {
    p.batches[..batches]
        .iter()
        .flat_map(|b| b.records.clone())
        .collect()
}

fn assert_same(served: &[Record], want: &[Record], what: &str) {
    assert_eq!(served.len(), want.len(), "{what}: record count");
    for (s, w) in served.iter().zip(want) {
        assert_eq!(s.offset, w.offset, "{what}");
        assert_eq!(s.key, w.key, "{what}: key at {}", w.offset);
        assert_eq!(s.value, w.value, "{what}: value at {}", w.offset);
        assert_eq!(
            s.timestamp, w.timestamp,
            "{what}: timestamp at {}",
            w.offset
        );
    }
}

fn damage(disk: &SimStorage, path: &str, f: impl FnOnce(&dyn durable_fs::StorageFile, u64)) {
    let file = disk.open(Path::new(path), OpenMode::Existing).unwrap();
    let len = file.len().unwrap();
    f(&*file, len);
}

/// Every log served after the damage must still take appends and keep its producer state.
fn still_usable(log: &PartitionLog) {
    let end = log.offsets().log_end_offset;
    let mut bytes = encode_batch(&BatchSpec::default(), &records(1, 0, 9)).unwrap();
    let info = log.append(&mut bytes, AppendOrigin::Client, 0).unwrap();
    assert_eq!(info.base_offset, end);
}

#[test]
fn every_truncation_of_the_last_two_batches_cuts_at_the_last_whole_batch() {
    let p = prepare();
    let n = p.batches.len();
    let from = p.batches[n - 2].start;
    let mut cases = 0;
    for len in from..=p.segment.len() {
        let disk = p.sim.fork();
        damage(&disk, SEGMENT, |f, _| f.set_len(len as u64).unwrap());
        let whole = p.batches.iter().filter(|b| b.end <= len).count();
        let (log, served) = reopen(&disk, false);
        assert_same(
            &served,
            &expected(&p, whole),
            &format!("truncated to {len}"),
        );
        assert_eq!(
            disk.read(Path::new(SEGMENT)).unwrap().len(),
            p.batches[whole - 1].end,
            "truncated to {len}: the file is cut at the last whole batch"
        );
        still_usable(&log);
        cases += 1;
    }
    assert_eq!(cases, p.segment.len() - from + 1);
}

#[test]
fn every_byte_flip_in_the_last_two_batches_truncates_at_the_damaged_batch() {
    let p = prepare();
    let n = p.batches.len();
    let mut cases = 0;
    let mut epoch_flips_kept = 0;
    for k in [n - 2, n - 1] {
        let b = &p.batches[k];
        for pos in b.start..b.end {
            for pattern in [0x01u8, 0x80, 0xFF] {
                let disk = p.sim.fork();
                damage(&disk, SEGMENT, |f, _| {
                    f.write_all_at(&[p.segment[pos] ^ pattern], pos as u64)
                        .unwrap()
                });
                let what = format!("flip {pattern:#04x} at byte {} of batch {k}", pos - b.start);
                let (log, served) = reopen(&disk, false);
                let in_epoch = LEADER_EPOCH.contains(&(pos - b.start));
                if in_epoch && served.len() == expected(&p, n).len() {
                    // Not covered by the CRC and not part of a record: the batch may stay.
                    assert_same(&served, &expected(&p, n), &what);
                    epoch_flips_kept += 1;
                } else {
                    assert_same(&served, &expected(&p, k), &what);
                }
                still_usable(&log);
                cases += 1;
            }
        }
    }
    let span = p.batches[n - 1].end - p.batches[n - 2].start;
    assert_eq!(cases, span * 3);
    assert!(epoch_flips_kept > 0, "the leader-epoch case was exercised");
}

#[test]
fn flips_after_a_clean_shutdown_never_serve_a_wrong_record() {
    // A clean shutdown makes the log trusted (no scan): damage made afterwards (bit rot) must
    // still never reach a consumer as a wrong record; a read either serves the original
    // records or fails.
    let p = prepare();
    let n = p.batches.len();
    let mut failed_reads = 0;
    let mut noticed = 0;
    for pos in p.batches[n - 2].start..p.segment.len() {
        let disk = p.sim.fork();
        damage(&disk, SEGMENT, |f, _| {
            f.write_all_at(&[p.segment[pos] ^ 0x5A], pos as u64)
                .unwrap()
        });
        let log = PartitionLog::open_with_storage(
            disk.shared(),
            PathBuf::from(DIR),
            "t",
            0,
            config(),
            true,
            0,
        )
        .unwrap();
        let mut offset = 0;
        let want = expected(&p, n);
        if log.offsets().log_end_offset < want.len() as i64 {
            // Recovery's tail check noticed the damage and truncated.
            noticed += 1;
        }
        loop {
            let Ok(data) = log.read(offset, 256, IsolationLevel::ReadUncommitted) else {
                failed_reads += 1;
                break;
            };
            if data.records.is_empty() {
                break;
            }
            match broker_embedded::decode_fetched("t", &data.records, offset) {
                Ok(recs) => {
                    for r in &recs {
                        let w = &want[usize::try_from(r.offset).unwrap()];
                        assert_eq!(
                            (&r.key, &r.value, r.timestamp),
                            (&w.key, &w.value, w.timestamp),
                            "flip at {pos}"
                        );
                    }
                    offset = recs.last().unwrap().offset + 1;
                }
                Err(_) => {
                    failed_reads += 1;
                    break;
                }
            }
        }
    }
    assert!(
        failed_reads + noticed > 0,
        "the damage was noticed at least once (by recovery or by a read)"
    );
}

#[test]
fn every_truncation_and_flip_of_the_index_files_is_harmless() {
    let p = prepare();
    let want = expected(&p, p.batches.len());
    let mut cases = 0;
    for (file, entry) in [
        ("/data/t-0/00000000000000000000.index", 8usize),
        ("/data/t-0/00000000000000000000.timeindex", 12),
    ] {
        let original = p.sim.read(Path::new(file)).unwrap();
        assert!(original.len() >= 2 * entry, "{file} has entries to damage");
        for clean in [true, false] {
            for len in 0..original.len() {
                let disk = p.sim.fork();
                damage(&disk, file, |f, _| f.set_len(len as u64).unwrap());
                let (log, served) = reopen(&disk, clean);
                assert_same(&served, &want, &format!("{file} truncated to {len}"));
                check_time_lookups(&log, &want, &format!("{file} truncated to {len}"));
                cases += 1;
            }
            for (pos, &byte) in original.iter().enumerate() {
                for pattern in [0x01u8, 0x80, 0xFF] {
                    let disk = p.sim.fork();
                    damage(&disk, file, |f, _| {
                        f.write_all_at(&[byte ^ pattern], pos as u64).unwrap()
                    });
                    let what = format!("{file}: flip {pattern:#04x} at {pos} (clean={clean})");
                    let (log, served) = reopen(&disk, clean);
                    assert_same(&served, &want, &what);
                    check_time_lookups(&log, &want, &what);
                    // Reads from every offset, not only from the start.
                    for r in &want {
                        let data = log
                            .read(r.offset, 1, IsolationLevel::ReadUncommitted)
                            .unwrap_or_else(|e| panic!("{what}: read at {}: {e}", r.offset));
                        let recs =
                            broker_embedded::decode_fetched("t", &data.records, r.offset).unwrap();
                        assert_eq!(recs.first().map(|x| x.offset), Some(r.offset), "{what}");
                        assert_eq!(recs[0].value, r.value, "{what}");
                    }
                    cases += 1;
                }
            }
        }
    }
    assert!(cases > 100);
}

fn check_time_lookups(log: &PartitionLog, want: &[Record], what: &str) {
    for target in [0, 1_000, 1_011, 1_031, 1_050, 9_999] {
        let expected = want
            .iter()
            .find(|r| r.timestamp >= target)
            .map(|r| (r.offset, r.timestamp));
        assert_eq!(
            log.offset_for_timestamp(target).unwrap(),
            expected,
            "{what}: timestamp {target}"
        );
    }
}

#[test]
fn every_truncation_and_flip_of_the_producer_snapshot_keeps_duplicates_detected() {
    let p = prepare();
    let n = p.batches.len();
    let names = p.sim.read_dir(Path::new(DIR)).unwrap();
    let snapshot = names
        .iter()
        .find(|n| n.ends_with(".snapshot"))
        .map(|n| format!("{DIR}/{n}"))
        .expect("a clean close writes a producer-state snapshot");
    let original = p.sim.read(Path::new(&snapshot)).unwrap();
    let last = &p.batches[n - 1];
    let last_seq: i32 = p.batches[4].records.len() as i32;
    let mut cases = 0;
    type Damage = Box<dyn Fn(&dyn durable_fs::StorageFile)>;
    let mut damage_cases: Vec<Damage> = Vec::new();
    for len in 0..original.len() {
        damage_cases.push(Box::new(move |f| f.set_len(len as u64).unwrap()));
    }
    for (pos, &byte) in original.iter().enumerate() {
        damage_cases.push(Box::new(move |f| {
            f.write_all_at(&[byte ^ 0x01], pos as u64).unwrap()
        }));
        damage_cases.push(Box::new(move |f| {
            f.write_all_at(&[byte ^ 0xFF], pos as u64).unwrap()
        }));
    }
    for (i, d) in damage_cases.iter().enumerate() {
        for clean in [true, false] {
            let disk = p.sim.fork();
            damage(&disk, &snapshot, |f, _| d(f));
            let (log, served) = reopen(&disk, clean);
            assert_same(&served, &expected(&p, n), &format!("snapshot damage {i}"));
            // A retry of the last idempotent batch is still recognised.
            let recs: Vec<Record> = last
                .records
                .iter()
                .enumerate()
                .map(|(j, r)| Record {
                    offset: j as i64,
                    ..r.clone()
                })
                .collect();
            let mut bytes = encode_batch(
                &BatchSpec {
                    producer_id: PRODUCER_ID,
                    producer_epoch: 0,
                    base_sequence: last_seq,
                    ..BatchSpec::default()
                },
                &recs,
            )
            .unwrap();
            let info = log.append(&mut bytes, AppendOrigin::Client, 0).unwrap();
            assert!(
                info.duplicate,
                "snapshot damage {i} (clean={clean}): retry not detected"
            );
            assert_eq!(info.base_offset, last.records[0].offset);
            cases += 1;
        }
    }
    assert_eq!(cases, damage_cases.len() * 2);
}

#[test]
fn every_truncation_and_flip_of_the_cleaner_checkpoint_keeps_a_compacted_log_whole() {
    // A compacted log has offset gaps below its cleaner checkpoint; a damaged checkpoint must
    // not make recovery take those gaps for corruption.
    let sim = SimStorage::new();
    let cfg = Arc::new(LogConfig {
        cleanup_policy: broker_embedded::CleanupPolicy {
            delete: false,
            compact: true,
        },
        segment_bytes: 300,
        index_interval_bytes: 1,
        min_compaction_lag_ms: 0,
        min_cleanable_dirty_ratio: 0.0,
        ..LogConfig::default()
    });
    let open = |disk: &SimStorage, clean: bool| {
        PartitionLog::open_with_storage(
            disk.shared(),
            PathBuf::from(DIR),
            "t",
            0,
            Arc::clone(&cfg),
            clean,
            0,
        )
        .unwrap()
    };
    let log = open(&sim, true);
    for i in 0..40 {
        let recs = vec![Record {
            offset: 0,
            timestamp: 1_000 + i,
            key: Some(Bytes::from(format!("k{}", i % 4))),
            value: Some(Bytes::from(format!("v{i}"))),
            headers: vec![],
        }];
        let mut bytes = encode_batch(&BatchSpec::default(), &recs).unwrap();
        log.append(&mut bytes, AppendOrigin::Client, 0).unwrap();
    }
    let stats = log.compact(20_000, true).unwrap();
    assert!(
        stats.records_removed > 0,
        "compaction left gaps to recover across"
    );
    let before = read_all(&log);
    log.close().unwrap();
    drop(log);
    let file = format!("{DIR}/cleaner-offset-checkpoint");
    let original = sim.read(Path::new(&file)).unwrap();
    let mut cases = 0;
    for len in 0..original.len() {
        let disk = sim.fork();
        damage(&disk, &file, |f, _| f.set_len(len as u64).unwrap());
        assert_same(
            &read_all(&open(&disk, false)),
            &before,
            &format!("checkpoint cut to {len}"),
        );
        cases += 1;
    }
    for (pos, &byte) in original.iter().enumerate() {
        for pattern in [0x01u8, 0x80, 0xFF] {
            let disk = sim.fork();
            damage(&disk, &file, |f, _| {
                f.write_all_at(&[byte ^ pattern], pos as u64).unwrap()
            });
            assert_same(
                &read_all(&open(&disk, false)),
                &before,
                &format!("checkpoint flip {pattern:#04x} at {pos}"),
            );
            cases += 1;
        }
    }
    // Without the file at all (a data directory from before it existed), too.
    let disk = sim.fork();
    disk.remove_file(Path::new(&file)).unwrap();
    assert_same(
        &read_all(&open(&disk, false)),
        &before,
        "checkpoint missing",
    );
    assert_eq!(cases, original.len() * 4);
}

#[test]
fn every_truncation_and_flip_of_the_recovery_point_checkpoint_keeps_every_record() {
    // The broker's `recovery-point-offset-checkpoint` only says how much of each log is known
    // to be fsynced; whatever a damaged file says, reopening after a crash serves every record.
    use broker_embedded::{Broker, BrokerConfig, FlushPolicy, NewTopic, ProduceRecord};
    let sim = SimStorage::new();
    let config = || BrokerConfig::new("/b").with_flush_policy(FlushPolicy::EveryBatch);
    let broker = Broker::open_with_storage(config(), sim.shared()).unwrap();
    broker.create_topic(NewTopic::new("t", 2)).unwrap();
    for i in 0..40 {
        broker
            .produce(
                "t",
                i % 2,
                &[ProduceRecord::new(format!("k{i}"), format!("v{i}"))],
            )
            .unwrap();
    }
    broker.flush().unwrap();
    let read = |b: &Broker| -> Vec<Vec<String>> {
        (0..2)
            .map(|p| {
                let data = b
                    .read_partition("t", p, 0, 1 << 20, IsolationLevel::ReadUncommitted)
                    .unwrap();
                broker_embedded::decode_fetched("t", &data.records, 0)
                    .unwrap()
                    .into_iter()
                    .map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap())
                    .collect()
            })
            .collect()
    };
    let want = read(&broker);
    // A crash, not a clean shutdown: the checkpoint is what recovery will use.
    let crashed = sim.fork();
    drop(broker);
    let file = "/b/recovery-point-offset-checkpoint";
    let original = crashed.read(Path::new(file)).unwrap();
    assert!(!crashed.exists(Path::new("/b/.kafka_cleanshutdown")));
    let mut cases = 0;
    let mut check = |disk: SimStorage, what: String| {
        let b = Broker::open_with_storage(config(), disk.shared())
            .unwrap_or_else(|e| panic!("{what}: reopen failed: {e}"));
        assert_eq!(read(&b), want, "{what}");
        cases += 1;
    };
    for len in 0..original.len() {
        let disk = crashed.fork();
        damage(&disk, file, |f, _| f.set_len(len as u64).unwrap());
        check(disk, format!("checkpoint cut to {len}"));
    }
    for (pos, &byte) in original.iter().enumerate() {
        for pattern in [0x01u8, 0x80, 0xFF] {
            let disk = crashed.fork();
            damage(&disk, file, |f, _| {
                f.write_all_at(&[byte ^ pattern], pos as u64).unwrap()
            });
            check(disk, format!("checkpoint flip {pattern:#04x} at {pos}"));
        }
    }
    assert_eq!(cases, original.len() * 4);
}
