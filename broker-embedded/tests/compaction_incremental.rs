//! Compaction against an oracle with appends interleaved with incremental cleaner passes under
//! varying `min.cleanable.dirty.ratio`, `min.compaction.lag.ms` and tombstone horizons, plus
//! idempotent producers, then a clean or unclean restart:
//! - every record served is one appended, at its original offset;
//! - each key's latest record is never removed, except a tombstone past its delete horizon, and
//!   then no older record of the key is left (a deleted key never comes back);
//! - a pass removes only records superseded by a newer record of their key (or expired
//!   tombstones), and only records at least `min.compaction.lag.ms` old;
//! - a pass that is not forced removes nothing when the dirty ratio cannot be reached;
//! - the producer state survives compaction and restarts: a retry of the last idempotent batch
//!   is still a duplicate.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use broker_embedded::record::{encode_batch, BatchIter, BatchSpec, Record};
use broker_embedded::{AppendOrigin, CleanupPolicy, IsolationLevel, LogConfig, PartitionLog};
use bytes::Bytes;
use durable_fs::sim::SimStorage;
use proptest::prelude::*;

const PRODUCER_ID: i64 = 5;
const DELETE_RETENTION_MS: i64 = 2_000;

#[derive(Debug, Clone)]
enum Op {
    Put {
        key: u8,
        value: Option<u16>,
        idempotent: bool,
    },
    Roll,
    Pass {
        advance: i64,
        ratio: f64,
        min_lag: i64,
        force: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (0u8..8, proptest::option::weighted(0.8, any::<u16>()), proptest::bool::weighted(0.2))
            .prop_map(|(key, value, idempotent)| Op::Put { key, value, idempotent }),
        2 => Just(Op::Roll),
        2 => (0i64..4_000, prop_oneof![Just(0.0), Just(0.5), Just(1.01)], prop_oneof![Just(0i64), Just(1_000), Just(5_000)], any::<bool>())
            .prop_map(|(advance, ratio, min_lag, force)| Op::Pass { advance, ratio, min_lag, force }),
    ]
}

fn config(ratio: f64, min_lag: i64) -> Arc<LogConfig> {
    Arc::new(LogConfig {
        cleanup_policy: CleanupPolicy {
            delete: false,
            compact: true,
        },
        segment_bytes: 400,
        index_interval_bytes: 100,
        segment_ms: i64::MAX / 2,
        min_cleanable_dirty_ratio: ratio,
        min_compaction_lag_ms: min_lag,
        delete_retention_ms: DELETE_RETENTION_MS,
        ..LogConfig::default()
    })
}

#[derive(Debug, Clone, PartialEq)]
struct Rec {
    key: u8,
    value: Option<u16>,
    ts: i64,
}

fn record(r: &Rec) -> Record {
    Record {
        offset: 0,
        timestamp: r.ts,
        key: Some(Bytes::from(vec![b'k', r.key])),
        value: r.value.map(|v| Bytes::from(v.to_be_bytes().to_vec())),
        headers: vec![],
    }
}

fn served(log: &PartitionLog) -> BTreeMap<i64, Rec> {
    let mut offset = log.offsets().log_start_offset;
    let mut out = BTreeMap::new();
    loop {
        let data = log
            .read(offset, 512, IsolationLevel::ReadUncommitted)
            .unwrap();
        if data.records.is_empty() {
            return out;
        }
        for r in broker_embedded::decode_fetched("t", &data.records, offset).unwrap() {
            let key = r.key.as_deref().unwrap()[1];
            let value = r.value.as_deref().map(|v| u16::from_be_bytes([v[0], v[1]]));
            out.insert(
                r.offset,
                Rec {
                    key,
                    value,
                    ts: r.timestamp,
                },
            );
        }
        let mut next = offset;
        for b in BatchIter::new(&data.records) {
            next = next.max(b.unwrap().header.next_offset());
        }
        offset = next;
    }
}

