//! The log's replication primitives: leader-epoch stamping and the epoch cache, follower
//! appends, truncation (checked against an oracle log built directly from the kept and new
//! batches), and the high watermark in replicated and single-node mode.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use broker_embedded::record::{encode_batch, BatchHeader, BatchIter, BatchSpec, Record};
use broker_embedded::{
    AppendOrigin, BrokerError, EpochEntry, IsolationLevel, LogConfig, PartitionLog, ProducerEntry,
};
use bytes::Bytes;
use proptest::prelude::*;

fn config() -> Arc<LogConfig> {
    Arc::new(LogConfig {
        segment_bytes: 900,
        index_interval_bytes: 150,
        segment_ms: i64::MAX / 2,
        ..LogConfig::default()
    })
}

fn open(dir: &std::path::Path, clean: bool) -> PartitionLog {
    PartitionLog::open(dir.to_path_buf(), "t", 0, config(), clean, 0).unwrap()
}

fn rec(value: &[u8], ts: i64) -> Record {
    Record {
        offset: 0,
        timestamp: ts,
        key: Some(Bytes::from_static(b"k")),
        value: Some(Bytes::copy_from_slice(value)),
        headers: Vec::new(),
    }
}

/// A client batch of `n` records.
fn batch(n: usize, pid: i64, seq: i32, txn: bool, ts: i64) -> Vec<u8> {
    let spec = BatchSpec {
        producer_id: pid,
        producer_epoch: if pid >= 0 { 0 } else { -1 },
        base_sequence: if pid >= 0 { seq } else { -1 },
        transactional: txn,
        ..BatchSpec::default()
    };
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            offset: i as i64,
            ..rec(format!("v{seq}-{i}-{ts}").as_bytes(), ts + i as i64)
        })
        .collect();
    encode_batch(&spec, &records).unwrap()
}

/// An end-transaction marker batch (control record: key `0, type`, value `0, coordinator
/// epoch`).
fn marker(pid: i64, commit: bool, ts: i64) -> Vec<u8> {
    let spec = BatchSpec {
        producer_id: pid,
        producer_epoch: 0,
        base_sequence: -1,
        transactional: true,
        control: true,
        ..BatchSpec::default()
    };
    let r = Record {
        offset: 0,
        timestamp: ts,
        key: Some(Bytes::from(vec![0, 0, 0, u8::from(commit)])),
        value: Some(Bytes::from(vec![0, 0, 0, 0, 0, 3])),
        headers: Vec::new(),
    };
    encode_batch(&spec, &[r]).unwrap()
}

/// Every batch in the log, as stored.
fn all_bytes(log: &PartitionLog) -> Vec<u8> {
    let mut offset = log.offsets().log_start_offset;
    let mut out = Vec::new();
    loop {
        let data = log.read_for_replica(offset, 1 << 20).unwrap();
        if data.records.is_empty() {
            return out;
        }
        for b in BatchIter::new(&data.records) {
            offset = b.unwrap().header.next_offset();
        }
        out.extend_from_slice(&data.records);
    }
}

fn headers(bytes: &[u8]) -> Vec<BatchHeader> {
    BatchIter::new(bytes).map(|b| b.unwrap().header).collect()
}

#[derive(Debug, Clone)]
enum Op {
    /// Plain batch of n records.
    Plain(usize),
    /// Idempotent batch of producer 1.
    Idempotent(usize),
    /// Transactional batch of producer 2 or 3.
    Txn(i64, usize),
    /// End the transaction of producer 2 or 3.
    End(i64, bool),
    Roll,
    /// A new leader epoch for the following appends.
    NewEpoch,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1usize..5).prop_map(Op::Plain),
        3 => (1usize..5).prop_map(Op::Idempotent),
        3 => (2i64..4, 1usize..4).prop_map(|(p, n)| Op::Txn(p, n)),
        2 => (2i64..4, any::<bool>()).prop_map(|(p, c)| Op::End(p, c)),
        1 => Just(Op::Roll),
        1 => Just(Op::NewEpoch),
    ]
}

