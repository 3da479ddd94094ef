//! Word count end to end on the embedded broker (report-only; see BENCHMARKS.md).
//!
//! ```text
//! cargo bench -p examples --bench word_count -- [--lines N] [--dir DIR] [--skip-latency]
//!     [--rate WORDS_PER_S] [--only-latency] [--guarantees]
//! ```
//!
//! `--guarantees [--rounds N]`: instead, at-least-once against exactly_once_v2 in one run,
//! alternating, N rounds — throughput with caching on at commit.interval.ms 100 ms and 1 s,
//! then latency (caching on, 20 000 words/s) at the same intervals.
//!
//! 1. Throughput: a pre-loaded input topic (8 partitions, lines of 10 words), the word-count
//!    topology with its RocksDB store, 2 stream threads; input lines/s and words/s until
//!    every line and every word is processed, with caching on and commit.interval.ms = 30 s
//!    and 100 ms, and with caching off.
//! 2. Latency: caching off, input produced at half the caching-off maximum rate; p50/p99/max
//!    from a line's timestamp to the count update of its word appearing in the output topic.
//! 3. Restore: a 1M-record changelog restored into an empty RocksDB store (records/s).
//!
//! Every throughput run also reports heap allocations per input word (a counting global
//! allocator: every allocation of the process while the app runs, broker included, divided
//! by the number of words).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, missing_docs)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use broker_embedded::{Broker, BrokerConfig, IsolationLevel, NewTopic, ProduceRecord};
use bytes::Bytes;
use examples::word_count::{self, topology, APPLICATION_ID, INPUT_TOPIC, OUTPUT_TOPIC};
use streams_core::{EmbeddedCluster, ProcessingGuarantee, StreamsApp, StreamsConfig, StreamsState};

/// The system allocator, counting allocations (all threads) for the allocations-per-word
/// figure.
struct CountingAllocator;

static ALLOCATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[allow(unsafe_code)] // a GlobalAlloc impl is unsafe by definition; it only delegates.
unsafe impl std::alloc::GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn allocations() -> u64 {
    ALLOCATIONS.load(std::sync::atomic::Ordering::Relaxed)
}

const PARTITIONS: u32 = 8;
const WORDS_PER_LINE: usize = 10;

struct Args {
    lines: usize,
    dir: Option<PathBuf>,
    skip_latency: bool,
    rate: Option<f64>,
    only_latency: bool,
    guarantees: bool,
    rounds: usize,
}

fn parse_args() -> Args {
    let mut a = Args {
        lines: 200_000,
        dir: None,
        skip_latency: false,
        rate: None,
        only_latency: false,
        guarantees: false,
        rounds: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--lines" => a.lines = it.next().and_then(|v| v.parse().ok()).unwrap_or(a.lines),
            "--dir" => a.dir = it.next().map(PathBuf::from),
            "--skip-latency" => a.skip_latency = true,
            "--rate" => a.rate = it.next().and_then(|v| v.parse().ok()),
            "--only-latency" => a.only_latency = true,
            "--guarantees" => a.guarantees = true,
            "--rounds" => a.rounds = it.next().and_then(|v| v.parse().ok()).unwrap_or(1),
            _ => {} // cargo bench passes --bench
        }
    }
    a
}

fn vocabulary() -> Vec<String> {
    let mut v: Vec<String> = word_count::direct_count(word_count::SAMPLE_TEXT)
        .into_keys()
        .collect();
    // A larger vocabulary than the sample's ~140 words: 5 000 distinct words.
    let base = v.clone();
    for i in 0..5000usize.saturating_sub(base.len()) {
        v.push(format!("{}{}", base[i % base.len()], i / base.len()));
    }
    v
}

/// Deterministic pseudo-random lines (xorshift) over the vocabulary, Zipf-like skew.
fn lines(n: usize, vocab: &[String]) -> Vec<String> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let mut line = String::new();
        for w in 0..WORDS_PER_LINE {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let r = (x % 1_000_000) as f64 / 1_000_000.0;
            let idx = ((r * r) * vocab.len() as f64) as usize % vocab.len();
            if w > 0 {
                line.push(' ');
            }
            line.push_str(&vocab[idx]);
        }
        out.push(line);
    }
    out
}

fn open_broker(dir: &std::path::Path) -> Broker {
    let mut config = BrokerConfig::new(dir.join("broker"));
    // One application on a fresh broker: no point waiting for more members to join (Kafka's
    // group.initial.rebalance.delay.ms, 3 s by default), which would count in every run.
    config.group_initial_rebalance_delay = Duration::ZERO;
    let broker = Broker::open(config).expect("open broker");
    for t in [INPUT_TOPIC, OUTPUT_TOPIC] {
        broker
            .create_topic(NewTopic::new(t, PARTITIONS))
            .expect("create topic");
    }
    broker
}

