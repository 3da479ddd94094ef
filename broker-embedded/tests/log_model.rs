//! Model-based property test of the partition log: random appends, segment rolls, clean and
//! unclean reopenings and retention runs; reading back must yield exactly the acknowledged
//! records (those not deleted by retention), in order, and timestamp lookups must agree with
//! the model.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use broker_embedded::record::{encode_batch, BatchSpec, Record};
use broker_embedded::{AppendOrigin, IsolationLevel, LogConfig, PartitionLog};
use bytes::Bytes;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Append {
        records: Vec<(Option<Vec<u8>>, Vec<u8>, i64)>,
    },
    Roll,
    Reopen {
        clean: bool,
    },
    RetainBytes(u64),
    RetainMs {
        now: i64,
        retention: i64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let record = (
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8)),
        proptest::collection::vec(any::<u8>(), 0..300),
        0i64..10_000,
    );
    prop_oneof![
        6 => proptest::collection::vec(record, 1..6).prop_map(|records| Op::Append { records }),
        1 => Just(Op::Roll),
        1 => any::<bool>().prop_map(|clean| Op::Reopen { clean }),
        1 => (500u64..6_000).prop_map(Op::RetainBytes),
        1 => (0i64..12_000, 0i64..5_000).prop_map(|(now, retention)| Op::RetainMs { now, retention }),
    ]
}

fn config(retention_bytes: i64, retention_ms: i64) -> Arc<LogConfig> {
    Arc::new(LogConfig {
        segment_bytes: 1_500,
        index_interval_bytes: 200,
        retention_bytes,
        retention_ms,
        segment_ms: i64::MAX / 2,
        ..LogConfig::default()
    })
}

/// (offset, key, value, timestamp) of an acknowledged record.
type ModelRecord = (i64, Option<Vec<u8>>, Vec<u8>, i64);

struct Model {
    /// Every acknowledged record, in offset order.
    records: Vec<ModelRecord>,
}

fn read_all(log: &PartitionLog) -> Vec<Record> {
    let start = log.offsets().log_start_offset;
    let mut offset = start;
    let mut out = Vec::new();
    loop {
        let data = log
            .read(offset, 700, IsolationLevel::ReadUncommitted)
            .unwrap();
        if data.records.is_empty() {
            break;
        }
        let recs = broker_embedded::decode_fetched("t", &data.records, offset).unwrap();
        assert!(!recs.is_empty(), "a non-empty fetch yields records");
        offset = recs.last().unwrap().offset + 1;
        out.extend(recs);
    }
    out
}

fn check(log: &PartitionLog, model: &Model) {
    let start = log.offsets().log_start_offset;
    let expected: Vec<_> = model.records.iter().filter(|r| r.0 >= start).collect();
    let got = read_all(log);
    assert_eq!(got.len(), expected.len(), "record count");
    for (g, e) in got.iter().zip(expected) {
        assert_eq!(g.offset, e.0);
        assert_eq!(g.key.as_deref(), e.1.as_deref());
        assert_eq!(g.value.as_deref(), Some(&e.2[..]));
        assert_eq!(g.timestamp, e.3);
    }
    // Timestamp lookups: the first record (offset order) with ts >= target.
    for target in [0, 1, 2_500, 5_000, 9_999, 10_000] {
        let want = model
            .records
            .iter()
            .filter(|r| r.0 >= start)
            .find(|r| r.3 >= target)
            .map(|r| (r.0, r.3));
        assert_eq!(
            log.offset_for_timestamp(target).unwrap(),
            want,
            "timestamp {target}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn log_matches_model(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t-0");
        let mut cfg = config(-1, -1);
        let mut log = PartitionLog::open(path.clone(), "t", 0, cfg.clone(), true, 0).unwrap();
        let mut model = Model { records: Vec::new() };
        for op in ops {
            match op {
                Op::Append { records } => {
                    let recs: Vec<Record> = records
                        .iter()
                        .enumerate()
                        .map(|(i, (k, v, ts))| Record {
                            offset: i as i64,
                            timestamp: *ts,
                            key: k.clone().map(Bytes::from),
                            value: Some(Bytes::from(v.clone())),
                            headers: vec![],
                        })
                        .collect();
                    let mut batch = encode_batch(&BatchSpec::default(), &recs).unwrap();
                    let info = log.append(&mut batch, AppendOrigin::Client, 0).unwrap();
                    prop_assert_eq!(info.last_offset - info.base_offset + 1, records.len() as i64);
                    for (i, (k, v, ts)) in records.into_iter().enumerate() {
                        model.records.push((info.base_offset + i as i64, k, v, ts));
                    }
                }
                Op::Roll => log.roll().unwrap(),
                Op::Reopen { clean } => {
                    let rp = log.recovery_point();
                    if clean {
                        log.close().unwrap();
                    }
                    drop(log);
                    log = PartitionLog::open(path.clone(), "t", 0, cfg.clone(), clean, rp).unwrap();
                }
                Op::RetainBytes(bytes) => {
                    cfg = config(bytes as i64, -1);
                    log.set_config(cfg.clone());
                    let before = log.offsets();
                    log.apply_retention(0).unwrap();
                    let after = log.offsets();
                    prop_assert!(after.size_bytes + 1_500 + 400 >= bytes.min(before.size_bytes),
                        "retention.bytes deletes whole segments only while the rest stays above the limit");
                }
                Op::RetainMs { now, retention } => {
                    cfg = config(-1, retention);
                    log.set_config(cfg.clone());
                    let before = log.offsets().log_start_offset;
                    log.apply_retention(now).unwrap();
                    let after = log.offsets().log_start_offset;
                    // A segment goes only when its newest record is older than the retention,
                    // so every record deleted by this run is older too.
                    for r in model.records.iter().filter(|r| r.0 >= before && r.0 < after) {
                        prop_assert!(now - r.3 > retention, "record {} (ts {}) deleted too early", r.0, r.3);
                    }
                }
            }
            check(&log, &model);
            let offs = log.offsets();
            prop_assert_eq!(offs.log_end_offset, model.records.last().map_or(offs.log_end_offset, |r| r.0 + 1));
        }
    }
}
