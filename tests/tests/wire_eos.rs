#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Exactly-once (`processing.guarantee = exactly_once_v2`) over the wire backend, against
//! `broker serve` (a real process on a real TCP port; `target/<profile>/broker`, built by
//! `cargo build -p broker-cli`):
//! - word count with exactly-once: counts exact, read back `read_committed`; the stream
//!   thread's transactional id (`<application.id>-<process id>-<thread>`) is listed by
//!   `broker transactions list`; a second producer with that transactional id fences the
//!   thread's producer, the thread recovers (aborts, wipes and restores its tasks, makes a
//!   new producer, which fences the intruder in turn) and the counts stay exact;
//! - `send_offsets_to_transaction` with a stale generation or an unknown member is
//!   `TaskMigrated` (KIP-447 group metadata through librdkafka's C API);
//! - a committed offset in an open transaction is waited for (OffsetFetch
//!   `require_stable`, `UNSTABLE_OFFSET_COMMIT` retried);
//! - a changelog with another producer's open transaction is read to its last stable
//!   offset and no further, without waiting for the transaction.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{ChildGuard, XorShift};
use examples::word_count::direct_count;
use examples::word_count_cluster as wcc;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use streams_core::{
    Cluster, ClusterErrorKind, ConsumerGroupMetadata, KafkaCluster, ProducedRecord, StreamsApp,
    StreamsConfig, StreamsError, StreamsState, TopicPartition,
};

/// `target/<profile>`, from this test binary's path (`target/<profile>/deps/<test>`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