fn preload(broker: &Broker, lines: &[String]) {
    for (i, chunk) in lines.chunks(1000).enumerate() {
        let records: Vec<ProduceRecord> = chunk
            .iter()
            .map(|l| ProduceRecord::value_only(Bytes::copy_from_slice(l.as_bytes())))
            .collect();
        broker
            .produce(INPUT_TOPIC, (i % PARTITIONS as usize) as i32, &records)
            .expect("produce");
    }
}

fn start(broker: &Broker, dir: &std::path::Path, commit: Duration, cache: usize) -> StreamsApp {
    start_with(broker, dir, commit, cache, ProcessingGuarantee::AtLeastOnce)
}

fn start_with(
    broker: &Broker,
    dir: &std::path::Path,
    commit: Duration,
    cache: usize,
    guarantee: ProcessingGuarantee,
) -> StreamsApp {
    let config = StreamsConfig::new(APPLICATION_ID)
        .state_dir(dir.join("state"))
        .num_stream_threads(2)
        .commit_interval(commit)
        .cache_max_bytes(cache)
        .processing_guarantee(guarantee);
    let mut app = StreamsApp::new(
        topology().expect("topology"),
        config,
        EmbeddedCluster::new(broker.clone()),
    )
    .expect("app");
    app.start().expect("start");
    assert!(
        app.wait_for_state(StreamsState::Running, Duration::from_secs(300)),
        "not running: {:?}",
        app.errors()
    );
    app
}

fn throughput(
    base: &std::path::Path,
    label: &str,
    input: &[String],
    commit: Duration,
    cache: usize,
) -> f64 {
    throughput_with(
        base,
        label,
        input,
        commit,
        cache,
        ProcessingGuarantee::AtLeastOnce,
    )
}

