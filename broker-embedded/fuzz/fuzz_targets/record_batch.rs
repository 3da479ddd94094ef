//! The record-batch validation path a produce request goes through: header parsing, CRC,
//! `validate_records` (strict and lenient, with and without required keys), `decode_records`
//! (every codec), `BatchIter`, LogAppendTime stamping and `PartitionLog::append` of client
//! batches on a temporary directory, then reading back what was accepted.
//!
//! Input: one flags byte, then the batch bytes. Flags let the fuzzer get past the checks that
//! random bytes almost never pass (the target fixes up `batchLength` and the CRC-32C), so the
//! record-level code gets exercised.
#![no_main]

use std::cell::RefCell;
use std::sync::Arc;

use broker_embedded::record::{
    decode_records, set_log_append_time, validate_records, BatchHeader, BatchIter,
};
use broker_embedded::{AppendOrigin, IsolationLevel, LogConfig, PartitionLog};
use libfuzzer_sys::fuzz_target;

const FIX_LENGTH: u8 = 1;
const FIX_CRC: u8 = 2;
const STRICT: u8 = 4;
const REQUIRE_KEYS: u8 = 8;
const APPEND: u8 = 16;
const LOG_APPEND_TIME: u8 = 32;

/// Appends before the logs are thrown away and reopened from scratch.
const APPENDS_PER_LOG: u32 = 2_000;

struct Logs {
    _dir: tempfile::TempDir,
    plain: PartitionLog,
    compacted: PartitionLog,
    appends: u32,
}

impl Logs {
    fn open() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = LogConfig::default();
        // Small segments and indexes: rolls happen often.
        config.segment_bytes = 64 * 1024;
        config.index_interval_bytes = 512;
        config.max_message_bytes = 256 * 1024;
        let mut compact = config.clone();
        compact.cleanup_policy.compact = true;
        compact.message_timestamp_type = broker_embedded::record::TimestampType::LogAppendTime;
        let plain = PartitionLog::open(dir.path().join("t-0"), "t", 0, Arc::new(config), true, 0)
            .expect("open plain log");
        let compacted =
            PartitionLog::open(dir.path().join("c-0"), "c", 0, Arc::new(compact), true, 0)
                .expect("open compacted log");
        Self {
            _dir: dir,
            plain,
            compacted,
            appends: 0,
        }
    }
}

thread_local! {
    static LOGS: RefCell<Option<Logs>> = const { RefCell::new(None) };
}

fn fix_up(flags: u8, batch: &mut [u8]) {
    if flags & FIX_LENGTH != 0 && batch.len() >= 12 {
        let len = i32::try_from(batch.len() - 12).unwrap_or(i32::MAX);
        batch[8..12].copy_from_slice(&len.to_be_bytes());
    }
    if flags & FIX_CRC != 0 && batch.len() >= 61 {
        let size = BatchHeader::parse(batch)
            .map(|h| h.size())
            .unwrap_or(batch.len())
            .min(batch.len());
        let crc = crc32c_of(&batch[21..size]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
    }
}

/// CRC-32C (Castagnoli), bitwise: the target does not need the fast crate.
fn crc32c_of(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut batch = rest.to_vec();
    fix_up(flags, &mut batch);

    let _ = BatchHeader::parse(&batch);
    let validated = BatchHeader::parse_and_validate(&batch);
    let strict = flags & STRICT != 0;
    let require_keys = flags & REQUIRE_KEYS != 0;

    // Validation and decoding must agree: whatever validates decodes, with as many
    // tombstones as validation counted.
    let checked = validate_records(&batch, strict, require_keys);
    let decoded = decode_records(&batch);
    if let Ok(tombstones) = checked {
        let records = decoded.as_ref().expect("validated batch must decode");
        let header = validated
            .as_ref()
            .expect("validated batch has a valid header");
        assert_eq!(records.len(), header.record_count as usize);
        let nulls = records.iter().filter(|r| r.value.is_none()).count();
        assert_eq!(nulls, tombstones as usize);
        for pair in records.windows(2) {
            assert!(pair[0].offset < pair[1].offset, "offsets must increase");
        }
    }

    // Concatenated batches: the iterator stops at the first bad one and never overruns.
    let mut end = 0;
    for item in BatchIter::new(&batch) {
        match item {
            Ok(b) => {
                assert_eq!(b.position, end);
                end = b.position + b.bytes.len();
                assert!(end <= batch.len());
            }
            Err((pos, _)) => assert_eq!(pos, end),
        }
    }

    // LogAppendTime stamping keeps a valid batch valid.
    if validated.is_ok() {
        let mut stamped = batch.clone();
        set_log_append_time(&mut stamped, 1_700_000_000_000).expect("stamp a valid batch");
        BatchHeader::parse_and_validate(&stamped).expect("stamped batch stays valid");
    }

    if flags & APPEND != 0 {
        LOGS.with(|cell| {
            let mut slot = cell.borrow_mut();
            let logs = slot.get_or_insert_with(Logs::open);
            let log = if flags & LOG_APPEND_TIME != 0 {
                &logs.compacted
            } else {
                &logs.plain
            };
            let mut buf = batch.clone();
            if let Ok(info) = log.append(&mut buf, AppendOrigin::Client, 1_700_000_000_000) {
                assert!(info.last_offset >= info.base_offset || info.duplicate);
                if !info.duplicate {
                    let read = log
                        .read(info.base_offset, 1, IsolationLevel::ReadUncommitted)
                        .expect("read back an appended batch");
                    let first = BatchIter::new(&read.records)
                        .next()
                        .expect("a batch comes back")
                        .expect("what was appended reads back valid");
                    assert!(first.header.base_offset <= info.base_offset);
                    decode_records(first.bytes).expect("appended batch decodes");
                }
                logs.appends += 1;
            }
            if logs.appends >= APPENDS_PER_LOG {
                *slot = None;
            }
        });
    }
});