fn broker_binary() -> PathBuf {
    let path = profile_dir().join("broker");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build -p broker-cli` first",
        path.display()
    );
    path
}

/// `broker serve` on an ephemeral port; killed when dropped.
struct Server {
    _child: ChildGuard,
    addr: String,
    _dir: tempfile::TempDir,
}

/// `WIRE_EOS_LOG=<filter>` prints the in-process application's logs.
fn init_logs() {
    if let Ok(filter) = std::env::var("WIRE_EOS_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}

fn serve() -> Server {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(broker_binary())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--config",
            "group.initial.rebalance.delay.ms=0",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.path().join("broker.log")).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line of broker serve: {line:?}"))
        .to_owned();
    Server {
        _child: ChildGuard(child),
        addr,
        _dir: dir,
    }
}

/// Runs `broker <args>` against the server and returns its standard output.
fn broker_cli(args: &[&str]) -> String {
    let out = Command::new(broker_binary()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "broker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn create_topic(addr: &str, topic: &str, partitions: u32) {
    broker_cli(&[
        "topics",
        "create",
        "--bootstrap-server",
        addr,
        "--topic",
        topic,
        "--partitions",
        &partitions.to_string(),
    ]);
}

/// `lines` of seeded random words.
fn text(seed: u64, lines: usize) -> Vec<String> {
    let mut rng = XorShift::new(seed);
    (0..lines)
        .map(|_| {
            let n = 1 + rng.next() % 8;
            (0..n)
                .map(|_| format!("w{}", rng.next() % 200))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// Waits until the `read_committed` counts in `word-counts` equal `truth`; the counts are
/// never above it on the way (exactly-once: no count is ever duplicated).
fn wait_for_exact_counts(addr: &str, truth: &BTreeMap<String, i64>, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let counts = wcc::read_counts(addr, None).unwrap();
        for (word, got) in &counts {
            let want = truth.get(word).copied().unwrap_or(0);
            assert!(
                *got <= want,
                "`{word}` counted {got} times, more than the {want} times it was written"
            );
        }
        if &counts == truth {
            return;
        }
        if Instant::now() >= deadline {
            let wrong: Vec<_> = truth
                .iter()
                .filter(|(w, c)| counts.get(*w) != Some(c))
                .take(5)
                .map(|(w, c)| (w, c, counts.get(w)))
                .collect();
            panic!(
                "counts did not reach the truth in {timeout:?}: {} of {} words right; \
                 (word, truth, counted): {wrong:?}; transactions:\n{}",
                truth
                    .iter()
                    .filter(|(w, c)| counts.get(*w) == Some(c))
                    .count(),
                truth.len(),
                broker_cli(&["transactions", "list", "--bootstrap-server", addr])
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn eos_config(addr: &str, app: &str, state: &Path) -> wcc::ClusterOptions {
    let mut options = wcc::ClusterOptions::new(addr, app, state);
    options.commit_interval = Duration::from_millis(100);
    options.session_timeout = Duration::from_secs(6);
    options.properties = vec![
        ("processing.guarantee".into(), "exactly_once_v2".into()),
        ("producer.transaction.timeout.ms".into(), "10000".into()),
    ];
    if let Ok(contexts) = std::env::var("WIRE_EOS_RDKAFKA_DEBUG") {
        // librdkafka's debug contexts for the application's producers (e.g. `eos,msg`).
        options.properties.push(("producer.debug".into(), contexts));
    }
    options
}

fn cluster(addr: &str) -> KafkaCluster {
    let config = StreamsConfig::new("wire-eos-probe")
        .bootstrap_servers(addr)
        .unwrap();
    KafkaCluster::new(&config).unwrap()
}

fn record(value: &str) -> ProducedRecord {
    ProducedRecord {
        key: Some(bytes::Bytes::copy_from_slice(value.as_bytes())),
        value: Some(bytes::Bytes::copy_from_slice(value.as_bytes())),
        headers: Vec::new(),
        timestamp: 1_000,
    }
}

fn kind(e: &StreamsError) -> Option<ClusterErrorKind> {
    match e {
        StreamsError::Cluster { kind, .. } => Some(*kind),
        _ => None,
    }
}

/// The member ids of `group` (DescribeGroups through librdkafka).
fn members(addr: &str, group: &str) -> Vec<String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .create()
        .unwrap();
    let list = consumer
        .fetch_group_list(Some(group), Duration::from_secs(10))
        .unwrap();
    list.groups()
        .iter()
        .filter(|g| g.name() == group)
        .flat_map(|g| g.members().iter().map(|m| m.id().to_owned()))
        .collect()
}

fn wait_running(app: &StreamsApp) {
    assert!(
        app.wait_for_state(StreamsState::Running, Duration::from_secs(30)),
        "not RUNNING: {:?} {:?}",
        app.state(),
        app.errors()
    );
}

/// Starts `broker serve`, the word count under exactly-once on it over the wire, counts a
/// first batch of lines exactly and checks the thread's transactional id is listed.
/// Returns the server, the app, the truth so far, the application id and the seed.
/// What [`counting_exactly_once`] set up.
struct Counting {
    server: Server,
    app: StreamsApp,
    truth: BTreeMap<String, i64>,
    app_id: &'static str,
    seed: u64,
    _state: tempfile::TempDir,
}

fn counting_exactly_once() -> Counting {
    let seed = 0x0e05_0001_u64;
    eprintln!("seed: {seed:#x}");
    let server = serve();
    let addr = server.addr.clone();
    wcc::ensure_topics(&addr).unwrap();
    let first = text(seed, 2_000);
    wcc::produce_lines(&addr, &first).unwrap();
    let state = tempfile::tempdir().unwrap();
    let app_id = "wc-eos";
    let app = wcc::start(&eos_config(&addr, app_id, state.path())).unwrap();
    wait_running(&app);
    let truth = direct_count(&first.join("\n"));
    wait_for_exact_counts(&addr, &truth, Duration::from_secs(40));

    // The thread's transactional id, as Kafka Streams names it, is known to the broker.
    let transactional_id = format!("{app_id}-{}-1", app.process_id());
    let listed = broker_cli(&["transactions", "list", "--bootstrap-server", &addr]);
    assert!(
        listed
            .lines()
            .any(|l| l.split('\t').next() == Some(&transactional_id)),
        "{transactional_id} not in:\n{listed}"
    );
    assert_eq!(app.restored_records(), 0, "a fresh start restores nothing");

    Counting {
        server,
        app,
        truth,
        app_id,
        seed,
        _state: state,
    }
}

/// Word count under exactly-once over the wire: exact counts (read `read_committed`), the
/// thread's transactional id (`<application.id>-<process id>-1`) listed by `broker
/// transactions list`; offsets sent to a transaction for the app's group with a stale
/// generation or an unknown member are refused as `TaskMigrated` (KIP-447).
#[test]
fn exactly_once_word_count_is_exact_and_stale_members_offsets_are_task_migrated() {
    let Counting {
        server,
        mut app,
        app_id,
        _state,
        ..
    } = counting_exactly_once();
    let addr = server.addr.clone();
    // A stale member's offsets (KIP-447): refused, as tasks that migrated.
    let probe = cluster(&addr);
    let member = members(&addr, app_id)
        .into_iter()
        .next()
        .expect("the app's stream thread is a member of its group");
    let mut stale = probe
        .transactional_producer("stale", "wc-eos-stale-probe", Duration::from_secs(10))
        .unwrap();
    let offsets: BTreeMap<TopicPartition, (i64, String)> = [(
        TopicPartition::new(wcc::INPUT_TOPIC, 0),
        (0, "stale".to_owned()),
    )]
    .into_iter()
    .collect();
    for (generation, member_id) in [(0, member.as_str()), (1, "no-such-member")] {
        stale.begin_transaction().unwrap();
        let group = ConsumerGroupMetadata {
            group_id: app_id.to_owned(),
            generation_id: generation,
            member_id: member_id.to_owned(),
            group_instance_id: None,
        };
        match stale.send_offsets_to_transaction(&offsets, &group) {
            Err(StreamsError::TaskMigrated(reason)) => eprintln!("refused as expected: {reason}"),
            other => panic!("generation {generation}, member {member_id}: {other:?}"),
        }
        stale.abort_transaction().unwrap();
    }
    drop(stale);

    app.close();
    assert!(app.thread_errors().is_empty(), "{:?}", app.errors());
}

/// Word count under exactly-once over the wire: exact counts, the thread's transactional
/// id listed by the broker; then another producer takes the transactional id over, and
/// the thread is fenced, recovers (tasks wiped and restored from the changelog, a new
/// producer) and counts on exactly; the intruder is fenced in turn.
#[test]
fn word_count_exactly_once_over_the_wire_is_exact_and_recovers_from_fencing() {
    let Counting {
        server,
        mut app,
        mut truth,
        app_id,
        seed,
        _state,
    } = counting_exactly_once();
    let addr = server.addr.clone();
    let transactional_id = format!("{app_id}-{}-1", app.process_id());
    let probe = cluster(&addr);
    // An intruder takes the thread's transactional id: the thread's producer is fenced.
    let mut intruder = probe
        .transactional_producer("intruder", &transactional_id, Duration::from_secs(10))
        .unwrap();
    let second = text(seed + 1, 1_000);
    wcc::produce_lines(&addr, &second).unwrap();
    for (w, c) in direct_count(&second.join("\n")) {
        *truth.entry(w).or_insert(0) += c;
    }
    wait_for_exact_counts(&addr, &truth, Duration::from_secs(40));
    assert!(
        app.restored_records() > 0,
        "the fenced thread's tasks were not wiped and restored"
    );
    assert_eq!(app.state(), StreamsState::Running);
    assert!(app.thread_errors().is_empty(), "{:?}", app.errors());

    // The thread's new producer fenced the intruder.
    let fenced = intruder.begin_transaction().and_then(|()| {
        intruder.send(&TopicPartition::new(wcc::INPUT_TOPIC, 0), vec![record("x")])?;
        intruder.flush()?;
        intruder.commit_transaction()
    });
    match fenced {
        Err(e) => assert_eq!(kind(&e), Some(ClusterErrorKind::Fenced), "{e}"),
        Ok(()) => panic!("the intruder committed after the thread took its id back"),
    }
    drop(intruder);

    // Still counting, exactly.
    let third = text(seed + 2, 500);
    wcc::produce_lines(&addr, &third).unwrap();
    for (w, c) in direct_count(&third.join("\n")) {
        *truth.entry(w).or_insert(0) += c;
    }
    wait_for_exact_counts(&addr, &truth, Duration::from_secs(40));
    app.close();
    assert!(app.thread_errors().is_empty(), "{:?}", app.errors());
}

/// Two transactional producers with one transactional id: initializing the second fences
/// the first, whose next transaction fails with a `Fenced` error; the second commits.
#[test]
fn a_second_transactional_producer_fences_the_first() {
    let server = serve();
    create_topic(&server.addr, "fence-me", 1);
    let cluster = cluster(&server.addr);
    let tp = TopicPartition::new("fence-me", 0);
    let mut old = cluster
        .transactional_producer("old", "fence-me-txn", Duration::from_secs(10))
        .unwrap();
    old.begin_transaction().unwrap();
    old.send(&tp, vec![record("a")]).unwrap();
    old.flush().unwrap();
    old.commit_transaction().unwrap();

    let mut new = cluster
        .transactional_producer("new", "fence-me-txn", Duration::from_secs(10))
        .unwrap();
    let result = old.begin_transaction().and_then(|()| {
        old.send(&tp, vec![record("b")])?;
        old.flush()?;
        old.commit_transaction()
    });
    match result {
        Err(e) => assert_eq!(kind(&e), Some(ClusterErrorKind::Fenced), "{e}"),
        Ok(()) => panic!("a fenced producer committed"),
    }
    // A fenced producer cannot abort either; it is done.
    assert!(old.abort_transaction().is_err());
    drop(old);

    new.begin_transaction().unwrap();
    new.send(&tp, vec![record("c")]).unwrap();
    let acked = new.flush().unwrap();
    new.commit_transaction().unwrap();
    // "a" (0), its commit marker (1), "c" (2): "b" was never written.
    assert_eq!(acked.get(&tp), Some(&2));
}

/// OffsetFetch with `require_stable`: an offset committed in a transaction still open is
/// waited for (`UNSTABLE_OFFSET_COMMIT` retried) and read once the transaction commits.
/// A changelog with an open transaction of another producer is read up to its last stable
/// offset, and a read there ends at once instead of waiting for the transaction.
#[test]
fn unstable_offsets_are_waited_for_and_restores_stop_at_the_last_stable_offset() {
    let server = serve();
    create_topic(&server.addr, "eos-input", 1);
    create_topic(&server.addr, "eos-changelog", 1);
    let cluster = cluster(&server.addr);
    let input = TopicPartition::new("eos-input", 0);
    let changelog = TopicPartition::new("eos-changelog", 0);

    // Offsets of an open transaction (a group without members: no generation to check).
    let mut producer = cluster
        .transactional_producer("offsets", "eos-offsets-txn", Duration::from_secs(30))
        .unwrap();
    producer.begin_transaction().unwrap();
    let offsets: BTreeMap<TopicPartition, (i64, String)> =
        [(input.clone(), (7, "meta".to_owned()))]
            .into_iter()
            .collect();
    let group = ConsumerGroupMetadata {
        group_id: "eos-offsets-group".to_owned(),
        generation_id: -1,
        member_id: String::new(),
        group_instance_id: None,
    };
    producer
        .send_offsets_to_transaction(&offsets, &group)
        .unwrap();
    let committer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1_500));
        producer.commit_transaction().unwrap();
    });
    // Read while the transaction is open: the read waits for it and sees its offset.
    assert_eq!(
        cluster
            .committed_offset("eos-offsets-group", &input)
            .unwrap(),
        Some(7)
    );
    assert_eq!(
        cluster
            .committed_metadata("eos-offsets-group", &input)
            .unwrap()
            .as_deref(),
        Some("meta")
    );
    committer.join().unwrap();

    // A changelog: one committed transaction (offsets 0-2, marker 3), then an open one.
    let mut writer = cluster
        .transactional_producer("writer", "eos-changelog-txn", Duration::from_secs(60))
        .unwrap();
    writer.begin_transaction().unwrap();
    writer
        .send(&changelog, vec![record("k0"), record("k1"), record("k2")])
        .unwrap();
    writer.flush().unwrap();
    writer.commit_transaction().unwrap();
    writer.begin_transaction().unwrap();
    writer
        .send(&changelog, vec![record("open0"), record("open1")])
        .unwrap();
    writer.flush().unwrap();

    let mut reader = cluster.changelog_source().unwrap();
    assert_eq!(reader.offsets(&changelog).unwrap(), (0, 4), "end = the LSO");
    let read = reader.read(&changelog, 0).unwrap();
    assert_eq!(
        read.iter().map(|r| r.offset).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    let started = Instant::now();
    assert!(reader.read(&changelog, 3).unwrap().is_empty());
    // No timing assertion: this only records that the read ended (a read waiting for the
    // open transaction would have failed after the request timeout instead).
    eprintln!("read at the LSO returned after {:?}", started.elapsed());

    writer.abort_transaction().unwrap();
    // Aborted: the end moves past the abort marker, and nothing more is readable.
    assert_eq!(reader.offsets(&changelog).unwrap(), (0, 7));
    let after: Vec<i64> = reader
        .read(&changelog, 0)
        .unwrap()
        .iter()
        .map(|r| r.offset)
        .collect();
    assert_eq!(after, vec![0, 1, 2]);
}
