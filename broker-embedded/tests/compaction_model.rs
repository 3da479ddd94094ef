//! Property test of compaction against an oracle: random keyed puts and tombstones over random
//! segment rolls; after a forced cleaner pass the log holds exactly the latest record of every
//! key (tombstones included until their delete horizon, gone after it), at their original
//! offsets, and the same after a restart.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::Duration;

use broker_embedded::record::{encode_batch, BatchSpec, Compression, Record};
use broker_embedded::{AppendOrigin, Broker, BrokerConfig, FetchOptions, NewTopic};

const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];
use bytes::Bytes;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Put(u8, Option<u16>),
    Roll,
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(
        prop_oneof![
            8 => (0u8..12, proptest::option::weighted(0.8, any::<u16>())).prop_map(|(k, v)| Op::Put(k, v)),
            1 => Just(Op::Roll),
        ],
        1..80,
    )
}

fn read_all(b: &Broker, rt: &tokio::runtime::Runtime) -> Vec<(i64, Vec<u8>, Option<Vec<u8>>)> {
    let opts = FetchOptions {
        max_wait: Duration::ZERO,
        max_bytes: 512,
        ..FetchOptions::default()
    };
    let mut offset = b.partition_offsets("c", 0).unwrap().log_start_offset;
    let mut out = Vec::new();
    loop {
        let recs = rt.block_on(b.fetch_records("c", 0, offset, opts)).unwrap();
        let Some(last) = recs.last() else { break };
        offset = last.offset + 1;
        out.extend(recs.into_iter().map(|r| {
            (
                r.offset,
                r.key.unwrap().to_vec(),
                r.value.map(|v| v.to_vec()),
            )
        }));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn compaction_keeps_exactly_the_latest_record_per_key(ops in ops(), small_segments: bool, codec in 0usize..5) {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = BrokerConfig::new(dir.path());
        cfg.cleaner_interval = None;
        let b = Broker::open(cfg.clone()).unwrap();
        b.create_topic(
            NewTopic::new("c", 1)
                .config("cleanup.policy", "compact")
                .config("delete.retention.ms", "1000")
                .config("segment.bytes", if small_segments { "400" } else { "100000" }),
        )
        .unwrap();
        let mut latest: BTreeMap<Vec<u8>, (i64, Option<Vec<u8>>)> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Put(k, v) => {
                    let key = vec![b'k', k];
                    let value = v.map(|v| v.to_be_bytes().to_vec());
                    let rec = Record {
                        offset: 0,
                        key: Some(Bytes::from(key.clone())),
                        value: value.clone().map(Bytes::from),
                        headers: vec![],
                        timestamp: 5,
                    };
                    let spec = BatchSpec { compression: CODECS[codec], ..BatchSpec::default() };
                    let mut batch = encode_batch(&spec, &[rec]).unwrap();
                    let info = b.append_batches("c", 0, &mut batch, AppendOrigin::Client).unwrap();
                    latest.insert(key, (info.base_offset, value));
                }
                Op::Roll => b.roll_segment("c", 0).unwrap(),
            }
        }
        let end = b.partition_offsets("c", 0).unwrap().log_end_offset;
        b.roll_segment("c", 0).unwrap(); // the active segment is never compacted
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let now = 1_000_000;
        b.run_cleaner_pass_at(now, true).unwrap();
        let mut expected: Vec<_> = latest.iter().map(|(k, (o, v))| (*o, k.clone(), v.clone())).collect();
        expected.sort();
        prop_assert_eq!(read_all(&b, &rt), expected.clone());
        prop_assert_eq!(b.partition_offsets("c", 0).unwrap().log_end_offset, end);

        // Past the delete horizon the tombstones go.
        b.run_cleaner_pass_at(now + 1_000, true).unwrap();
        let live: Vec<_> = expected.into_iter().filter(|r| r.2.is_some()).collect();
        prop_assert_eq!(read_all(&b, &rt), live.clone());
        drop(b);
        let b = Broker::open(cfg).unwrap();
        prop_assert_eq!(read_all(&b, &rt), live);
        prop_assert_eq!(b.partition_offsets("c", 0).unwrap().log_end_offset, end);
    }
}