fn next_seq(log: &PartitionLog, pid: i64) -> i32 {
    log.producer_entry(pid)
        .and_then(|e| e.batches.back().map(|b| b.last_seq + 1))
        .unwrap_or(0)
}

/// Applies `op` as the leader of `*epoch`; returns the appended bytes (offsets assigned).
fn apply(log: &PartitionLog, op: &Op, epoch: &mut i32, ts: &mut i64) -> Option<Vec<u8>> {
    *ts += 7;
    let (mut b, origin) = match op {
        Op::Plain(n) => (batch(*n, -1, -1, false, *ts), AppendOrigin::Client),
        Op::Idempotent(n) => (
            batch(*n, 1, next_seq(log, 1), false, *ts),
            AppendOrigin::Client,
        ),
        Op::Txn(p, n) => (
            batch(*n, *p, next_seq(log, *p), true, *ts),
            AppendOrigin::Client,
        ),
        Op::End(p, commit) => (marker(*p, *commit, *ts), AppendOrigin::Internal),
        Op::Roll => {
            log.roll().unwrap();
            return None;
        }
        Op::NewEpoch => {
            *epoch += 1 + (*ts % 2) as i32;
            return None;
        }
    };
    let info = log.append_with_epoch(&mut b, origin, *ts, *epoch).unwrap();
    assert!(!info.duplicate);
    Some(b)
}

fn producers(log: &PartitionLog) -> Vec<(i64, ProducerEntry)> {
    log.active_producers()
}

/// Everything observable that must agree between the truncated log and the oracle.
fn assert_same(a: &PartitionLog, b: &PartitionLog, what: &str) {
    // Everything is replicated: both high watermarks at the log end.
    a.set_high_watermark(i64::MAX);
    b.set_high_watermark(i64::MAX);
    assert_eq!(a.high_watermark(), b.high_watermark(), "{what}: HW");
    assert_eq!(
        a.offsets().log_end_offset,
        b.offsets().log_end_offset,
        "{what}: LEO"
    );
    assert_eq!(all_bytes(a), all_bytes(b), "{what}: bytes");
    assert_eq!(producers(a), producers(b), "{what}: producer state");
    assert_eq!(a.epoch_entries(), b.epoch_entries(), "{what}: epoch cache");
    assert_eq!(
        a.offsets().last_stable_offset,
        b.offsets().last_stable_offset,
        "{what}: LSO"
    );
    assert_eq!(committed(a), committed(b), "{what}: read_committed");
}

/// Every batch a read_committed consumer fetches, and the aborted transactions it is told
/// about.
/// (producer id, first offset, last offset, last stable offset) of an aborted transaction.
type Aborted = (i64, i64, i64, i64);

fn committed(log: &PartitionLog) -> (Vec<u8>, Vec<Aborted>) {
    let mut offset = log.offsets().log_start_offset;
    let mut bytes = Vec::new();
    let mut aborted = Vec::new();
    loop {
        let data = log
            .read(offset, 1 << 20, IsolationLevel::ReadCommitted)
            .unwrap();
        if data.records.is_empty() {
            aborted.sort_unstable();
            aborted.dedup();
            return (bytes, aborted);
        }
        for b in BatchIter::new(&data.records) {
            offset = b.unwrap().header.next_offset();
        }
        bytes.extend_from_slice(&data.records);
        aborted.extend(data.aborted_transactions.iter().map(|t| {
            (
                t.producer_id,
                t.first_offset,
                t.last_offset,
                t.last_stable_offset,
            )
        }));
    }
}

