//! Power cuts at random points of a partition log's life, on `durable-fs`'s page-cache
//! simulator (a SIGKILL keeps the page cache, so only a simulator can show what a power loss
//! does): appends (plain and idempotent), segment rolls with producer-state snapshots,
//! retention deletes, compaction swaps, background flushes and clean closes.
//!
//! After each cut the log is reopened (as after an unclean shutdown, from a recovery point the
//! broker could have checkpointed) and checked against a model:
//! - `flush.messages=1` (`FlushPolicy::EveryBatch`): every acknowledged record survives;
//!   with a flush interval, every record appended before the last completed flush survives
//!   (so at most one interval is lost);
//! - every record served is exactly one that was appended, at its offset (no torn or invented
//!   record), offsets increase, and for a compacted log each key's latest durable record (or a
//!   newer one) is still there;
//! - the producer state agrees with the log: a retry of the last surviving idempotent batch is
//!   recognised as a duplicate;
//! - recovery never panics, and the log takes and serves new appends afterwards.
//!
//! A transactional campaign interleaves two transactional producers, their COMMIT and ABORT
//! markers and plain appends with the same rolls, flushes, closes and cuts; after recovery the
//! last stable offset and the aborted transactions read_committed reports (from the rebuilt or
//! loaded `.txnindex`) must be exactly what the surviving batches imply.
//!
//! `POWER_CUT_CASES` (default 300 per policy) and `POWER_CUT_SEED` (default: from the clock,
//! printed) control the campaign; `scripts/power-cut.sh` runs a long one.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use broker_embedded::record::{encode_batch, BatchIter, BatchSpec, Record};
use broker_embedded::{AppendOrigin, CleanupPolicy, IsolationLevel, LogConfig, PartitionLog};
use bytes::Bytes;
use durable_fs::sim::SimStorage;
use durable_fs::Storage;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const PRODUCER_ID: i64 = 7;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Policy {
    EveryBatch,
    Interval,
}

fn config(policy: Policy, compact: bool, retention_bytes: i64) -> Arc<LogConfig> {
    Arc::new(LogConfig {
        cleanup_policy: CleanupPolicy {
            delete: !compact,
            compact,
        },
        segment_bytes: 1_200,
        index_interval_bytes: 150,
        retention_bytes,
        retention_ms: -1,
        segment_ms: i64::MAX / 2,
        min_cleanable_dirty_ratio: 0.0,
        min_compaction_lag_ms: 0,
        delete_retention_ms: 0,
        flush_messages: if policy == Policy::EveryBatch {
            1
        } else {
            u64::MAX
        },
        flush_ms: i64::MAX,
        ..LogConfig::default()
    })
}

/// One appended record as the model remembers it.
#[derive(Debug, Clone)]
struct Appended {
    key: Vec<u8>,
    value: Vec<u8>,
    timestamp: i64,
}

/// One idempotent batch: its sequence range, offsets and records (to retry it).
#[derive(Debug, Clone)]
struct IdempotentBatch {
    base_sequence: i32,
    base_offset: i64,
    last_offset: i64,
    records: Vec<Appended>,
}

struct Model {
    /// Indexed by offset (every append, acknowledged or not yet durable).
    appended: Vec<Appended>,
    /// Offsets below this were durable before the cut.
    durable_upto: i64,
    idempotent: Vec<IdempotentBatch>,
    next_sequence: i32,
}

fn batch_bytes(records: &[Appended], idempotent: Option<i32>) -> Vec<u8> {
    let recs: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            offset: i as i64,
            timestamp: r.timestamp,
            key: Some(Bytes::from(r.key.clone())),
            value: Some(Bytes::from(r.value.clone())),
            headers: vec![],
        })
        .collect();
    let spec = match idempotent {
        Some(seq) => BatchSpec {
            producer_id: PRODUCER_ID,
            producer_epoch: 0,
            base_sequence: seq,
            ..BatchSpec::default()
        },
        None => BatchSpec::default(),
    };
    encode_batch(&spec, &recs).unwrap()
}

