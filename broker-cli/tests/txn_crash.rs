//! The transaction coordinator across a real process crash: a `broker serve` process is
//! SIGKILLed while it writes the markers of a transaction that spans many partitions (after
//! its PrepareCommit/PrepareAbort record, before its last marker), the data directory is read
//! offline to prove the kill landed there, and a restarted `broker serve` on the same
//! directory completes the transaction: CompleteCommit/CompleteAbort in
//! `__transaction_state`, a marker at the end of every partition of the transaction, and a
//! read_committed consumer that sees exactly the committed records. The librdkafka producer
//! whose EndTxn was cut off retries it against the restarted broker, gets its answer, and
//! commits a second transaction over the same partitions.
//!
//! How the kill lands in the window: the test polls the `__transaction_state` segment of the
//! transactional id until the Prepare record appears, then the segment of the first
//! partition the coordinator writes a marker to (it goes through the partitions in order)
//! until that marker appears, and SIGKILLs the broker at once. The data topics fsync every
//! batch (`flush.messages=1`), so each of the 256 markers costs an fsync and the coordinator
//! spends far longer on them than the test needs to notice the first one. Whether the kill
//! landed is decided offline from the files alone; an attempt where it did not (all markers
//! already written) is retried with a fresh directory, a bounded number of times, and the
//! test fails if no attempt landed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use broker_embedded::record::{decode_records, BatchIter, Record};
use broker_embedded::{TxnState, TRANSACTION_STATE_TOPIC};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Message, Offset, TopicPartitionList};

const BIN: &str = env!("CARGO_BIN_EXE_broker");

/// Data topics of the transaction, each with [`PARTITIONS`] partitions.
const TOPICS: usize = 8;
const PARTITIONS: i32 = 32;
/// Records sent to every partition inside the transaction.
const RECORDS_PER_PARTITION: usize = 2;
/// Fresh directories tried before the test gives up on landing a kill in the window.
const MAX_ATTEMPTS: usize = 5;
/// Bound of every wait.
const T: Duration = Duration::from_secs(20);

type TxProducer = ThreadedProducer<DefaultProducerContext>;

struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// SIGKILL, and wait for the process to be gone.
    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM (a graceful shutdown), and wait for a clean exit.
    fn stop(&mut self) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let deadline = Instant::now() + T;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "broker exited with {status}");
                return;
            }
            assert!(Instant::now() < deadline, "broker did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Starts `broker serve` on `data` listening on `listen`; its log goes to `log`.
fn serve(data: &Path, listen: &str, log: &Path) -> Server {
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut child = Command::new(BIN)
        .arg("serve")
        .arg("--listen")
        .arg(listen)
        .arg("--data-dir")
        .arg(data)
        .args([
            "--config",
            "num.partitions=1",
            "--config",
            "offsets.topic.num.partitions=1",
            "--config",
            "transaction.state.log.num.partitions=4",
            "--config",
            "group.initial.rebalance.delay.ms=0",
        ])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| {
            panic!(
                "broker did not start: {line:?}; its log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            )
        })
        .to_string();
    Server { child, addr }
}

/// Runs a `broker` client subcommand; returns its stdout, panicking on failure.
fn cli(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "broker {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn topic_name(t: usize) -> String {
    format!("crash-txn-{t:02}")
}

/// Every partition of the transaction, in the order the coordinator writes markers (the
/// order of `TopicPartition`: topic name, then partition).
fn all_partitions() -> Vec<(String, i32)> {
    let mut v: Vec<(String, i32)> = (0..TOPICS)
        .flat_map(|t| (0..PARTITIONS).map(move |p| (topic_name(t), p)))
        .collect();
    v.sort();
    v
}

fn value_of(topic: &str, partition: i32, i: usize) -> String {
    format!("{topic}/{partition}/{i}")
}

fn producer(addr: &str, id: &str) -> TxProducer {
    ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("transactional.id", id)
        .set("transaction.timeout.ms", "60000")
        .set("message.timeout.ms", "30000")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        // The broker is down for a moment: reconnect quickly.
        .set("reconnect.backoff.ms", "20")
        .set("reconnect.backoff.max.ms", "200")
        .set("retry.backoff.ms", "20")
        .set("retry.backoff.max.ms", "200")
        .create()
        .unwrap()
}

// ---------------------------------------------------------------------------------------
// Offline reading of a data directory (the broker's own record-batch parser)
// ---------------------------------------------------------------------------------------

/// One batch of a partition directory, read offline.
struct OfflineBatch {
    control: bool,
    producer_id: i64,
    records: Vec<Record>,
}

impl OfflineBatch {
    /// For a control batch, its record's key (`version 0 | type`: 0 ABORT, 1 COMMIT).
    fn control_key(&self) -> Option<&[u8]> {
        if !self.control {
            return None;
        }
        self.records.first().and_then(|r| r.key.as_deref())
    }
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut logs: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect(),
        Err(_) => Vec::new(),
    };
    // Named by base offset, 20 digits: name order is offset order.
    logs.sort();
    logs
}