fn run(first: Vec<Op>, cut: usize, second: Vec<Op>, reopen_clean: bool) {
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let a = open(dir_a.path(), true);
    a.set_replicated(true);
    let (mut epoch, mut ts) = (0, 1_000);
    for o in &first {
        apply(&a, o, &mut epoch, &mut ts);
    }
    let before = all_bytes(&a);
    let leo = a.offsets().log_end_offset;
    a.set_high_watermark(leo);
    let k = (cut as u64 % (leo as u64 + 1)) as i64;
    a.truncate_to(k).unwrap();
    // Kept batches: those wholly below k.
    let mut kept = Vec::new();
    for b in BatchIter::new(&before) {
        let b = b.unwrap();
        if b.header.last_offset() < k {
            kept.extend_from_slice(b.bytes);
        }
    }
    let kept_end = headers(&kept).last().map_or(0, BatchHeader::next_offset);
    assert_eq!(a.offsets().log_end_offset, kept_end, "LEO after truncation");
    assert_eq!(a.high_watermark(), kept_end, "HW clamped to the new LEO");
    assert!(a.recovery_point() <= kept_end);

    let b = open(dir_b.path(), true);
    b.set_replicated(true);
    if !kept.is_empty() {
        b.append_as_follower(&kept).unwrap();
    }
    assert_same(&a, &b, "after truncation");
    // The epoch in force at the truncation point continues.
    let mut epoch_b = epoch;
    let (mut ts_a, mut ts_b) = (ts, ts);
    for o in &second {
        let x = apply(&a, o, &mut epoch, &mut ts_a);
        let y = apply(&b, o, &mut epoch_b, &mut ts_b);
        assert_eq!(x, y, "the same append on both logs");
    }
    assert_same(&a, &b, "after new appends");

    // A retried idempotent batch is a duplicate with the same offsets on both.
    if let Some(last) = a.producer_entry(1).and_then(|e| e.batches.back().copied()) {
        let n = (last.last_seq - last.first_seq + 1) as usize;
        for log in [&a, &b] {
            let mut retry = batch(n, 1, last.first_seq, false, 0);
            let info = log
                .append_with_epoch(&mut retry, AppendOrigin::Client, 0, epoch)
                .unwrap();
            assert!(info.duplicate);
            assert_eq!(
                (info.base_offset, info.last_offset),
                (last.first_offset, last.last_offset)
            );
        }
    }
    // Reopening (cleanly or with a full recovery) keeps it all.
    let hw = a.high_watermark();
    a.close().unwrap();
    drop(a);
    let a = open(dir_a.path(), reopen_clean);
    a.set_replicated(true);
    a.restore_high_watermark(hw);
    assert_same(&a, &b, "after reopening");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn truncate_then_append_equals_a_log_built_from_the_kept_batches(
        first in proptest::collection::vec(op(), 0..40),
        cut in any::<usize>(),
        second in proptest::collection::vec(op(), 0..15),
        reopen_clean in any::<bool>(),
    ) {
        run(first, cut, second, reopen_clean);
    }
}

#[test]
fn leader_appends_stamp_the_epoch_and_fill_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), true);
    let mut b = batch(2, -1, -1, false, 10);
    log.append(&mut b, AppendOrigin::Client, 10).unwrap();
    assert_eq!(BatchHeader::parse(&b).unwrap().partition_leader_epoch, 0);
    let mut b = batch(3, -1, -1, false, 11);
    log.append_with_epoch(&mut b, AppendOrigin::Client, 11, 5)
        .unwrap();
    assert_eq!(BatchHeader::parse(&b).unwrap().partition_leader_epoch, 5);
    // The stamp is outside the CRC: the stored batch still validates.
    BatchHeader::parse_and_validate(&b).unwrap();
    // A plain append continues with the current epoch.
    let mut b = batch(1, -1, -1, false, 12);
    log.append(&mut b, AppendOrigin::Client, 12).unwrap();
    assert_eq!(BatchHeader::parse(&b).unwrap().partition_leader_epoch, 5);
    let stored: Vec<i32> = headers(&all_bytes(&log))
        .iter()
        .map(|h| h.partition_leader_epoch)
        .collect();
    assert_eq!(stored, vec![0, 5, 5]);
    assert_eq!(
        log.epoch_entries(),
        vec![
            EpochEntry {
                epoch: 0,
                start_offset: 0
            },
            EpochEntry {
                epoch: 5,
                start_offset: 2
            }
        ]
    );
    assert_eq!(log.latest_epoch(), Some(5));
    assert_eq!(log.end_offset_for_epoch(5), Some((5, 6)));
    assert_eq!(log.end_offset_for_epoch(3), Some((0, 2)));
    assert_eq!(log.end_offset_for_epoch(9), None);
    assert_eq!(log.end_offset_for_epoch(-1), None);
    let text = std::fs::read_to_string(dir.path().join("leader-epoch-checkpoint")).unwrap();
    assert_eq!(text, "0\n2\n0 0\n5 2\n");
    // A new leader assigns its epoch at the log end before appending.
    log.assign_epoch_start_offset(7, 6).unwrap();
    assert_eq!(log.end_offset_for_epoch(5), Some((5, 6)));
    assert_eq!(log.end_offset_for_epoch(7), Some((7, 6)));
}

