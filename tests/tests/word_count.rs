#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The word-count example end to end: its counts always equal `direct_count` of the input,
//! through the `TopologyTestDriver`, through the real runtime on the embedded broker, across
//! clean restarts, after the local state is deleted (restoration from the changelog), with
//! 1, 2 and 4 stream threads, and — at least once — across SIGKILLs of a child process, where
//! every over-count must be explained by records after the committed offsets.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use broker_embedded::{Broker, BrokerConfig, IsolationLevel, TopicPartition, TxnState};
use common::{
    join_lines, kill, read_partition, read_partition_isolated, spawn_child_test, XorShift,
};
use examples::word_count::{
    self, delete_local_state, direct_count, read_counts, words, Options, WordCount, APPLICATION_ID,
    INPUT_TOPIC, OUTPUT_TOPIC, STORE,
};
use proptest::prelude::*;
use streams_core::{
    I64Serde, ProcessingGuarantee, StreamsConfig, StringSerde, TopologyTestDriver, VoidSerde,
};

/// Bound of every wait for the application to process its input.
const WAIT: Duration = Duration::from_secs(90);
/// The repartition topic of the `group_by(word)` before the count.
const REPARTITION_TOPIC: &str = "word-count-counts-repartition";

// ---------------------------------------------------------------------------------------------
// Inputs

/// A word-ish token: ASCII words, digits, words with non-ASCII letters, identifiers with
/// underscores (which split them).
fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-zA-Z]{1,7}",
        1 => "[0-9]{1,3}",
        1 => "[a-zA-Záéíóúñü]{1,6}",
        2 => prop::sample::select(vec![
            "tópico", "ÑANDÚ", "Straße", "ÉCOLE", "naïve", "日本語", "Ωmega", "İstanbul",
            "KAFKA_NODE_ID", "snake_case_word", "x2", "über", "Über", "ÜBER",
        ])
        .prop_map(str::to_owned),
    ]
}

fn separator() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        " ", " ", " ", "  ", ", ", "!", "_", "-", "...", "\t", "'", "¿", "—", " (", ") ", "__",
    ])
}

/// One line (possibly empty, possibly only punctuation).
fn line() -> impl Strategy<Value = String> {
    (
        separator(),
        prop::collection::vec((token(), separator()), 0..10),
    )
        .prop_map(|(lead, parts)| {
            let mut line = String::new();
            if lead != " " {
                line.push_str(lead);
            }
            for (t, s) in parts {
                line.push_str(&t);
                line.push_str(s);
            }
            line
        })
}

fn lines() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(line(), 0..40)
}