fn read_partition_dir(dir: &Path) -> Vec<OfflineBatch> {
    let mut out = Vec::new();
    for file in segment_files(dir) {
        let bytes = std::fs::read(&file).unwrap();
        for item in BatchIter::new(&bytes) {
            let Ok(b) = item else {
                // A torn tail: what follows was never acknowledged.
                break;
            };
            out.push(OfflineBatch {
                control: b.header.is_control(),
                producer_id: b.header.producer_id,
                records: decode_records(b.bytes).unwrap(),
            });
        }
    }
    out
}

/// One `__transaction_state` record of a transactional id, decoded from Kafka's
/// `TransactionLogValue` (v0: version, producer id, epoch, timeout, state, ...).
#[derive(Debug, Clone, Copy)]
struct TxnStateRecord {
    producer_id: i64,
    state: TxnState,
}

fn be_i16(b: &[u8]) -> i16 {
    i16::from_be_bytes([b[0], b[1]])
}

/// The transactional id of a `TransactionLogKey` (version 0, then a string).
fn decode_txn_key(key: &[u8]) -> Option<String> {
    if key.len() < 4 || be_i16(key) != 0 {
        return None;
    }
    let n = usize::try_from(be_i16(&key[2..])).ok()?;
    String::from_utf8(key.get(4..4 + n)?.to_vec()).ok()
}

fn decode_txn_value(value: &[u8]) -> TxnStateRecord {
    assert!(value.len() > 16, "short TransactionLogValue {value:?}");
    let version = be_i16(value);
    assert!((0..=1).contains(&version), "TransactionLogValue v{version}");
    let mut pid = [0u8; 8];
    pid.copy_from_slice(&value[2..10]);
    TxnStateRecord {
        producer_id: i64::from_be_bytes(pid),
        state: TxnState::from_id(value[16] as i8).unwrap(),
    }
}

/// Every `__transaction_state` record of `transactional_id`, in log order, and the partition
/// directory holding them.
fn txn_state_history(
    data: &Path,
    transactional_id: &str,
) -> (Vec<TxnStateRecord>, Option<PathBuf>) {
    let mut found = (Vec::new(), None);
    for entry in std::fs::read_dir(data).unwrap() {
        let dir = entry.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with(&format!("{TRANSACTION_STATE_TOPIC}-")) {
            continue;
        }
        let history = txn_states_in(&dir, transactional_id);
        if !history.is_empty() {
            assert!(found.1.is_none(), "{transactional_id} in two partitions");
            found = (history, Some(dir));
        }
    }
    found
}

fn txn_states_in(dir: &Path, transactional_id: &str) -> Vec<TxnStateRecord> {
    read_partition_dir(dir)
        .into_iter()
        .filter(|b| !b.control)
        .flat_map(|b| b.records)
        .filter(|r| r.key.as_deref().and_then(decode_txn_key).as_deref() == Some(transactional_id))
        .map(|r| decode_txn_value(r.value.as_deref().expect("no tombstone expected")))
        .collect()
}

/// Marker key of a COMMIT (`commit`) or ABORT control record.
fn marker_key(commit: bool) -> Vec<u8> {
    vec![0, 0, 0, u8::from(commit)]
}