/// The invariants that hold whatever the cleaner did so far.
fn check_always(log: &PartitionLog, model: &[Rec]) -> Result<(), TestCaseError> {
    let got = served(log);
    for (o, r) in &got {
        prop_assert_eq!(
            Some(r),
            model.get(*o as usize),
            "record at {} is not the one appended",
            o
        );
    }
    let mut latest: BTreeMap<u8, usize> = BTreeMap::new();
    for (o, r) in model.iter().enumerate() {
        latest.insert(r.key, o);
    }
    for (key, &o) in &latest {
        let present = got.contains_key(&(o as i64));
        if model[o].value.is_some() {
            prop_assert!(
                present,
                "the latest value of key {} (offset {}) was removed",
                key,
                o
            );
        } else if !present {
            let resurrected = got.values().any(|r| r.key == *key);
            prop_assert!(
                !resurrected,
                "key {} was deleted but an older value came back",
                key
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn incremental_compaction_matches_the_oracle(ops in proptest::collection::vec(op(), 1..120), clean_restart in any::<bool>()) {
        let sim = SimStorage::new();
        let dir = PathBuf::from("/data/t-0");
        let mut cfg = config(0.0, 0);
        let mut log = PartitionLog::open_with_storage(sim.shared(), dir.clone(), "t", 0, Arc::clone(&cfg), true, 0).unwrap();
        let mut model: Vec<Rec> = Vec::new();
        let mut now = 10_000i64;
        let mut seq = 0i32;
        let mut last_idempotent: Option<(i32, i64, Rec)> = None;
        let mut removed_total = 0usize;
        for op in ops {
            match op {
                Op::Put { key, value, idempotent } => {
                    now += 7;
                    let r = Rec { key, value, ts: now };
                    let spec = if idempotent {
                        BatchSpec { producer_id: PRODUCER_ID, producer_epoch: 0, base_sequence: seq, ..BatchSpec::default() }
                    } else {
                        BatchSpec::default()
                    };
                    let mut bytes = encode_batch(&spec, &[record(&r)]).unwrap();
                    let info = log.append(&mut bytes, AppendOrigin::Client, now).unwrap();
                    prop_assert_eq!(info.base_offset, model.len() as i64);
                    if idempotent {
                        last_idempotent = Some((seq, info.base_offset, r.clone()));
                        seq += 1;
                    }
                    model.push(r);
                }
                Op::Roll => log.roll().unwrap(),
                Op::Pass { advance, ratio, min_lag, force } => {
                    now += advance;
                    cfg = config(ratio, min_lag);
                    log.set_config(Arc::clone(&cfg));
                    let before = served(&log);
                    log.compact(now, force).unwrap();
                    let after = served(&log);
                    let removed: Vec<i64> = before.keys().filter(|o| !after.contains_key(o)).copied().collect();
                    if ratio > 1.0 && !force {
                        prop_assert!(removed.is_empty(), "a pass below the dirty ratio removed {:?}", removed);
                    }
                    for o in &removed {
                        let r = &model[*o as usize];
                        prop_assert!(now - r.ts >= min_lag, "record {} removed {} ms after it was written (min lag {})", o, now - r.ts, min_lag);
                        let superseded = model[*o as usize + 1..].iter().any(|n| n.key == r.key);
                        let expired_tombstone = r.value.is_none() && !superseded;
                        prop_assert!(superseded || expired_tombstone, "record {} removed although it was its key's latest", o);
                    }
                    removed_total += removed.len();
                }
            }
            check_always(&log, &model)?;
        }
        // Producer state survives compaction: a retry of the last idempotent batch is a duplicate.
        let retry = |log: &PartitionLog| -> Result<(), TestCaseError> {
            if let Some((s, base, r)) = &last_idempotent {
                let spec = BatchSpec { producer_id: PRODUCER_ID, producer_epoch: 0, base_sequence: *s, ..BatchSpec::default() };
                let mut bytes = encode_batch(&spec, &[record(r)]).unwrap();
                let info = log.append(&mut bytes, AppendOrigin::Client, now).unwrap();
                prop_assert!(info.duplicate, "retry of sequence {} not recognised", s);
                prop_assert_eq!(info.base_offset, *base);
            }
            Ok(())
        };
        retry(&log)?;
        let before = served(&log);
        let rp = log.recovery_point();
        if clean_restart {
            log.close().unwrap();
        }
        drop(log);
        log = PartitionLog::open_with_storage(sim.shared(), dir, "t", 0, cfg, clean_restart, rp).unwrap();
        prop_assert_eq!(served(&log), before, "the restart changed what is served");
        retry(&log)?;
        check_always(&log, &model)?;
        eprintln!("case: {removed_total} records removed by incremental passes");
    }
}

#[test]
fn a_pass_removes_superseded_records_and_keeps_the_latest() {
    let sim = SimStorage::new();
    let log = PartitionLog::open_with_storage(
        sim.shared(),
        PathBuf::from("/data/t-0"),
        "t",
        0,
        config(0.0, 0),
        true,
        0,
    )
    .unwrap();
    for i in 0..60u16 {
        let r = Rec {
            key: (i % 3) as u8,
            value: Some(i),
            ts: 1_000 + i64::from(i),
        };
        let mut bytes = encode_batch(&BatchSpec::default(), &[record(&r)]).unwrap();
        log.append(&mut bytes, AppendOrigin::Client, 0).unwrap();
    }
    let before = served(&log).len();
    let stats = log.compact(100_000, false).unwrap();
    assert!(stats.records_removed > 0);
    assert_eq!(
        served(&log).len() as u64,
        before as u64 - stats.records_removed
    );
}