/// Deterministic pseudo-random lines (the crash test's parent and child both generate them).
fn generated_lines(seed: u64, n: usize) -> Vec<String> {
    const VOCAB: &[&str] = &[
        "the",
        "quick",
        "brown",
        "fox",
        "jumps",
        "over",
        "lazy",
        "dog",
        "kafka",
        "streams",
        "tópico",
        "ÑANDÚ",
        "straße",
        "naïve",
        "日本語",
        "partition",
        "offset",
        "commit",
        "log",
        "broker",
        "KAFKA_NODE_ID",
        "Über",
        "über",
        "a",
        "b",
        "c",
        "42",
        "x1",
    ];
    const SEPS: &[&str] = &[" ", " ", " ", ", ", "! ", "_", " - ", "... ", "\t"];
    let mut rng = XorShift::new(seed.wrapping_mul(0x0100_0000_01B3));
    let mut next = move || rng.next();
    (0..n)
        .map(|_| {
            let k = next() % 10;
            let mut line = String::new();
            for j in 0..k {
                if j > 0 {
                    line.push_str(SEPS[(next() % SEPS.len() as u64) as usize]);
                }
                if next() % 5 == 0 {
                    line.push_str(&format!("w{}", next() % 300));
                } else {
                    line.push_str(VOCAB[(next() % VOCAB.len() as u64) as usize]);
                }
            }
            line
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn end_offsets(broker: &Broker, topic: &str) -> Vec<i64> {
    let n = i32::try_from(broker.partition_count(topic).unwrap()).unwrap();
    (0..n)
        .map(|p| broker.partition_offsets(topic, p).unwrap().log_end_offset)
        .collect()
}

/// Runs the topology in the test driver on `lines`: (output as a table, the store).
fn driver_counts(lines: &[String]) -> (BTreeMap<String, i64>, BTreeMap<String, i64>) {
    let driver = TopologyTestDriver::new(
        word_count::topology().unwrap(),
        StreamsConfig::new(APPLICATION_ID),
    )
    .unwrap();
    let input = driver
        .create_input_topic(INPUT_TOPIC, VoidSerde, StringSerde)
        .unwrap();
    let output = driver.create_output_topic(OUTPUT_TOPIC, StringSerde, I64Serde);
    for l in lines {
        input.pipe_input((), l.clone()).unwrap();
    }
    let updates = output.read_key_values_to_vec().unwrap();
    // The driver commits after every input record: each word's updates count up by one.
    let mut last: BTreeMap<String, i64> = BTreeMap::new();
    for (w, c) in &updates {
        let prev = last.insert(w.clone(), *c).unwrap_or(0);
        assert!(*c > prev, "count of `{w}` went from {prev} to {c}");
    }
    let store: BTreeMap<String, i64> = driver
        .read_key_value_store::<String, i64>(STORE)
        .unwrap()
        .into_iter()
        .collect();
    driver.close().unwrap();
    (last, store)
}

fn options(dir: &Path) -> Options {
    let mut o = Options::new(dir);
    o.commit_interval = Duration::from_millis(100);
    o
}

/// Starts word count on `options`, produces `lines`, waits and returns the counts.
fn run_once(options: &Options, lines: &[String]) -> BTreeMap<String, i64> {
    let mut wc = WordCount::start(options).unwrap();
    wc.produce_lines(lines).unwrap();
    wc.wait_until_processed(WAIT).unwrap();
    let counts = wc.counts().unwrap();
    wc.close().unwrap();
    counts
}

// ---------------------------------------------------------------------------------------------
// 1. The test driver

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn driver_counts_equal_direct_count(lines in lines()) {
        let truth = direct_count(&join_lines(&[&lines]));
        let (output, store) = driver_counts(&lines);
        prop_assert_eq!(&output, &truth);
        prop_assert_eq!(&store, &truth);
    }
}

#[test]
fn driver_counts_the_issue_examples() {
    let lines: Vec<String> = [
        "KAFKA_NODE_ID el tópico!",
        "",
        "ÑANDÚ ñandú Ñandú... 42 42",
        "___ --- !!!",
        "el Tópico, EL TÓPICO",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let (output, store) = driver_counts(&lines);
    let expected: BTreeMap<String, i64> = [
        ("42", 2),
        ("el", 3),
        ("id", 1),
        ("kafka", 1),
        ("node", 1),
        ("tópico", 3),
        ("ñandú", 3),
    ]
    .iter()
    .map(|(w, c)| ((*w).to_owned(), *c))
    .collect();
    assert_eq!(output, expected);
    assert_eq!(store, expected);
    assert_eq!(direct_count(&join_lines(&[&lines])), expected);
}

// ---------------------------------------------------------------------------------------------
// 2. The runtime on the embedded broker

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, max_shrink_iters: 8, ..ProptestConfig::default() })]

    #[test]
    fn runtime_counts_equal_direct_count(lines in lines()) {
        let dir = tempfile::tempdir().unwrap();
        let counts = run_once(&options(dir.path()), &lines);
        prop_assert_eq!(counts, direct_count(&join_lines(&[&lines])));
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Clean restart with RocksDB stores

#[test]
fn restart_continues_the_counts() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path());
    let a = generated_lines(1, 2_000);
    let b = generated_lines(2, 2_000);

    let counts = run_once(&opts, &a);
    assert_eq!(counts, direct_count(&join_lines(&[&a])));
    assert!(
        dir.path().join("state").join(APPLICATION_ID).exists(),
        "the RocksDB state is on disk"
    );

    let mut wc = WordCount::start(&opts).unwrap();
    assert_eq!(wc.counts().unwrap(), direct_count(&join_lines(&[&a])));
    wc.produce_lines(&b).unwrap();
    wc.wait_until_processed(WAIT).unwrap();
    assert_eq!(wc.counts().unwrap(), direct_count(&join_lines(&[&a, &b])));
    wc.close().unwrap();
}