/// Whether the partition's last batch is the `commit` marker of `producer_id`.
fn ends_with_marker(batches: &[OfflineBatch], producer_id: i64, commit: bool) -> bool {
    batches.last().is_some_and(|b| {
        b.control
            && b.producer_id == producer_id
            && b.control_key() == Some(&marker_key(commit)[..])
    })
}

fn partition_dir(data: &Path, topic: &str, partition: i32) -> PathBuf {
    data.join(format!("{topic}-{partition}"))
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

// ---------------------------------------------------------------------------------------
// Consumers
// ---------------------------------------------------------------------------------------

/// Every value a consumer with `isolation` reads from the beginning of every partition of
/// the data topics, up to their ends, sorted. One consumer per topic (librdkafka reports the
/// end of a partition by its number alone), all at once.
fn read_all(addr: &str, isolation: &str) -> Vec<String> {
    let started = Instant::now();
    let mut out: Vec<String> = std::thread::scope(|s| {
        let readers: Vec<_> = (0..TOPICS)
            .map(|t| s.spawn(move || read_topic(addr, &topic_name(t), isolation)))
            .collect();
        readers
            .into_iter()
            .flat_map(|r| r.join().unwrap())
            .collect()
    });
    out.sort();
    println!(
        "read_all({isolation}): {} records in {:?}",
        out.len(),
        started.elapsed()
    );
    out
}

fn read_topic(addr: &str, topic: &str, isolation: &str) -> Vec<String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", format!("crash-reader-{isolation}"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", isolation)
        .set("fetch.wait.max.ms", "50")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let mut eof = std::collections::HashSet::new();
    let deadline = Instant::now() + T;
    while eof.len() < PARTITIONS as usize {
        assert!(
            Instant::now() < deadline,
            "reading {topic} ({isolation}) timed out after {} records",
            out.len()
        );
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                out.push(String::from_utf8(m.payload().unwrap().to_vec()).unwrap());
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                eof.insert(p);
            }
            Some(Err(e)) => panic!("consume error on {topic} ({isolation}): {e}"),
            None => {}
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// The scenario
// ---------------------------------------------------------------------------------------

/// What the kill left on disk, read offline.
struct KillReport {
    markers_written: usize,
    markers_missing: usize,
    producer_id: i64,
}

