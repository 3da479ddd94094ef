//! Recovery from corruption: flipped bytes and truncations in the middle and at the tail of a
//! segment, and damaged index files. Reopening must truncate or rebuild, never panic, and never
//! return a corrupt record.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};

use broker_embedded::{Broker, BrokerConfig, FetchOptions, NewTopic, OffsetSpec, ProduceRecord};

const N: usize = 60;

fn open(dir: &Path) -> Broker {
    let mut c = BrokerConfig::new(dir);
    c.cleaner_interval = None;
    Broker::open(c).unwrap()
}

fn value(i: usize) -> String {
    format!("value-{i}-{}", "x".repeat(i % 37))
}

/// Writes N records (one batch each) over several segments and shuts down cleanly.
fn populate(dir: &Path) -> Vec<PathBuf> {
    let b = open(dir);
    b.create_topic(
        NewTopic::new("t", 1)
            .config("segment.bytes", "2000")
            .config("index.interval.bytes", "100"),
    )
    .unwrap();
    for i in 0..N {
        b.produce(
            "t",
            0,
            &[ProduceRecord::new(format!("k{i}"), value(i)).with_timestamp(i as i64)],
        )
        .unwrap();
    }
    b.shutdown().unwrap();
    let mut logs: Vec<PathBuf> = fs::read_dir(dir.join("t-0"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    assert!(logs.len() >= 3, "several segments: {logs:?}");
    logs
}

/// Simulates a crash: no clean-shutdown marker and no recovery checkpoint.
fn forget_clean_shutdown(dir: &Path) {
    fs::remove_file(dir.join(".kafka_cleanshutdown")).unwrap();
    fs::remove_file(dir.join("recovery-point-offset-checkpoint")).unwrap();
}

/// Reads everything; checks each record is intact and they form a prefix 0..n of the input.
fn read_prefix(dir: &Path) -> usize {
    let b = open(dir);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let opts = FetchOptions {
        max_wait: std::time::Duration::ZERO,
        max_bytes: 300,
        ..FetchOptions::default()
    };
    let mut next = 0i64;
    loop {
        let recs = rt.block_on(b.fetch_records("t", 0, next, opts)).unwrap();
        if recs.is_empty() {
            break;
        }
        for r in recs {
            assert_eq!(r.offset, next, "no gaps");
            let i = r.offset as usize;
            assert_eq!(r.key.as_deref(), Some(format!("k{i}").as_bytes()));
            assert_eq!(r.value.as_deref(), Some(value(i).as_bytes()));
            next += 1;
        }
    }
    let end = b
        .list_offsets("t", 0, OffsetSpec::Latest)
        .unwrap()
        .unwrap()
        .offset;
    assert_eq!(
        end, next,
        "the log end is right after the last valid record"
    );
    // The log accepts appends again at the right offset.
    let info = b
        .produce("t", 0, &[ProduceRecord::new("after", "recovery")])
        .unwrap();
    assert_eq!(info.base_offset, next);
    next as usize
}

fn flip(path: &Path, at: usize) {
    let mut bytes = fs::read(path).unwrap();
    bytes[at] ^= 0x5a;
    fs::write(path, bytes).unwrap();
}

#[test]
fn flipped_byte_in_the_middle_of_the_last_segment_truncates_there() {
    let dir = tempfile::tempdir().unwrap();
    let logs = populate(dir.path());
    let last = logs.last().unwrap();
    let len = fs::metadata(last).unwrap().len() as usize;
    flip(last, len / 2);
    forget_clean_shutdown(dir.path());
    let n = read_prefix(dir.path());
    assert!(n < N && n > 0, "kept {n}");
}

#[test]
fn flipped_byte_in_an_earlier_segment_drops_everything_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let logs = populate(dir.path());
    let first_len = fs::metadata(&logs[0]).unwrap().len() as usize;
    flip(&logs[1], 70); // inside the first or second batch of the second segment
    forget_clean_shutdown(dir.path());
    let n = read_prefix(dir.path());
    let first_segment_records = n; // everything kept is from the first segment
    assert!(first_segment_records > 0 && first_len > 0);
    let remaining: Vec<_> = fs::read_dir(dir.path().join("t-0"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    assert_eq!(
        remaining.len(),
        2,
        "the segments after the corrupt one are gone: {remaining:?}"
    );
}

#[test]
fn torn_tail_is_truncated_at_the_last_whole_batch() {
    for cut in [1usize, 10, 61, 62] {
        let dir = tempfile::tempdir().unwrap();
        let logs = populate(dir.path());
        let last = logs.last().unwrap();
        let bytes = fs::read(last).unwrap();
        fs::write(last, &bytes[..bytes.len() - cut]).unwrap();
        forget_clean_shutdown(dir.path());
        assert_eq!(read_prefix(dir.path()), N - 1, "cut {cut} bytes");
    }
}

#[test]
fn garbage_appended_to_a_segment_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let logs = populate(dir.path());
    let last = logs.last().unwrap();
    let mut bytes = fs::read(last).unwrap();
    bytes.extend_from_slice(&[0xab; 500]);
    fs::write(last, bytes).unwrap();
    forget_clean_shutdown(dir.path());
    assert_eq!(read_prefix(dir.path()), N);
}

#[test]
fn damaged_indexes_are_rebuilt_even_after_a_clean_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let logs = populate(dir.path());
    // A torn offset index, a time index of garbage, and an index pointing past the log end.
    let idx0 = logs[0].with_extension("index");
    let bytes = fs::read(&idx0).unwrap();
    fs::write(&idx0, &bytes[..bytes.len() - 3]).unwrap();
    fs::write(logs[1].with_extension("timeindex"), [0xffu8; 24]).unwrap();
    fs::write(
        logs[2].with_extension("index"),
        [0x7f, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff],
    )
    .unwrap();
    fs::remove_file(logs[0].with_extension("timeindex")).unwrap();
    assert_eq!(read_prefix(dir.path()), N);
    // Timestamp lookups work on the rebuilt time indexes.
    let b = open(dir.path());
    let found = b
        .list_offsets("t", 0, OffsetSpec::Timestamp(37))
        .unwrap()
        .unwrap();
    assert_eq!((found.offset, found.timestamp), (37, 37));
}

#[test]
fn unreadable_producer_snapshot_is_ignored_and_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    populate(dir.path());
    for e in fs::read_dir(dir.path().join("t-0")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|e| e == "snapshot") {
            fs::write(&p, b"garbage").unwrap();
        }
    }
    assert_eq!(read_prefix(dir.path()), N);
}