#[test]
fn the_epoch_cache_is_rebuilt_or_cut_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), true);
    for (i, e) in [1, 1, 3, 4].iter().enumerate() {
        let mut b = batch(2, -1, -1, false, i as i64);
        log.append_with_epoch(&mut b, AppendOrigin::Client, 0, *e)
            .unwrap();
    }
    let expected = log.epoch_entries();
    assert_eq!(expected.len(), 3);
    log.close().unwrap();
    drop(log);
    let path = dir.path().join("leader-epoch-checkpoint");
    // Missing: rebuilt from the batches.
    std::fs::remove_file(&path).unwrap();
    let log = open(dir.path(), true);
    assert_eq!(log.epoch_entries(), expected);
    assert!(path.exists());
    drop(log);
    // Damaged: rebuilt.
    std::fs::write(&path, "0\n5\n1 0\n").unwrap();
    let log = open(dir.path(), false);
    assert_eq!(log.epoch_entries(), expected);
    drop(log);
    // Entries beyond the log end (an epoch assigned, then its data lost): cut.
    std::fs::write(&path, "0\n4\n1 0\n3 4\n4 6\n9 8\n").unwrap();
    let log = open(dir.path(), true);
    assert_eq!(log.epoch_entries(), expected);
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "0\n3\n1 0\n3 4\n4 6\n"
    );
}

#[test]
fn retention_moves_the_cache_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(
        dir.path().to_path_buf(),
        "t",
        0,
        Arc::new(LogConfig {
            segment_bytes: 300,
            retention_bytes: 400,
            segment_ms: i64::MAX / 2,
            ..LogConfig::default()
        }),
        true,
        0,
    )
    .unwrap();
    for e in 0..6 {
        let mut b = batch(3, -1, -1, false, 100);
        log.append_with_epoch(&mut b, AppendOrigin::Client, 100, e)
            .unwrap();
    }
    assert!(log.apply_retention(200).unwrap() > 0);
    let start = log.offsets().log_start_offset;
    let entries = log.epoch_entries();
    assert_eq!(entries[0].start_offset, start);
    assert_eq!(entries.last().unwrap().epoch, 5);
    assert!(entries.len() < 6, "{entries:?}");
    // An epoch older than every kept entry answers with the first known start.
    let first = entries[0];
    if first.epoch > 0 {
        assert_eq!(
            log.end_offset_for_epoch(first.epoch - 1),
            Some((first.epoch - 1, first.start_offset))
        );
    }
}

