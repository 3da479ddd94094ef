//! Log throughput benchmark (report-only; numbers go to BENCHMARKS.md).
//!
//! `cargo bench -p broker-embedded --bench log_throughput` (or `./dev bench`). Options after
//! `--`: `--quick` (smaller volumes), `--skip-recovery`, `--dir DIR` (where to write; default a
//! temporary directory).
//!
//! Measures, through the in-process `Broker` with pre-encoded record batches (what a producer
//! sends): append throughput and per-append latency for 100-byte and 1 KiB records, batches of
//! 1 and 1000, fsync off vs fsync per batch, one and eight partitions; read throughput; the
//! recovery time of a 1 GiB log after a clean and an unclean stop; and this machine's memory
//! copy rate for comparison.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use broker_embedded::record::{encode_batch, BatchSpec, Record};
use broker_embedded::{AppendOrigin, Broker, BrokerConfig, FetchOptions, FlushPolicy, NewTopic};
use bytes::Bytes;

struct Opts {
    quick: bool,
    skip_recovery: bool,
    dir: Option<PathBuf>,
}

fn opts() -> Opts {
    let args: Vec<String> = std::env::args().collect();
    let dir = args
        .iter()
        .position(|a| a == "--dir")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from);
    Opts {
        quick: args.iter().any(|a| a == "--quick"),
        skip_recovery: args.iter().any(|a| a == "--skip-recovery"),
        dir,
    }
}