/// One attempt: returns `None` when the kill did not land between the Prepare record and the
/// last marker (the caller retries with a fresh directory).
fn attempt(commit: bool, n: usize) -> Option<KillReport> {
    let kind = if commit { "commit" } else { "abort" };
    let (prepare, complete) = if commit {
        (TxnState::PrepareCommit, TxnState::CompleteCommit)
    } else {
        (TxnState::PrepareAbort, TxnState::CompleteAbort)
    };
    let t0 = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let log = tmp.path().join("broker.log");
    let mut server = serve(&data, "127.0.0.1:0", &log);
    let addr = server.addr.clone();
    for t in 0..TOPICS {
        cli(&[
            "topics",
            "create",
            "--bootstrap-server",
            &addr,
            "--topic",
            &topic_name(t),
            "--partitions",
            &PARTITIONS.to_string(),
            // An fsync per batch: each marker takes a while, which widens the window.
            "--config",
            "flush.messages=1",
        ]);
    }

    let txn_id = format!("crash-{kind}-{n}");
    let p = producer(&addr, &txn_id);
    p.init_transactions(T).unwrap();
    p.begin_transaction().unwrap();
    let mut sent = Vec::new();
    for (topic, partition) in all_partitions() {
        for i in 0..RECORDS_PER_PARTITION {
            let v = value_of(&topic, partition, i);
            p.send(
                BaseRecord::<str, str>::to(&topic)
                    .partition(partition)
                    .key(&v)
                    .payload(&v),
            )
            .map_err(|(e, _)| e)
            .unwrap();
            sent.push(v);
        }
    }
    p.flush(T).unwrap();
    println!("attempt {n} ({kind}): {:?} to start and send", t0.elapsed());
    sent.sort();

    // The transaction is Ongoing on disk; find its `__transaction_state` segment.
    let (history, state_dir) = txn_state_history(&data, &txn_id);
    let state_dir = state_dir.expect("no __transaction_state record of the transactional id");
    assert_eq!(history.last().map(|r| r.state), Some(TxnState::Ongoing));
    let state_segments = segment_files(&state_dir);
    assert_eq!(state_segments.len(), 1, "{state_segments:?}");
    let state_segment = &state_segments[0];
    let (first_topic, first_partition) = all_partitions()[0].clone();
    let first_segment = segment_files(&partition_dir(&data, &first_topic, first_partition))
        .pop()
        .unwrap();
    let first_len = file_len(&first_segment);

    // Nothing else writes to this partition: sampled before EndTxn, its length changes with
    // the Prepare record.
    let mut state_len = file_len(state_segment);
    // End the transaction from another thread: the call blocks until the broker answers.
    let ender: JoinHandle<(TxProducer, KafkaResult<()>, Duration)> =
        std::thread::spawn(move || {
            let started = Instant::now();
            let r = if commit {
                p.commit_transaction(Duration::from_secs(30))
            } else {
                p.abort_transaction(Duration::from_secs(30))
            };
            (p, r, started.elapsed())
        });

    // Watch for the Prepare record, then for the first marker; kill at once.
    let deadline = Instant::now() + T;
    let mut prepared_at = None;
    let mut saw = Vec::new();
    loop {
        assert!(
            Instant::now() < deadline,
            "no {prepare} record of {txn_id} appeared (states seen {saw:?})"
        );
        if prepared_at.is_none() {
            let len = file_len(state_segment);
            if len != state_len {
                state_len = len;
                let states = txn_states_in(&state_dir, &txn_id);
                saw = states.iter().map(|r| r.state).collect();
                match states.last().map(|r| r.state) {
                    Some(s) if s == prepare => prepared_at = Some(Instant::now()),
                    // Already complete: too late for this attempt.
                    Some(s) if s == complete => break,
                    _ => {}
                }
            }
        } else if file_len(&first_segment) > first_len {
            break;
        }
        std::hint::spin_loop();
    }
    server.kill();
    let after_prepare = prepared_at.map(|t| t.elapsed());

    // Offline: where did the kill land?
    let (history, _) = txn_state_history(&data, &txn_id);
    let last = *history.last().unwrap();
    let mut markers_written = 0;
    let mut markers_missing = 0;
    for (topic, partition) in all_partitions() {
        let batches = read_partition_dir(&partition_dir(&data, &topic, partition));
        let values: Vec<Vec<u8>> = batches
            .iter()
            .filter(|b| !b.control)
            .flat_map(|b| {
                b.records
                    .iter()
                    .filter_map(|r| r.value.as_deref().map(<[u8]>::to_vec))
            })
            .collect();
        assert_eq!(
            values,
            (0..RECORDS_PER_PARTITION)
                .map(|i| value_of(&topic, partition, i).into_bytes())
                .collect::<Vec<_>>(),
            "{topic}-{partition} does not hold the records sent"
        );
        if ends_with_marker(&batches, last.producer_id, commit) {
            markers_written += 1;
        } else {
            assert!(
                batches.iter().all(|b| !b.control),
                "{topic}-{partition} has an unexpected control batch"
            );
            markers_missing += 1;
        }
    }
    let states: Vec<TxnState> = history.iter().map(|r| r.state).collect();
    println!(
        "attempt {n} ({kind}): killed {after_prepare:?} after the {prepare} record was seen; \
         last state {}, {markers_written} markers written, {markers_missing} missing (states {states:?})",
        last.state
    );
    if last.state != prepare || markers_missing == 0 {
        println!("attempt {n}: the kill missed the window; retrying with a fresh directory");
        // The producer may wait for its EndTxn answer until its timeout: leave it to it.
        drop(ender);
        return None;
    }
    assert_eq!(
        states.iter().filter(|s| **s == prepare).count(),
        1,
        "{states:?}"
    );
    let report = KillReport {
        markers_written,
        markers_missing,
        producer_id: last.producer_id,
    };

    // Restart on the same directory (and port, so that the producer's retried EndTxn reaches
    // the restarted broker).
    let mut server = serve(&data, &addr, &log);
    println!("attempt {n}: {:?} to restart", t0.elapsed());
    assert_eq!(server.addr, addr);

    // The coordinator completed the transaction before serving.
    let describe = cli(&[
        "transactions",
        "describe",
        "--bootstrap-server",
        &addr,
        "--transactional-id",
        &txn_id,
    ]);
    let row: Vec<&str> = describe.lines().nth(1).unwrap().split('\t').collect();
    assert_eq!(row[1], txn_id, "{describe}");
    assert_eq!(row[2], report.producer_id.to_string(), "{describe}");
    assert_eq!(row[4], complete.name(), "{describe}");

    // Every partition ends with the marker of the producer (written by the restarted
    // coordinator before it served; nothing was appended to these partitions since), and no
    // partition has a marker of the other kind.
    for (topic, partition) in all_partitions() {
        let batches = read_partition_dir(&partition_dir(&data, &topic, partition));
        assert!(
            ends_with_marker(&batches, report.producer_id, commit),
            "{topic}-{partition} does not end with the {kind} marker of producer {}",
            report.producer_id
        );
        assert!(
            !batches
                .iter()
                .any(|b| b.control_key() == Some(&marker_key(!commit)[..])),
            "{topic}-{partition} has a marker of the other kind"
        );
    }
    let (history, _) = txn_state_history(&data, &txn_id);
    assert_eq!(history.last().unwrap().state, complete, "{history:?}");

    // The producer whose EndTxn the kill cut off retried it and got its answer.
    let (p, ended, took) = ender.join().unwrap();
    println!("attempt {n}: the producer's {kind} returned {ended:?} after {took:?}");
    ended.unwrap_or_else(|e| panic!("{kind}_transaction after the restart: {e}"));

    // Consumers: read_committed sees exactly the committed records, read_uncommitted all.
    let committed = read_all(&addr, "read_committed");
    if commit {
        assert_eq!(committed.len(), sent.len());
        assert_eq!(committed, sent, "read_committed after the restart");
    } else {
        assert!(
            committed.is_empty(),
            "read_committed saw {} aborted records",
            committed.len()
        );
    }
    let uncommitted = read_all(&addr, "read_uncommitted");
    assert_eq!(uncommitted, sent, "read_uncommitted after the restart");

    // The same producer goes on: a second transaction over every partition commits (its
    // epoch and sequences were recovered by the restarted broker's partitions).
    p.begin_transaction().unwrap();
    let mut second = Vec::new();
    for (topic, partition) in all_partitions() {
        let v = format!("{topic}/{partition}/second");
        p.send(
            BaseRecord::<str, str>::to(&topic)
                .partition(partition)
                .key(&v)
                .payload(&v),
        )
        .map_err(|(e, _)| e)
        .unwrap();
        second.push(v);
    }
    p.commit_transaction(T).unwrap();
    drop(p);
    let mut expected = if commit { sent.clone() } else { Vec::new() };
    expected.extend(second);
    expected.sort();
    let committed = read_all(&addr, "read_committed");
    assert_eq!(committed.len(), expected.len());
    assert_eq!(
        committed, expected,
        "read_committed after a second transaction"
    );

    // A clean stop; the state log ends with the second transaction's completion.
    server.stop();
    println!("attempt {n}: {:?} in all", t0.elapsed());
    let (history, _) = txn_state_history(&data, &txn_id);
    let last = history.last().unwrap();
    assert_eq!(
        (last.producer_id, last.state),
        (report.producer_id, TxnState::CompleteCommit),
        "{history:?}"
    );
    Some(report)
}

fn run(commit: bool) {
    let started = Instant::now();
    for n in 1..=MAX_ATTEMPTS {
        if let Some(r) = attempt(commit, n) {
            println!(
                "kill landed in attempt {n} ({} of {} markers written at the kill); the restarted \
                 broker completed the transaction; {:?} in all",
                r.markers_written,
                r.markers_written + r.markers_missing,
                started.elapsed()
            );
            return;
        }
    }
    panic!(
        "no SIGKILL of {MAX_ATTEMPTS} attempts landed between the Prepare record and the last \
         marker: the window was never hit, nothing was tested"
    );
}

#[test]
fn a_commit_killed_between_prepare_commit_and_the_last_marker_completes_after_restart() {
    run(true);
}

#[test]
fn an_abort_killed_between_prepare_abort_and_the_last_marker_completes_after_restart() {
    run(false);
}