#[test]
fn follower_appends_keep_what_the_leader_wrote() {
    let leader_dir = tempfile::tempdir().unwrap();
    let leader = PartitionLog::open(
        leader_dir.path().to_path_buf(),
        "t",
        0,
        Arc::new(LogConfig {
            message_timestamp_type: broker_embedded::record::TimestampType::LogAppendTime,
            ..LogConfig::default()
        }),
        true,
        0,
    )
    .unwrap();
    let mut big = batch(20, 1, 0, false, 5);
    leader
        .append_with_epoch(&mut big, AppendOrigin::Client, 777, 3)
        .unwrap();
    let mut t = batch(2, 2, 0, true, 6);
    leader
        .append_with_epoch(&mut t, AppendOrigin::Client, 778, 4)
        .unwrap();
    let fetched = leader.read_for_replica(0, 1 << 20).unwrap().records;

    // The follower's max.message.bytes is smaller than the leader's batch: still accepted.
    let follower_dir = tempfile::tempdir().unwrap();
    let follower = PartitionLog::open(
        follower_dir.path().to_path_buf(),
        "t",
        0,
        Arc::new(LogConfig {
            max_message_bytes: 64,
            ..LogConfig::default()
        }),
        true,
        0,
    )
    .unwrap();
    // Not starting at the log end: refused.
    let mut shifted = fetched.to_vec();
    broker_embedded::record::set_base_offset(&mut shifted, 5);
    let err = follower
        .append_as_follower(&shifted[..big.len()])
        .unwrap_err();
    assert!(matches!(
        err,
        BrokerError::UnexpectedAppendOffset {
            first_offset: 5,
            log_end_offset: 0,
            ..
        }
    ));
    let info = follower.append_as_follower(&fetched).unwrap();
    assert_eq!((info.base_offset, info.last_offset), (0, 21));
    assert_eq!(
        all_bytes(&follower),
        fetched.to_vec(),
        "stored byte for byte"
    );
    let hs = headers(&fetched);
    assert_eq!(hs[0].max_timestamp, 777, "LogAppendTime kept");
    assert_eq!(follower.epoch_entries(), leader.epoch_entries());
    assert_eq!(follower.active_producers(), leader.active_producers());
    assert_eq!(
        follower.offsets().last_stable_offset,
        20,
        "open transaction"
    );
    // Appending the same batches again is refused (below the log end).
    assert!(matches!(
        follower.append_as_follower(&fetched).unwrap_err(),
        BrokerError::UnexpectedAppendOffset { .. }
    ));
    // A corrupt batch is refused.
    let mut bad = leader.read_for_replica(0, 1).unwrap().records.to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    assert!(follower.append_as_follower(&bad).is_err());
}

#[test]
fn the_high_watermark_bounds_consumers_not_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), true);
    // Single-node mode: HW = LEO.
    for i in 0..3 {
        let mut b = batch(2, -1, -1, false, 100 * i);
        log.append(&mut b, AppendOrigin::Client, 0).unwrap();
    }
    assert!(!log.is_replicated());
    assert_eq!(log.high_watermark(), 6);
    assert_eq!(log.set_high_watermark(2), 6, "ignored unless replicated");

    log.set_replicated(true);
    assert_eq!(log.high_watermark(), 6, "keeps the single-node value");
    log.truncate_to(6).unwrap();
    let mut b = batch(2, -1, -1, false, 300);
    log.append(&mut b, AppendOrigin::Client, 0).unwrap();
    assert_eq!(log.offsets().log_end_offset, 8);
    assert_eq!(log.offsets().high_watermark, 6);
    // Consumers stop at the HW; replicas read to the LEO.
    let r = log
        .read(6, 1 << 20, IsolationLevel::ReadUncommitted)
        .unwrap();
    assert!(r.records.is_empty());
    assert_eq!(r.high_watermark, 6);
    let r = log
        .read(0, 1 << 20, IsolationLevel::ReadUncommitted)
        .unwrap();
    assert_eq!(headers(&r.records).last().unwrap().next_offset(), 6);
    let r = log.read_for_replica(6, 1 << 20).unwrap();
    assert_eq!(headers(&r.records).len(), 1);
    // Timestamp look-ups do not see records above the HW.
    assert_eq!(log.offset_for_timestamp(250).unwrap(), None);
    // The HW only moves forward, within [log start, LEO].
    assert_eq!(log.set_high_watermark(4), 6);
    assert_eq!(log.set_high_watermark(100), 8);
    assert_eq!(log.offset_for_timestamp(250).unwrap().map(|x| x.0), Some(6));
    // An open transaction above the HW: the LSO is capped by the HW.
    let mut t = batch(1, 9, 0, true, 400);
    log.append(&mut t, AppendOrigin::Client, 0).unwrap();
    let mut p = batch(1, -1, -1, false, 401);
    log.append(&mut p, AppendOrigin::Client, 0).unwrap();
    assert_eq!(log.offsets().last_stable_offset, 8);
    log.set_high_watermark(10);
    assert_eq!(log.offsets().last_stable_offset, 8, "the open transaction");
    // Truncation lowers it; restore initialises it within bounds.
    log.truncate_to(7).unwrap();
    assert_eq!(
        log.offsets().log_end_offset,
        6,
        "the whole batch 6..=7 goes"
    );
    assert_eq!(log.high_watermark(), 6);
    log.restore_high_watermark(-5);
    assert_eq!(log.high_watermark(), 0);
    log.set_replicated(false);
    assert_eq!(log.high_watermark(), 6);
}