fn throughput_with(
    base: &std::path::Path,
    label: &str,
    input: &[String],
    commit: Duration,
    cache: usize,
    guarantee: ProcessingGuarantee,
) -> f64 {
    let dir = tempfile::tempdir_in(base).expect("tempdir");
    let broker = open_broker(dir.path());
    preload(&broker, input);
    let words = (input.len() * WORDS_PER_LINE) as u64;
    let t0 = Instant::now();
    let allocs0 = allocations();
    let mut app = start_with(&broker, dir.path(), commit, cache, guarantee);
    let target = input.len() as u64 + words;
    while app.processed_records() < target {
        assert!(t0.elapsed() < Duration::from_secs(1800), "timed out");
        assert!(app.errors().is_empty(), "{:?}", app.errors());
        std::thread::sleep(Duration::from_millis(5));
    }
    let secs = t0.elapsed().as_secs_f64();
    let allocs = allocations() - allocs0;
    app.close();
    let counts = word_count::read_counts(&broker).expect("counts");
    let counted: i64 = counts.values().sum();
    println!(
        "throughput [{label}]: {} lines, {} words in {:.2} s: {:.0} lines/s, {:.0} words/s, {:.2} allocations/word (output total {counted})",
        input.len(),
        words,
        secs,
        input.len() as f64 / secs,
        words as f64 / secs,
        allocs as f64 / words as f64
    );
    words as f64 / secs
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn latency(base: &std::path::Path, vocab: &[String], words_per_sec: f64) {
    latency_with(
        base,
        vocab,
        words_per_sec,
        "caching off, commit 100 ms",
        Duration::from_millis(100),
        0,
        ProcessingGuarantee::AtLeastOnce,
    );
}

fn latency_with(
    base: &std::path::Path,
    vocab: &[String],
    words_per_sec: f64,
    label: &str,
    commit: Duration,
    cache: usize,
    guarantee: ProcessingGuarantee,
) {
    let dir = tempfile::tempdir_in(base).expect("tempdir");
    let broker = open_broker(dir.path());
    let mut app = start_with(&broker, dir.path(), commit, cache, guarantee);
    // One word per line so that each input record maps to one output update.
    let rate = words_per_sec.max(100.0);
    let duration = Duration::from_secs(10);
    let reader_broker = broker.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_r = stop.clone();
    let reader = std::thread::spawn(move || {
        let mut offsets = vec![0i64; PARTITIONS as usize];
        let mut lat = Vec::new();
        while !stop_r.load(std::sync::atomic::Ordering::SeqCst) {
            let mut got = false;
            for p in 0..PARTITIONS as i32 {
                // Read committed, as a downstream consumer of an exactly-once application.
                let read = reader_broker
                    .read_records(
                        OUTPUT_TOPIC,
                        p,
                        offsets[p as usize],
                        1 << 20,
                        IsolationLevel::ReadCommitted,
                    )
                    .expect("read");
                let now = now_ms();
                for r in &read.records {
                    lat.push((now - r.timestamp) as f64);
                }
                if let Some(next) = read.next_offset {
                    offsets[p as usize] = next;
                    got = true;
                }
            }
            if !got {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        lat
    });
    let t0 = Instant::now();
    let mut sent = 0u64;
    let batch_every = Duration::from_millis(1);
    while t0.elapsed() < duration {
        let due = (t0.elapsed().as_secs_f64() * rate) as u64;
        if due > sent {
            let n = (due - sent) as usize;
            let ts = now_ms();
            let mut per_p: BTreeMap<i32, Vec<ProduceRecord>> = BTreeMap::new();
            for i in 0..n {
                let w = &vocab[((sent as usize + i) * 7919) % vocab.len()];
                per_p
                    .entry(((sent as usize + i) % PARTITIONS as usize) as i32)
                    .or_default()
                    .push(
                        ProduceRecord::value_only(Bytes::copy_from_slice(w.as_bytes()))
                            .with_timestamp(ts),
                    );
            }
            for (p, recs) in per_p {
                broker.produce(INPUT_TOPIC, p, &recs).expect("produce");
            }
            sent = due;
        }
        std::thread::sleep(batch_every);
    }
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut lat = reader.join().expect("reader");
    app.close();
    lat.sort_by(|a, b| a.total_cmp(b));
    println!(
        "latency [{label}, {:?}, {:.0} words/s for {}s]: {} updates, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        guarantee,
        rate,
        duration.as_secs(),
        lat.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(f64::NAN)
    );
}

fn restore(base: &std::path::Path, vocab: &[String]) {
    let dir = tempfile::tempdir_in(base).expect("tempdir");
    let broker = open_broker(dir.path());
    let changelog = format!("{APPLICATION_ID}-{}-changelog", word_count::STORE);
    broker
        .create_topic(NewTopic::new(&changelog, PARTITIONS).config("cleanup.policy", "compact"))
        .expect("changelog");
    let total = 1_000_000usize;
    let per_partition = total / PARTITIONS as usize;
    for p in 0..PARTITIONS as i32 {
        for chunk in (0..per_partition).collect::<Vec<_>>().chunks(5000) {
            let recs: Vec<ProduceRecord> = chunk
                .iter()
                .map(|i| {
                    let key = format!("{}-{p}-{i}", vocab[i % vocab.len()]);
                    ProduceRecord::new(
                        Bytes::from(key.into_bytes()),
                        Bytes::copy_from_slice(&(*i as i64).to_be_bytes()),
                    )
                })
                .collect();
            broker.produce(&changelog, p, &recs).expect("produce");
        }
    }
    let t0 = Instant::now();
    let mut app = start(&broker, dir.path(), Duration::from_secs(30), 10 << 20);
    let secs = t0.elapsed().as_secs_f64();
    app.close();
    println!(
        "restore: {total} changelog records over {PARTITIONS} partitions into RocksDB in {secs:.2} s: {:.0} records/s (2 threads)",
        total as f64 / secs
    );
}

fn main() {
    let args = parse_args();
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let vocab = vocabulary();
    let input = lines(args.lines, &vocab);
    println!(
        "word-count bench: {} lines x {WORDS_PER_LINE} words, {} distinct words, {PARTITIONS} partitions, 2 stream threads, RocksDB store",
        input.len(),
        vocab.len()
    );
    if args.guarantees {
        for round in 1..=args.rounds {
            println!("round {round} of {}", args.rounds);
            compare_guarantees(&base, &vocab, &input);
        }
        return;
    }
    throughput(
        &base,
        "caching on, commit 30 s",
        &input,
        Duration::from_secs(30),
        10 << 20,
    );
    throughput(
        &base,
        "caching on, commit 100 ms",
        &input,
        Duration::from_millis(100),
        10 << 20,
    );
    let max_off = throughput(
        &base,
        "caching off, commit 100 ms",
        &input,
        Duration::from_millis(100),
        0,
    );
    if !args.skip_latency {
        latency(&base, &vocab, args.rate.unwrap_or(max_off / 2.0));
    }
    restore(&base, &vocab);
}

/// At-least-once against exactly_once_v2 in one run (caching on): throughput at commit
/// intervals of 100 ms and 1 s, then latency at 20 000 words/s at the same intervals.
fn compare_guarantees(base: &std::path::Path, vocab: &[String], input: &[String]) {
    for commit in [Duration::from_millis(100), Duration::from_secs(1)] {
        for guarantee in [
            ProcessingGuarantee::AtLeastOnce,
            ProcessingGuarantee::ExactlyOnceV2,
        ] {
            throughput_with(
                base,
                &format!("{guarantee:?}, caching on, commit {commit:?}"),
                input,
                commit,
                10 << 20,
                guarantee,
            );
        }
    }
    for commit in [Duration::from_millis(100), Duration::from_secs(1)] {
        for guarantee in [
            ProcessingGuarantee::AtLeastOnce,
            ProcessingGuarantee::ExactlyOnceV2,
        ] {
            latency_with(
                base,
                vocab,
                20_000.0,
                &format!("caching on, commit {commit:?}"),
                commit,
                10 << 20,
                guarantee,
            );
        }
    }
}