// ---------------------------------------------------------------------------------------------
// 5. Stream threads

#[test]
fn one_two_and_four_threads_count_the_same() {
    let input = generated_lines(5, 3_000);
    let truth = direct_count(&join_lines(&[&input]));
    for threads in [1, 2, 4] {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = options(dir.path());
        opts.partitions = 8;
        opts.threads = threads;
        let counts = run_once(&opts, &input);
        assert_eq!(counts, truth, "{threads} stream thread(s)");
    }
}

// ---------------------------------------------------------------------------------------------
// 6. Restoration from the changelog

#[test]
fn deleted_local_state_is_restored_from_the_changelog() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path());
    let a = generated_lines(3, 2_000);
    let b = generated_lines(4, 1_000);
    let truth_a = direct_count(&join_lines(&[&a]));
    assert_eq!(run_once(&opts, &a), truth_a);

    delete_local_state(dir.path()).unwrap();
    assert!(!dir.path().join("state").exists());

    let mut wc = WordCount::start(&opts).unwrap();
    assert_eq!(wc.counts().unwrap(), truth_a, "the output is unchanged");
    // One more line with the most frequent word of `a` and a new word: the new counts
    // continue from the restored ones.
    let (seen, seen_count) = truth_a
        .iter()
        .max_by_key(|(w, c)| (**c, std::cmp::Reverse((*w).clone())))
        .map(|(w, c)| (w.clone(), *c))
        .unwrap();
    let extra = vec![format!("{seen} brandnewword")];
    let before = end_offsets(wc.broker(), OUTPUT_TOPIC);
    wc.produce_lines(&extra).unwrap();
    wc.wait_until_processed(WAIT).unwrap();
    let mut updates: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (p, from) in before.iter().enumerate() {
        for r in read_partition(wc.broker(), OUTPUT_TOPIC, i32::try_from(p).unwrap(), *from) {
            let w = String::from_utf8(r.key.unwrap().to_vec()).unwrap();
            let c = i64::from_be_bytes(r.value.unwrap().as_ref().try_into().unwrap());
            updates.entry(w).or_default().push(c);
        }
    }
    let expected: BTreeMap<String, Vec<i64>> = [
        (seen.clone(), vec![seen_count + 1]),
        ("brandnewword".to_owned(), vec![1]),
    ]
    .into_iter()
    .collect();
    assert_eq!(
        updates, expected,
        "updates after restoring `{seen}` = {seen_count}"
    );
    assert!(dir.path().join("state").join(APPLICATION_ID).exists());

    wc.produce_lines(&b).unwrap();
    wc.wait_until_processed(WAIT).unwrap();
    assert_eq!(
        wc.counts().unwrap(),
        direct_count(&join_lines(&[&a, &extra, &b]))
    );
    wc.close().unwrap();
}

// ---------------------------------------------------------------------------------------------
// 4. SIGKILL: at least once

const CHILD_ENV: &str = "WORD_COUNT_CRASH_CHILD";
const ROUND_ENV: &str = "WORD_COUNT_CRASH_ROUND";
/// Set: the child runs with `processing.guarantee = exactly_once_v2`.
const EOS_ENV: &str = "WORD_COUNT_CRASH_EOS";
const CRASH_LINES: usize = 20_000;

/// Odd rounds run without a record cache: every count update then goes to the store, its
/// changelog and the output at once, so a kill between two commits leaves them ahead of the
/// committed offsets (the over-count case of at-least-once). Round 2 runs two stream threads.
fn crash_options(dir: &Path, round: u64, exactly_once: bool) -> Options {
    let mut o = Options::new(dir);
    o.commit_interval = Duration::from_millis(200);
    if exactly_once {
        // Long enough that a kill while the round's input is processed lands inside an open
        // transaction with records in it (the kill does not wait for a commit).
        o.commit_interval = Duration::from_secs(2);
        o.processing_guarantee = ProcessingGuarantee::ExactlyOnceV2;
    }
    // The group outlives the killed child (it is stored in the broker): the next child
    // waits for the dead members' sessions to expire, so keep them at the broker's minimum.
    o.session_timeout = Duration::from_secs(6);
    if round % 2 == 1 {
        o.cache_bytes = 0;
    }
    if round == 2 {
        o.threads = 2;
    }
    o
}