#[test]
fn truncate_fully_and_start_at_starts_an_empty_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), true);
    for _ in 0..10 {
        let mut b = batch(3, 1, next_seq(&log, 1), false, 5);
        log.append_with_epoch(&mut b, AppendOrigin::Client, 0, 2)
            .unwrap();
    }
    log.roll().unwrap();
    log.truncate_fully_and_start_at(100).unwrap();
    let o = log.offsets();
    assert_eq!(
        (
            o.log_start_offset,
            o.log_end_offset,
            o.high_watermark,
            o.segments
        ),
        (100, 100, 100, 1)
    );
    assert!(log.epoch_entries().is_empty());
    assert!(log.producer_entry(1).is_none());
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.ends_with(".snapshot")
            && (!n.ends_with(".log") || n.starts_with("00000000000000000100"))),
        "{names:?}"
    );
    // Truncating below the first segment does the same.
    let mut b = batch(2, -1, -1, false, 5);
    log.append_with_epoch(&mut b, AppendOrigin::Client, 0, 3)
        .unwrap();
    assert_eq!(b[..8], 100i64.to_be_bytes());
    assert!(log.truncate_to(50).unwrap());
    assert_eq!(log.offsets().log_end_offset, 50);
    assert_eq!(log.offsets().log_start_offset, 50);
    drop(log);
    let log = open(dir.path(), false);
    assert_eq!(log.offsets().log_end_offset, 50);
}