fn batch(records: usize, size: usize) -> Vec<u8> {
    let value = Bytes::from(vec![0x61u8; size]);
    let recs: Vec<Record> = (0..records)
        .map(|i| Record {
            offset: i as i64,
            timestamp: 1_700_000_000_000 + i as i64,
            key: Some(Bytes::from(format!("key-{:08}", i))),
            value: Some(value.clone()),
            headers: vec![],
        })
        .collect();
    encode_batch(&BatchSpec::default(), &recs).unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn open(dir: &Path, fsync: bool) -> Broker {
    let mut c = BrokerConfig::new(dir).with_flush_policy(if fsync {
        FlushPolicy::EveryBatch
    } else {
        FlushPolicy::Os
    });
    c.cleaner_interval = None;
    Broker::open(c).unwrap()
}

fn run_append(
    base: &Path,
    size: usize,
    batch_records: usize,
    fsync: bool,
    partitions: u32,
    quick: bool,
) {
    let dir = tempfile::tempdir_in(base).unwrap();
    let broker = open(dir.path(), fsync);
    broker
        .create_topic(NewTopic::new("bench", partitions))
        .unwrap();
    let template = batch(batch_records, size);
    let batch_bytes = template.len();
    // Volume: ~1 GiB (256 MiB quick) without fsync; bounded by time with fsync.
    let target_bytes: usize = if quick { 256 << 20 } else { 1 << 30 };
    let max_batches = (target_bytes / batch_bytes).max(1);
    let time_budget = if fsync {
        Duration::from_secs(if quick { 2 } else { 4 })
    } else {
        Duration::from_secs(60)
    };
    let mut lat = Vec::with_capacity(max_batches.min(1 << 20));
    let mut buf = template.clone();
    let t0 = Instant::now();
    let mut n = 0usize;
    while n < max_batches && t0.elapsed() < time_budget {
        buf.copy_from_slice(&template);
        let p = (n % partitions as usize) as i32;
        let s = Instant::now();
        broker
            .append_batches("bench", p, &mut buf, AppendOrigin::Client)
            .unwrap();
        lat.push(s.elapsed());
        n += 1;
    }
    let elapsed = t0.elapsed();
    lat.sort_unstable();
    let records = n * batch_records;
    let bytes = n * batch_bytes;
    println!(
        "append  rec={size:>5}B batch={batch_records:>4} fsync={:<5} partitions={partitions}  {:>10.0} rec/s  {:>8.1} MB/s  append p50={:>8.1?} p99={:>8.1?}  ({} records, {:.2}s)",
        if fsync { "batch" } else { "off" },
        records as f64 / elapsed.as_secs_f64(),
        bytes as f64 / 1e6 / elapsed.as_secs_f64(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        records,
        elapsed.as_secs_f64()
    );
    if !fsync {
        // Read everything back through the fetch path (decoding headers only).
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let opts = FetchOptions {
            max_wait: Duration::ZERO,
            max_bytes: 1 << 20,
            ..FetchOptions::default()
        };
        let t1 = Instant::now();
        let mut read_bytes = 0usize;
        for p in 0..partitions as i32 {
            let mut offset = 0i64;
            loop {
                let data = rt.block_on(broker.fetch("bench", p, offset, opts)).unwrap();
                if data.records.is_empty() {
                    break;
                }
                read_bytes += data.records.len();
                let mut last = offset;
                for b in broker_embedded::record::BatchIter::new(&data.records) {
                    last = b.unwrap().header.next_offset();
                }
                offset = last;
            }
        }
        let re = t1.elapsed();
        println!(
            "read    rec={size:>5}B batch={batch_records:>4} partitions={partitions}               {:>10.0} rec/s  {:>8.1} MB/s",
            (read_bytes / batch_bytes * batch_records) as f64 / re.as_secs_f64(),
            read_bytes as f64 / 1e6 / re.as_secs_f64()
        );
    }
    broker.shutdown().unwrap();
}

fn memcpy_rate() -> f64 {
    let src = vec![1u8; 256 << 20];
    let mut dst = vec![0u8; 256 << 20];
    let t = Instant::now();
    for _ in 0..4 {
        dst.copy_from_slice(&src);
        std::hint::black_box(&dst);
    }
    (4.0 * (256 << 20) as f64) / 1e6 / t.elapsed().as_secs_f64()
}

fn recovery(base: &Path, quick: bool) {
    let dir = tempfile::tempdir_in(base).unwrap();
    let gib: usize = if quick { 256 << 20 } else { 1 << 30 };
    {
        let broker = open(dir.path(), false);
        broker.create_topic(NewTopic::new("big", 1)).unwrap();
        let template = batch(1000, 1024);
        let mut buf = template.clone();
        for _ in 0..gib / template.len() {
            buf.copy_from_slice(&template);
            broker
                .append_batches("big", 0, &mut buf, AppendOrigin::Client)
                .unwrap();
        }
        broker.shutdown().unwrap();
    }
    let size = broker_size(dir.path());
    let t = Instant::now();
    let broker = open(dir.path(), false);
    let clean = t.elapsed();
    broker.shutdown().unwrap();
    drop(broker);
    std::fs::remove_file(dir.path().join(".kafka_cleanshutdown")).unwrap();
    std::fs::remove_file(dir.path().join("recovery-point-offset-checkpoint")).unwrap();
    let t = Instant::now();
    let broker = open(dir.path(), false);
    let unclean = t.elapsed();
    println!(
        "recovery of a {:.2} GiB log: clean stop {:.1?}, unclean stop (full CRC validation + index rebuild) {:.2?} = {:.0} MB/s",
        size as f64 / (1u64 << 30) as f64,
        clean,
        unclean,
        size as f64 / 1e6 / unclean.as_secs_f64()
    );
    broker.shutdown().unwrap();
}

fn broker_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir.join("big-0"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum()
}

fn main() {
    let o = opts();
    let tmp = tempfile::tempdir_in(o.dir.clone().unwrap_or_else(std::env::temp_dir)).unwrap();
    let base = tmp.path();
    println!("memory copy: {:.0} MB/s", memcpy_rate());
    for &size in &[100usize, 1024] {
        for &batch_records in &[1usize, 1000] {
            for &fsync in &[false, true] {
                for &partitions in &[1u32, 8] {
                    run_append(base, size, batch_records, fsync, partitions, o.quick);
                }
            }
        }
    }
    if !o.skip_recovery {
        recovery(base, o.quick);
    }
}