/// Child mode: start word count on the data dir, produce this round's lines, print
/// `produced`, then report `progress <records processed> <offsets committed since>` until
/// killed.
#[test]
#[ignore = "child-process entry of sigkill_over_counts_only_what_was_not_committed"]
fn word_count_crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let round: u64 = std::env::var(ROUND_ENV).unwrap().parse().unwrap();
    let eos = std::env::var(EOS_ENV).is_ok_and(|v| v == "1");
    let mut wc = WordCount::start(&crash_options(Path::new(&dir), round, eos)).unwrap();
    println!("started");
    wc.produce_lines(&generated_lines(100 + round, CRASH_LINES))
        .unwrap();
    println!("produced");
    let committed = |wc: &WordCount| -> i64 {
        wc.broker()
            .committed_offsets(APPLICATION_ID)
            .values()
            .map(|o| o.offset)
            .sum()
    };
    let at_start = committed(&wc);
    // The parent kills us; give up on our own if it does not.
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let errors = wc.app().errors();
        if !errors.is_empty() {
            println!("error {}", errors.join("; "));
        }
        println!(
            "progress {} {}",
            wc.app().processed_records(),
            committed(&wc) - at_start
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs the crash child of `round` on `dir` and SIGKILLs it once it has processed
/// `fraction` of the round's records (input lines and repartitioned words) and committed at
/// least once; returns the records it had processed.
fn run_child_and_kill(dir: &Path, round: u64, fraction: f64, exactly_once: bool) -> u64 {
    let lines = generated_lines(100 + round, CRASH_LINES);
    let records = lines.len() + lines.iter().map(|l| words(l).count()).sum::<usize>();
    let threshold = (records as f64 * fraction) as u64;
    let round_env = round.to_string();
    let (child, rx) = spawn_child_test(
        "word_count_crash_child",
        &[
            (CHILD_ENV, dir.as_os_str()),
            (ROUND_ENV, round_env.as_ref()),
            (
                EOS_ENV,
                std::ffi::OsStr::new(if exactly_once { "1" } else { "" }),
            ),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut produced = false;
    let processed_at_kill = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = match rx.recv_timeout(left) {
            Ok(line) => line,
            Err(e) => {
                panic!("round {round}: the child did not reach {threshold} processed records: {e}")
            }
        };
        if let Some(e) = line.strip_prefix("error ") {
            panic!("round {round}: the child's application failed: {e}");
        }
        if line == "produced" {
            produced = true;
        }
        // Kill mid-way: at-least-once once this run has committed (the over-count bound
        // needs committed offsets); exactly-once at once, inside the open transaction.
        if let Some((n, c)) = line
            .strip_prefix("progress ")
            .and_then(|p| p.split_once(' '))
        {
            let (n, c): (u64, i64) = (n.parse().unwrap(), c.parse().unwrap());
            if produced && n >= threshold && (exactly_once || c > 0) {
                break n;
            }
        }
    };
    kill(child); // SIGKILL
    processed_at_kill
}

#[test]
fn sigkill_over_counts_only_what_was_not_committed() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut produced_lines: Vec<String> = Vec::new();
    // Per word: how many times it may be over-counted, summed over the kills.
    let mut bound: BTreeMap<String, i64> = BTreeMap::new();
    let mut tails = Vec::new();
    // Kill each child once it has processed this fraction of its round's records (and
    // committed at least once).
    for (round, fraction) in [(0u64, 0.3f64), (1, 0.5), (2, 0.8)] {
        let lines = generated_lines(100 + round, CRASH_LINES);
        let processed_at_kill = run_child_and_kill(dir.path(), round, fraction, false);
        produced_lines.extend(lines);

        // What the restarted application may process a second time: everything after the
        // committed offsets of the input and the repartition topic.
        let broker = Broker::open(BrokerConfig::new(dir.path().join("broker"))).unwrap();
        let mut tail = (0, 0);
        for topic in [INPUT_TOPIC, REPARTITION_TOPIC] {
            assert!(broker.topic_exists(topic), "{topic} exists");
            let partitions = i32::try_from(broker.partition_count(topic).unwrap()).unwrap();
            for p in 0..partitions {
                let tp = TopicPartition::new(topic, p);
                let committed = broker
                    .committed_offset(APPLICATION_ID, &tp)
                    .map_or(0, |o| o.offset);
                for r in read_partition(&broker, topic, p, committed) {
                    if topic == INPUT_TOPIC {
                        let line = String::from_utf8(r.value.unwrap().to_vec()).unwrap();
                        for w in words(&line) {
                            *bound.entry(w).or_default() += 1;
                            tail.0 += 1;
                        }
                    } else {
                        let w = String::from_utf8(r.key.unwrap().to_vec()).unwrap();
                        *bound.entry(w).or_default() += 1;
                        tail.1 += 1;
                    }
                }
            }
        }
        broker.shutdown().unwrap();
        tails.push((round, processed_at_kill, tail));
    }

    // Restart in-process on the same data dir and let it finish.
    let wc = WordCount::start(&crash_options(dir.path(), 0, false)).unwrap();
    wc.wait_until_processed(WAIT).unwrap();
    let counts = wc.counts().unwrap();
    wc.close().unwrap();

    let truth = direct_count(&join_lines(&[&produced_lines]));
    assert_eq!(
        counts.keys().collect::<Vec<_>>(),
        truth.keys().collect::<Vec<_>>(),
        "the same words"
    );
    let mut over = 0;
    for (w, &t) in &truth {
        let c = counts[w];
        let b = bound.get(w).copied().unwrap_or(0);
        assert!(c >= t, "`{w}` counted {c} < {t}: an occurrence was lost");
        assert!(
            c - t <= b,
            "`{w}` counted {c}, truth {t}: over-count {} exceeds {b}, the occurrences after \
             the committed offsets",
            c - t
        );
        over += c - t;
    }
    eprintln!(
        "kills (round, processed, (input words, repartition records) after the committed \
         offsets): {tails:?}; total over-count {over}, bound {}",
        bound.values().sum::<i64>()
    );
}

// ---------------------------------------------------------------------------------------------
// 5. SIGKILL: exactly once

/// Records of `topics` (every partition) readable `read_uncommitted` and `read_committed`.
fn uncommitted_and_committed(broker: &Broker, topics: &[&str]) -> (usize, usize) {
    let (mut all, mut committed) = (0, 0);
    for topic in topics {
        let partitions = i32::try_from(broker.partition_count(topic).unwrap()).unwrap();
        for p in 0..partitions {
            all +=
                read_partition_isolated(broker, topic, p, 0, IsolationLevel::ReadUncommitted).len();
            committed += read_partition(broker, topic, p, 0).len();
        }
    }
    (all, committed)
}

/// Under exactly_once_v2, three SIGKILLs in the middle of open transactions (a commit every
/// 2 s; cache off in one round, two threads in another) leave counts that are exactly
/// those of the input: the killed transactions are aborted when the restarted instance's
/// producer (same `transactional.id`, from the process id kept in the state directory)
/// initializes, the local state they touched is wiped and restored, and their input is
/// processed again. The aborted records are still in the logs (visible `read_uncommitted`),
/// which shows the kills did land inside transactions.
#[test]
fn sigkill_under_exactly_once_neither_loses_nor_duplicates_a_count() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut produced_lines: Vec<String> = Vec::new();
    let mut kills = Vec::new();
    for (round, fraction) in [(0u64, 0.3f64), (1, 0.5), (2, 0.8)] {
        let processed = run_child_and_kill(dir.path(), round, fraction, true);
        produced_lines.extend(generated_lines(100 + round, CRASH_LINES));
        kills.push((round, processed));
    }
    let changelog = format!("{APPLICATION_ID}-{STORE}-changelog");
    let topics = [OUTPUT_TOPIC, REPARTITION_TOPIC, changelog.as_str()];

    let wc = WordCount::start(&crash_options(dir.path(), 0, true)).unwrap();
    wc.wait_until_processed(WAIT).unwrap();
    let counts = wc.counts().unwrap();
    let (uncommitted, committed) = uncommitted_and_committed(wc.broker(), &topics);
    let listings = wc.broker().transaction_coordinator().list(&[], &[], -1, 0);
    let open = listings
        .iter()
        .filter(|t| t.state == TxnState::Ongoing)
        .count();
    let mut ids: Vec<String> = listings.into_iter().map(|t| t.transactional_id).collect();
    ids.sort();
    wc.close().unwrap();

    let truth = direct_count(&join_lines(&[&produced_lines]));
    let wrong: Vec<_> = truth
        .iter()
        .filter(|(w, t)| counts.get(*w) != Some(*t))
        .map(|(w, t)| (w.clone(), *t, counts.get(w).copied()))
        .take(10)
        .collect();
    assert!(
        wrong.is_empty() && counts.len() == truth.len(),
        "counts differ from the input's (word, truth, counted): {wrong:?}; {} words counted, \
         {} in the input",
        counts.len(),
        truth.len()
    );
    eprintln!(
        "kills (round, processed): {kills:?}; records in {topics:?}: {uncommitted} \
         read_uncommitted, {committed} read_committed; {open} transactions left open"
    );
    assert!(
        uncommitted > committed,
        "no aborted record in {topics:?}: the kills did not land inside transactions"
    );
    // One transactional id per stream thread for all four runs: `<application.id>-<process
    // id>-<thread>`, the process id read back from the state directory at each restart.
    assert_eq!(ids.len(), 2, "transactional ids: {ids:?}");
    let process = ids[0]
        .strip_prefix(&format!("{APPLICATION_ID}-"))
        .and_then(|rest| rest.strip_suffix("-1"))
        .unwrap_or_else(|| panic!("transactional id {} is not <app>-<process>-1", ids[0]));
    assert!(uuid_like(process), "process id `{process}` is not a UUID");
    assert_eq!(ids[1], format!("{APPLICATION_ID}-{process}-2"));
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36
        && s.chars().enumerate().all(|(i, c)| {
            matches!(i, 8 | 13 | 18 | 23) == (c == '-') && (c == '-' || c.is_ascii_hexdigit())
        })
}