fn read_all(log: &PartitionLog) -> Vec<Record> {
    let mut offset = log.offsets().log_start_offset;
    let mut out = Vec::new();
    loop {
        let data = log
            .read(offset, 900, IsolationLevel::ReadUncommitted)
            .unwrap();
        if data.records.is_empty() {
            break;
        }
        let recs = broker_embedded::decode_fetched("t", &data.records, offset).unwrap();
        // Compaction may leave a batch without records (kept for its producer state), as
        // Kafka does: a consumer moves past it by the batch's last offset.
        let mut next = offset;
        for item in BatchIter::new(&data.records) {
            next = next.max(item.unwrap().header.next_offset());
        }
        assert!(next > offset, "a non-empty fetch moves the position");
        offset = next;
        out.extend(recs);
    }
    out
}

fn open(
    storage: Arc<dyn Storage>,
    dir: &Path,
    cfg: &Arc<LogConfig>,
    clean: bool,
    rp: i64,
) -> PartitionLog {
    PartitionLog::open_with_storage(
        storage,
        dir.to_path_buf(),
        "t",
        0,
        Arc::clone(cfg),
        clean,
        rp,
    )
    .unwrap_or_else(|e| panic!("recovery failed: {e}"))
}

/// What a campaign exercised, so that it fails loudly when it tests less than it claims.
#[derive(Debug, Default, Clone, Copy)]
struct Coverage {
    cuts_losing_data: u64,
    cuts_mid_operation: u64,
    durable_records_checked: u64,
    rolls: u64,
    compactions: u64,
    retention_deletes: u64,
    duplicate_retries: u64,
    clean_closes: u64,
}