/// Power cuts during and after a truncation (on `durable-fs`'s page-cache simulator, every
/// batch flushed): after recovery the log is a prefix of the old one, at least as long as the
/// kept part and exactly the kept part when the truncation completed; truncated records never
/// come back; producer state and the epoch cache agree with a log built from what survived.
#[test]
fn truncation_survives_power_cuts() {
    use durable_fs::sim::SimStorage;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    let seed: u64 = std::env::var("TRUNCATION_CUT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("TRUNCATION_CUT_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let cfg = Arc::new(LogConfig {
        segment_bytes: 700,
        index_interval_bytes: 150,
        segment_ms: i64::MAX / 2,
        flush_messages: 1,
        ..LogConfig::default()
    });
    let dir = std::path::PathBuf::from("/p/t-0");
    for case in 0..60 {
        let sim = SimStorage::new();
        let log = PartitionLog::open_with_storage(
            sim.shared(),
            dir.clone(),
            "t",
            0,
            Arc::clone(&cfg),
            true,
            0,
        )
        .unwrap();
        let (mut epoch, mut ts) = (0, 1_000);
        for _ in 0..rng.random_range(5..40) {
            let o = match rng.random_range(0..8) {
                0..=2 => Op::Plain(rng.random_range(1..5)),
                3 | 4 => Op::Idempotent(rng.random_range(1..5)),
                5 => Op::Txn(2, rng.random_range(1..4)),
                6 => Op::End(2, rng.random()),
                _ => Op::NewEpoch,
            };
            apply(&log, &o, &mut epoch, &mut ts);
        }
        let before = all_bytes(&log);
        let leo = log.offsets().log_end_offset;
        let k = rng.random_range(0..=leo);
        let mut kept_len = 0;
        for b in BatchIter::new(&before) {
            let b = b.unwrap();
            if b.header.last_offset() < k {
                kept_len += b.bytes.len();
            }
        }
        let armed = rng.random_bool(0.7);
        if armed {
            sim.arm_power_cut(rng.random_range(1..30), rng.random());
        }
        let result = log.truncate_to(k);
        let struck = sim.armed_cut_struck();
        assert!(
            result.is_ok() || struck,
            "case {case}: truncation failed without a power cut: {result:?}"
        );
        if !struck {
            sim.disarm_power_cut();
            sim.power_cut(rng.random());
        }
        drop(log);
        let log = PartitionLog::open_with_storage(
            sim.shared(),
            dir.clone(),
            "t",
            0,
            Arc::clone(&cfg),
            false,
            0,
        )
        .unwrap();
        let after = all_bytes(&log);
        assert!(
            before.starts_with(&after) && after.len() >= kept_len,
            "case {case} (seed {seed}): recovered {} bytes, kept {kept_len}, had {}",
            after.len(),
            before.len()
        );
        if !struck {
            assert_eq!(
                after.len(),
                kept_len,
                "case {case} (seed {seed}): completed truncation"
            );
        }
        // The same state as a log built from the surviving batches.
        let oracle_dir = tempfile::tempdir().unwrap();
        let oracle = open(oracle_dir.path(), true);
        if !after.is_empty() {
            oracle.append_as_follower(&after).unwrap();
        }
        assert_eq!(
            log.active_producers(),
            oracle.active_producers(),
            "case {case}"
        );
        assert_eq!(log.epoch_entries(), oracle.epoch_entries(), "case {case}");
        // And it takes new appends.
        let mut b = batch(2, -1, -1, false, 5);
        log.append_with_epoch(&mut b, AppendOrigin::Client, 5, epoch)
            .unwrap();
    }
}

/// On a compacted topic the leader's log has gaps; a follower keeps them, and its recovery
/// (which requires contiguity above the cleaner checkpoint) keeps every batch.
#[test]
fn follower_gaps_on_a_compacted_topic_survive_recovery() {
    let compacted = Arc::new(LogConfig {
        cleanup_policy: broker_embedded::CleanupPolicy {
            delete: false,
            compact: true,
        },
        ..LogConfig::default()
    });
    let mut stream = Vec::new();
    for (base, n) in [(0i64, 2usize), (5, 3), (8, 1), (20, 2)] {
        let mut b = batch(n, -1, -1, false, 10);
        broker_embedded::record::set_base_offset(&mut b, base);
        stream.extend_from_slice(&b);
    }
    let dir = tempfile::tempdir().unwrap();
    // As after a cleaner pass: the cleaner checkpoint says nothing at or above 0 was compacted
    // here, so recovery would take a gap above it for a corrupt base offset.
    let body = "0\n1\nt 0 0\n";
    std::fs::write(
        dir.path().join("cleaner-offset-checkpoint"),
        format!("{body}crc32c {:08x}\n", crc32c::crc32c(body.as_bytes())),
    )
    .unwrap();
    let log = PartitionLog::open(
        dir.path().to_path_buf(),
        "t",
        0,
        Arc::clone(&compacted),
        true,
        0,
    )
    .unwrap();
    log.append_as_follower(&stream).unwrap();
    assert_eq!(log.offsets().log_end_offset, 22);
    drop(log);
    let log = PartitionLog::open(dir.path().to_path_buf(), "t", 0, compacted, false, 0).unwrap();
    assert_eq!(all_bytes(&log), stream);

    // A non-compacted topic refuses gaps.
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), true);
    assert!(log.append_as_follower(&stream).is_err());
    assert_eq!(log.offsets().log_end_offset, 0);
}

/// Retention never deletes records above the high watermark (Kafka's `deletableSegments`).
#[test]
fn retention_keeps_what_is_not_committed() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(
        dir.path().to_path_buf(),
        "t",
        0,
        Arc::new(LogConfig {
            segment_bytes: 200,
            retention_ms: 10,
            segment_ms: i64::MAX / 2,
            ..LogConfig::default()
        }),
        true,
        0,
    )
    .unwrap();
    log.set_replicated(true);
    log.restore_high_watermark(0);
    for _ in 0..6 {
        let mut b = batch(2, -1, -1, false, 100);
        log.append(&mut b, AppendOrigin::Client, 100).unwrap();
    }
    assert!(log.offsets().segments > 2);
    assert_eq!(log.apply_retention(1_000_000).unwrap(), 0, "HW at 0");
    log.set_high_watermark(6);
    assert!(log.apply_retention(1_000_000).unwrap() > 0);
    let o = log.offsets();
    assert!(o.log_start_offset <= 6, "{o:?}");
    assert_eq!(o.log_end_offset, 12);
    assert_eq!(o.high_watermark, 6);
}