/// Another producer initialized with the application's transactional id (as a second
/// instance with a copied state directory would) fences the stream thread's producer in the
/// middle of processing: the thread aborts, wipes and restores its tasks' state, goes back
/// to the committed offsets with a new producer, and the counts stay exact.
#[test]
fn a_fenced_producer_is_replaced_and_the_tasks_restored_without_duplicates() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(dir.path());
    o.processing_guarantee = ProcessingGuarantee::ExactlyOnceV2;
    o.cache_bytes = 0;
    let mut wc = WordCount::start(&o).unwrap();
    let first = generated_lines(7, 2_000);
    wc.produce_lines(&first).unwrap();
    wc.wait_until_processed(WAIT).unwrap();
    let restored_before = wc.app().restored_records();

    let second = generated_lines(8, 20_000);
    wc.produce_lines(&second).unwrap();
    let processed = wc.app().processed_records();
    let deadline = Instant::now() + WAIT;
    while wc.app().processed_records() < processed + 5_000 {
        assert!(
            Instant::now() < deadline,
            "the second batch is not processed"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let transactional_id = format!("{APPLICATION_ID}-{}-1", wc.app().process_id());
    let mut fencer =
        broker_embedded::TransactionalProducer::init(wc.broker(), &transactional_id, 10_000)
            .unwrap();
    fencer.begin().unwrap();
    fencer.abort().unwrap();
    wc.wait_until_processed(WAIT).unwrap();
    let restored_after = wc.app().restored_records();
    let counts = wc.counts().unwrap();
    let errors = wc.app().errors();
    wc.close().unwrap();

    assert!(errors.is_empty(), "the thread failed: {errors:?}");
    assert!(
        restored_after > restored_before,
        "no task state was restored after the fencing ({restored_before} -> {restored_after})"
    );
    assert_eq!(counts, direct_count(&join_lines(&[&first, &second])));
}

#[test]
fn read_counts_of_a_fresh_broker_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let wc = WordCount::start(&options(dir.path())).unwrap();
    assert!(read_counts(wc.broker()).unwrap().is_empty());
    wc.close().unwrap();
}