/// Runs one case; panics (with the seed in the message of the caller) on a violation.
fn run_case(seed: u64, policy: Policy, compact: bool) -> Coverage {
    let mut cov = Coverage::default();
    let mut rng = StdRng::seed_from_u64(seed);
    let sim = SimStorage::new();
    let storage = sim.shared();
    let dir = PathBuf::from("/data/t-0");
    storage.create_dir_all(Path::new("/data")).unwrap();
    sim.sync_dir(Path::new("/")).unwrap();
    let mut cfg = config(policy, compact, -1);
    let log = open(Arc::clone(&storage), &dir, &cfg, true, 0);
    let mut model = Model {
        appended: Vec::new(),
        durable_upto: 0,
        idempotent: Vec::new(),
        next_sequence: 0,
    };
    let ops = rng.random_range(1..60);
    let mut clean_close = false;
    // Half the cases cut the power in the middle of an operation (between any two steps of
    // an append, a roll, a flush, a compaction swap, a retention delete or a close) instead
    // of between operations.
    let mid_operation = rng.random_bool(0.5);
    if mid_operation {
        sim.arm_power_cut(rng.random_range(1..200), rng.random());
    }
    // An operation that fails must have been struck by the armed cut; the process is dead.
    macro_rules! op {
        ($e:expr) => {
            match $e {
                Ok(v) => v,
                Err(e) if sim.armed_cut_struck() => {
                    let _ = e;
                    cov.cuts_mid_operation += 1;
                    break;
                }
                Err(e) => panic!("operation failed without a power cut: {e}"),
            }
        };
    }
    for _ in 0..ops {
        match rng.random_range(0..1000) {
            0..=549 => {
                let n = rng.random_range(1..5);
                let records: Vec<Appended> = (0..n)
                    .map(|_| Appended {
                        key: format!("k{}", rng.random_range(0..6)).into_bytes(),
                        value: (0..rng.random_range(1..120))
                            .map(|_| rng.random())
                            .collect(),
                        timestamp: rng.random_range(0..10_000),
                    })
                    .collect();
                let idempotent = rng.random_bool(0.3).then_some(model.next_sequence);
                let mut bytes = batch_bytes(&records, idempotent);
                // Recorded before the append: a cut inside it may leave the batch on disk
                // (not acknowledged, so not required to survive).
                let base = model.appended.len() as i64;
                model.appended.extend(records.iter().cloned());
                if let Some(seq) = idempotent {
                    model.idempotent.push(IdempotentBatch {
                        base_sequence: seq,
                        base_offset: base,
                        last_offset: base + n as i64 - 1,
                        records: records.clone(),
                    });
                    model.next_sequence += n;
                }
                let info = op!(log.append(&mut bytes, AppendOrigin::Client, 0));
                assert!(!info.duplicate);
                assert_eq!(info.base_offset, base);
                if policy == Policy::EveryBatch {
                    model.durable_upto = info.last_offset + 1;
                }
            }
            550..=649 => {
                let before = log.offsets().segments;
                op!(log.roll());
                cov.rolls += u64::from(log.offsets().segments > before);
            }
            650..=799 => {
                // The background flusher's tick.
                let upto = log.offsets().log_end_offset;
                op!(log.flush());
                model.durable_upto = model.durable_upto.max(upto);
            }
            800..=879 if compact => {
                cov.compactions += op!(log.compact(20_000, true)).segments_cleaned as u64;
            }
            800..=879 => {
                cfg = config(policy, compact, rng.random_range(500..4_000));
                log.set_config(Arc::clone(&cfg));
                cov.retention_deletes += op!(log.apply_retention(0)) as u64;
                cfg = config(policy, compact, -1);
                log.set_config(Arc::clone(&cfg));
            }
            880..=994 => {
                // What the broker writes to its recovery-point checkpoint is only ever an
                // earlier value of this; reading it is harmless.
                let _ = log.recovery_point();
            }
            _ => {
                op!(log.close());
                model.durable_upto = model.appended.len() as i64;
                clean_close = true;
                cov.clean_closes += 1;
                break;
            }
        }
    }
    let start_before = log.offsets().log_start_offset;
    let rp = if rng.random_bool(0.5) {
        log.recovery_point()
    } else {
        0
    };
    if !sim.armed_cut_struck() {
        sim.disarm_power_cut();
        sim.power_cut(rng.random());
    }
    let lost = sim.stats();
    if lost.lost_file_ops + lost.lost_dir_ops > 0 {
        cov.cuts_losing_data += 1;
    }
    // The dead process's objects go away without touching the disk again.
    drop(log);

    let storage = sim.shared();
    let log = open(Arc::clone(&storage), &dir, &cfg, clean_close, rp);
    let offsets = log.offsets();
    let got = read_all(&log);
    assert!(
        offsets.log_start_offset <= start_before,
        "log start {} moved past {} (records deleted that were not)",
        offsets.log_start_offset,
        start_before
    );
    assert!(
        offsets.log_end_offset <= model.appended.len() as i64,
        "log end {} beyond the {} records ever appended",
        offsets.log_end_offset,
        model.appended.len()
    );
    let mut last = -1;
    for r in &got {
        assert!(r.offset > last, "offsets must increase");
        last = r.offset;
        let a = &model.appended[usize::try_from(r.offset).unwrap()];
        assert_eq!(r.key.as_deref(), Some(&a.key[..]), "key at {}", r.offset);
        assert_eq!(
            r.value.as_deref(),
            Some(&a.value[..]),
            "value at {}",
            r.offset
        );
        assert_eq!(r.timestamp, a.timestamp, "timestamp at {}", r.offset);
    }
    let durable_from = start_before.max(offsets.log_start_offset);
    assert!(
        offsets.log_end_offset >= model.durable_upto,
        "durable records lost: log end {} < {} ({policy:?})",
        offsets.log_end_offset,
        model.durable_upto
    );
    let present: std::collections::HashSet<i64> = got.iter().map(|r| r.offset).collect();
    if compact {
        // Each key's latest durable record, or a newer record of the key, is still there.
        let mut latest: std::collections::HashMap<&[u8], i64> = Default::default();
        for (o, a) in model.appended.iter().enumerate() {
            let o = o as i64;
            if o >= durable_from && o < model.durable_upto {
                latest.insert(&a.key, o);
            }
        }
        for (key, o) in latest {
            let kept = got
                .iter()
                .any(|r| r.offset >= o && r.key.as_deref() == Some(key));
            assert!(
                kept,
                "compaction or recovery lost key {:?} (durable at {o})",
                String::from_utf8_lossy(key)
            );
        }
    } else {
        for o in durable_from..model.durable_upto {
            assert!(present.contains(&o), "durable record {o} lost ({policy:?})");
        }
    }
    // Producer state: a retry of the last surviving idempotent batch is a duplicate.
    if let Some(b) = model.idempotent.iter().rev().find(|b| {
        b.last_offset < offsets.log_end_offset && b.base_offset >= offsets.log_start_offset
    }) {
        let mut bytes = batch_bytes(&b.records, Some(b.base_sequence));
        let info = log.append(&mut bytes, AppendOrigin::Client, 0).unwrap();
        assert!(
            info.duplicate,
            "retry of sequence {} not recognised after recovery",
            b.base_sequence
        );
        assert_eq!(info.base_offset, b.base_offset);
        cov.duplicate_retries += 1;
    }
    // The log stays usable.
    let fresh = Appended {
        key: b"after".to_vec(),
        value: b"the cut".to_vec(),
        timestamp: 1,
    };
    let mut bytes = batch_bytes(std::slice::from_ref(&fresh), None);
    let info = log.append(&mut bytes, AppendOrigin::Client, 0).unwrap();
    assert_eq!(info.base_offset, offsets.log_end_offset);
    let back = read_all(&log);
    let lastr = back.last().unwrap();
    assert_eq!(lastr.offset, info.base_offset);
    assert_eq!(lastr.value.as_deref(), Some(&b"the cut"[..]));
    cov.durable_records_checked += (model.durable_upto - durable_from).max(0) as u64;
    cov
}

