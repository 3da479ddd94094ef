#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The wire backend rides through a broker restart: the word count runs in this process
//! over the wire against `broker serve` (a real process; `target/<profile>/broker`, built by
//! `cargo build -p broker-cli`), which is SIGKILLed while the application counts and
//! started again on the same port and data directory. The stream thread's clients must
//! reconnect (the group client looks the coordinator up again and retries with backoff,
//! librdkafka's transient errors are only logged) and the application must go on without
//! an error:
//! - under `exactly_once_v2` the counts (read `read_committed`) are exact, never above the
//!   truth on the way;
//! - under at-least-once every word is counted at least as often as it was written, and
//!   the over-count is bounded by the words of the lines in flight at the kill.
//!
//! `WBR_SEED` repeats a run (each test prints its seed); `WBR_KEEP=1` keeps the data
//! (`broker.log` there); `WBR_LOG=<filter>` prints the application's logs.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{BrokerProcess, XorShift};
use examples::word_count::direct_count;
use examples::word_count_cluster as wcc;
use parking_lot::Mutex;
use streams_core::{
    Cluster, KafkaCluster, StreamsApp, StreamsConfig, StreamsState, TopicPartition,
};

/// The tests each run a broker process and an application: one at a time.
fn serial() -> parking_lot::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock()
}