fn campaign(policy: Policy, compact: bool) {
    let cases: u64 = std::env::var("POWER_CUT_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let base: u64 = std::env::var("POWER_CUT_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    eprintln!("power-cut campaign {policy:?} compact={compact}: {cases} cases from seed {base} (POWER_CUT_SEED={base} to replay)");
    let mut total = Coverage::default();
    for i in 0..cases {
        let seed = base.wrapping_add(i);
        let outcome = std::panic::catch_unwind(|| run_case(seed, policy, compact));
        if let Ok(c) = &outcome {
            total.cuts_losing_data += c.cuts_losing_data;
            total.cuts_mid_operation += c.cuts_mid_operation;
            total.durable_records_checked += c.durable_records_checked;
            total.rolls += c.rolls;
            total.compactions += c.compactions;
            total.retention_deletes += c.retention_deletes;
            total.duplicate_retries += c.duplicate_retries;
            total.clean_closes += c.clean_closes;
        }
        if let Err(e) = outcome {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("case seed {seed} ({policy:?}, compact={compact}) failed: {msg}");
        }
    }
    eprintln!("coverage: {total:?}");
    // Fail loudly if the campaign did not exercise what the test names promise.
    if cases >= 100 {
        // With every batch flushed, only index files and directory entries are unsynced.
        let min_losing = if policy == Policy::EveryBatch {
            cases / 20
        } else {
            cases / 4
        };
        assert!(
            total.cuts_losing_data > min_losing,
            "too few cuts lost unsynced data: {total:?}"
        );
        assert!(
            total.durable_records_checked > cases,
            "too few durable records checked: {total:?}"
        );
        assert!(
            total.rolls > 0
                && total.duplicate_retries > 0
                && total.clean_closes > 0
                && total.cuts_mid_operation > cases / 10,
            "{total:?}"
        );
        if compact {
            assert!(
                total.compactions > 0,
                "no compaction swap happened: {total:?}"
            );
        } else {
            assert!(
                total.retention_deletes > 0,
                "no retention delete happened: {total:?}"
            );
        }
    }
}

#[test]
fn every_acknowledged_record_survives_power_cuts_with_every_batch_flush() {
    campaign(Policy::EveryBatch, false);
}

#[test]
fn records_flushed_before_the_interval_survive_power_cuts() {
    campaign(Policy::Interval, false);
}

#[test]
fn compacted_logs_keep_every_key_through_power_cuts() {
    campaign(Policy::EveryBatch, true);
}

fn txn_data(pid: i64, seq: i32, n: usize, rng: &mut StdRng) -> Vec<u8> {
    let spec = BatchSpec {
        transactional: true,
        producer_id: pid,
        producer_epoch: 0,
        base_sequence: seq,
        ..BatchSpec::default()
    };
    let recs: Vec<Record> = (0..n)
        .map(|i| Record {
            offset: i as i64,
            timestamp: 1_000,
            key: Some(Bytes::from(format!("k{}", rng.random_range(0..4)))),
            value: Some(Bytes::from(vec![7u8; rng.random_range(1..90)])),
            headers: vec![],
        })
        .collect();
    encode_batch(&spec, &recs).unwrap()
}

fn txn_marker(pid: i64, commit: bool) -> Vec<u8> {
    let spec = BatchSpec {
        transactional: true,
        control: true,
        producer_id: pid,
        producer_epoch: 0,
        ..BatchSpec::default()
    };
    let rec = Record {
        offset: 0,
        timestamp: 1_000,
        key: Some(Bytes::from(vec![0, 0, 0, u8::from(commit)])),
        value: Some(Bytes::from(vec![0, 0, 0, 0, 0, 0])),
        headers: vec![],
    };
    encode_batch(&spec, &[rec]).unwrap()
}

/// Every batch header of the log, in order (raw reads across segments).
fn all_batches(log: &PartitionLog) -> Vec<(broker_embedded::record::BatchHeader, Vec<u8>)> {
    let mut offset = log.offsets().log_start_offset;
    let mut out = Vec::new();
    loop {
        let data = log
            .read(offset, 1 << 20, IsolationLevel::ReadUncommitted)
            .unwrap();
        if data.records.is_empty() {
            return out;
        }
        for item in BatchIter::new(&data.records) {
            let b = item.unwrap();
            offset = b.header.next_offset();
            out.push((b.header, b.bytes.to_vec()));
        }
    }
}

/// Runs one transactional case; returns (cut mid-operation, aborted transactions checked).
fn run_txn_case(seed: u64) -> (bool, usize) {
    use std::collections::BTreeMap;
    let mut rng = StdRng::seed_from_u64(seed);
    let sim = SimStorage::new();
    let storage = sim.shared();
    let dir = PathBuf::from("/data/t-0");
    storage.create_dir_all(Path::new("/data")).unwrap();
    sim.sync_dir(Path::new("/")).unwrap();
    let cfg = config(
        if rng.random_bool(0.5) {
            Policy::EveryBatch
        } else {
            Policy::Interval
        },
        false,
        -1,
    );
    let log = open(Arc::clone(&storage), &dir, &cfg, true, 0);
    let mut seq = [0i32; 2];
    let mut open_txn = [false; 2];
    let mut clean_close = false;
    let mut struck = false;
    let mid_operation = rng.random_bool(0.5);
    if mid_operation {
        sim.arm_power_cut(rng.random_range(1..200), rng.random());
    }
    for _ in 0..rng.random_range(1..50) {
        let p = rng.random_range(0..2usize);
        let pid = 100 + p as i64;
        let result = match rng.random_range(0..100) {
            0..=39 => {
                let n = rng.random_range(1..4);
                let mut b = txn_data(pid, seq[p], n, &mut rng);
                seq[p] += n as i32;
                open_txn[p] = true;
                log.append(&mut b, AppendOrigin::Client, 0).map(|_| ())
            }
            40..=59 if open_txn[p] => {
                open_txn[p] = false;
                let mut b = txn_marker(pid, rng.random_bool(0.5));
                log.append(&mut b, AppendOrigin::Internal, 0).map(|_| ())
            }
            40..=69 => {
                let mut b = batch_bytes(
                    &[Appended {
                        key: b"plain".to_vec(),
                        value: vec![1; 40],
                        timestamp: 1_000,
                    }],
                    None,
                );
                log.append(&mut b, AppendOrigin::Client, 0).map(|_| ())
            }
            70..=84 => log.roll(),
            85..=97 => log.flush(),
            _ => {
                clean_close = true;
                log.close()
            }
        };
        match result {
            Ok(()) if clean_close => break,
            Ok(()) => {}
            Err(_) if sim.armed_cut_struck() => {
                struck = true;
                clean_close = false;
                break;
            }
            Err(e) => panic!("operation failed without a power cut: {e}"),
        }
    }
    let rp = if rng.random_bool(0.5) {
        log.recovery_point()
    } else {
        0
    };
    if !sim.armed_cut_struck() {
        sim.disarm_power_cut();
        sim.power_cut(rng.random());
    }
    drop(log);

    let log = open(sim.shared(), &dir, &cfg, clean_close, rp);
    // What the surviving batches imply.
    let mut first: BTreeMap<i64, i64> = BTreeMap::new();
    let mut expected = Vec::new();
    for (h, bytes) in all_batches(&log) {
        if !h.is_transactional() {
            continue;
        }
        if h.is_control() {
            let rec = &broker_embedded::record::decode_records(&bytes).unwrap()[0];
            let commit = rec.key.as_deref().unwrap()[3] == 1;
            if let Some(f) = first.remove(&h.producer_id) {
                if !commit {
                    let lso = first.values().min().copied().unwrap_or(h.base_offset + 1);
                    expected.push(broker_embedded::AbortedTxn {
                        producer_id: h.producer_id,
                        first_offset: f,
                        last_offset: h.base_offset,
                        last_stable_offset: lso,
                    });
                }
            }
        } else {
            first.entry(h.producer_id).or_insert(h.base_offset);
        }
    }
    let offsets = log.offsets();
    let lso = first
        .values()
        .min()
        .copied()
        .unwrap_or(offsets.high_watermark);
    assert_eq!(offsets.last_stable_offset, lso, "last stable offset");
    expected.retain(|a| a.first_offset < lso);
    // What read_committed reports.
    let mut reported = Vec::new();
    let mut offset = offsets.log_start_offset;
    loop {
        let d = log
            .read(offset, 1 << 20, IsolationLevel::ReadCommitted)
            .unwrap();
        assert_eq!(d.last_stable_offset, lso);
        let Some(next) = BatchIter::new(&d.records)
            .map(|b| b.unwrap().header.next_offset())
            .last()
        else {
            break;
        };
        assert!(next <= lso, "read_committed went past the LSO");
        for a in d.aborted_transactions {
            if !reported.contains(&a) {
                reported.push(a);
            }
        }
        offset = next;
    }
    reported.sort_by_key(|a| a.last_offset);
    assert_eq!(reported, expected, "aborted transactions after recovery");
    (struck, expected.len())
}

#[test]
fn transaction_state_and_index_agree_with_the_log_after_power_cuts() {
    let cases: u64 = std::env::var("POWER_CUT_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let base: u64 = std::env::var("POWER_CUT_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    eprintln!("transactional power-cut campaign: {cases} cases from seed {base} (POWER_CUT_SEED={base} to replay)");
    let (mut struck, mut aborted) = (0u64, 0usize);
    for i in 0..cases {
        let seed = base.wrapping_add(i);
        match std::panic::catch_unwind(|| run_txn_case(seed)) {
            Ok((s, a)) => {
                struck += u64::from(s);
                aborted += a;
            }
            Err(e) => {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                panic!("transactional case seed {seed} failed: {msg}");
            }
        }
    }
    eprintln!("cuts mid-operation: {struck}, aborted transactions checked: {aborted}");
    if cases >= 100 {
        assert!(struck > cases / 10 && aborted > cases as usize / 4);
    }
}