fn seed(default: u64) -> u64 {
    let seed = std::env::var("WBR_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    eprintln!("WBR_SEED={seed}");
    seed
}

fn init_logs() {
    if let Ok(filter) = std::env::var("WBR_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}

/// `lines` of seeded random words.
fn text(rng: &mut XorShift, lines: usize) -> Vec<String> {
    (0..lines)
        .map(|_| {
            let n = 1 + rng.next() % 8;
            (0..n)
                .map(|_| format!("w{}", rng.next() % 300))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

fn add(truth: &mut BTreeMap<String, i64>, lines: &[String]) {
    for (w, c) in direct_count(&lines.join("\n")) {
        *truth.entry(w).or_default() += c;
    }
}

fn words(lines: &[String]) -> i64 {
    direct_count(&lines.join("\n")).values().sum()
}

/// Waits until the application's group has committed every partition of the input topic
/// and of its repartition topic up to its end (the application drained its input).
fn wait_drained(addr: &str, app_id: &str, app: &StreamsApp, timeout: Duration) {
    let probe = KafkaCluster::new(
        &StreamsConfig::new("wire-broker-restart-probe")
            .bootstrap_servers(addr)
            .unwrap(),
    )
    .unwrap();
    let mut topics: Vec<String> = probe
        .topic_names()
        .unwrap()
        .into_iter()
        .filter(|t| t.starts_with(app_id) && t.ends_with("-repartition"))
        .collect();
    assert_eq!(
        topics.len(),
        1,
        "the word count's repartition topic: {topics:?}"
    );
    topics.push(wcc::INPUT_TOPIC.to_owned());
    let partitions: Vec<TopicPartition> = topics
        .iter()
        .flat_map(|t| {
            let n = probe.partitions(t).unwrap().unwrap();
            (0..n).map(move |p| TopicPartition::new(t, p))
        })
        .collect();
    let deadline = Instant::now() + timeout;
    loop {
        assert!(app.errors().is_empty(), "errors: {:?}", app.errors());
        let behind: Vec<(String, Option<i64>, i64)> = partitions
            .iter()
            .filter_map(|tp| {
                let end = probe.end_offset(tp).unwrap();
                let committed = probe.committed_offset(app_id, tp).unwrap();
                (committed.unwrap_or(0) < end).then(|| (tp.to_string(), committed, end))
            })
            .collect();
        if behind.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "input not drained in {timeout:?}: (partition, committed, end) {behind:?}; \
             app state {:?}",
            app.state()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Reads the counts (`read_committed`) until every word written is counted at least as
/// often as it was (the last transaction's output may become readable a moment after its
/// offsets), for at most 30 s; returns the last read.
fn wait_for_counts(addr: &str, truth: &BTreeMap<String, i64>) -> BTreeMap<String, i64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let counts = wcc::read_counts(addr, None).unwrap();
        let short = truth
            .iter()
            .filter(|(w, c)| counts.get(*w).copied().unwrap_or(0) < **c)
            .count();
        if short == 0 || Instant::now() >= deadline {
            return counts;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The run: counts a first batch, produces a second and SIGKILLs the broker while the
/// application counts it, restarts the broker, produces a third batch; then the input
/// drains without an application error. Returns the counts read afterwards, the truth,
/// and the words of the second batch (the ones in flight at the kill).
fn run(guarantee: &str, seed: u64) -> (BTreeMap<String, i64>, BTreeMap<String, i64>, i64) {
    init_logs();
    let dir = tempfile::Builder::new()
        .prefix("wire-broker-restart")
        .disable_cleanup(std::env::var_os("WBR_KEEP").is_some())
        .tempdir()
        .unwrap();
    eprintln!("data: {}", dir.path().display());
    let mut rng = XorShift::new(seed);
    let mut broker = BrokerProcess::start(dir.path(), "data", &[], "info");
    let addr = broker.addr.clone();
    wcc::ensure_topics(&addr).unwrap();
    let app_id = format!("wbr-{}", guarantee.replace('_', "-"));
    let mut options = wcc::ClusterOptions::new(&addr, &app_id, dir.path().join("state"));
    options.commit_interval = Duration::from_millis(200);
    options.session_timeout = Duration::from_secs(10);
    options.properties = vec![("processing.guarantee".into(), guarantee.into())];
    if guarantee == "exactly_once_v2" {
        options
            .properties
            .push(("producer.transaction.timeout.ms".into(), "10000".into()));
    }
    let mut truth = BTreeMap::new();
    let first = text(&mut rng, 1_500);
    add(&mut truth, &first);
    wcc::produce_lines(&addr, &first).unwrap();
    let mut app = wcc::start(&options).unwrap();
    assert!(
        app.wait_for_state(StreamsState::Running, Duration::from_secs(30)),
        "not RUNNING: {:?} {:?}",
        app.state(),
        app.errors()
    );
    wait_drained(&addr, &app_id, &app, Duration::from_secs(60));
    assert_eq!(
        wait_for_counts(&addr, &truth),
        truth,
        "the first batch (no kill yet)"
    );
    eprintln!("first batch counted");

    // The second batch is counted while the broker dies.
    let second = text(&mut rng, 4_000);
    add(&mut truth, &second);
    wcc::produce_lines(&addr, &second).unwrap();
    let processed = app.processed_records();
    let t0 = Instant::now();
    while app.processed_records() == processed && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(rng.next() % 300));
    let down = Duration::from_millis(500 + rng.next() % 1000);
    eprintln!(
        "SIGKILL the broker ({} records processed), {down:?} down",
        app.processed_records()
    );
    broker.kill_and_restart(down);
    let restarted = Instant::now();

    let third = text(&mut rng, 1_000);
    add(&mut truth, &third);
    wcc::produce_lines(&addr, &third).unwrap();
    wait_drained(&addr, &app_id, &app, Duration::from_secs(120));
    eprintln!("drained {:?} after the restart", restarted.elapsed());
    let counts = wait_for_counts(&addr, &truth);
    assert!(app.errors().is_empty(), "errors: {:?}", app.errors());
    assert_eq!(app.state(), StreamsState::Running);
    app.close();
    assert!(
        app.errors().is_empty(),
        "errors at close: {:?}",
        app.errors()
    );
    (counts, truth, words(&second))
}

/// Exactly-once: a broker SIGKILL and restart under an application counting words costs
/// no count and duplicates none.
#[test]
fn exactly_once_counts_stay_exact_across_a_broker_restart() {
    let _serial = serial();
    let seed = seed(0xb70c_0001);
    let (counts, truth, _) = run("exactly_once_v2", seed);
    for (word, got) in &counts {
        let want = truth.get(word).copied().unwrap_or(0);
        assert!(*got <= want, "`{word}` counted {got} times, written {want}");
    }
    assert_eq!(counts, truth, "seed {seed}");
}

/// At-least-once: after a broker SIGKILL and restart every word is counted at least as
/// often as it was written, and only records in flight at the kill are counted twice.
#[test]
fn at_least_once_counts_everything_across_a_broker_restart() {
    let _serial = serial();
    let seed = seed(0xb70c_0002);
    let (counts, truth, in_flight) = run("at_least_once", seed);
    let mut over = 0;
    for (word, want) in &truth {
        let got = counts.get(word).copied().unwrap_or(0);
        assert!(
            got >= *want,
            "`{word}` counted {got} times, written {want} (seed {seed})"
        );
        over += got - want;
    }
    assert_eq!(
        counts.len(),
        truth.len(),
        "words counted that were never written"
    );
    eprintln!("over-count: {over} (at most {in_flight} words were in flight)");
    assert!(
        over <= in_flight,
        "over-count {over} above the {in_flight} words in flight at the kill (seed {seed})"
    );
}
