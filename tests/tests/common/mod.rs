//! The harness shared by the cross-crate runtime tests (each test file does `mod common;`,
//! Cargo's convention for code shared by integration tests): an embedded broker in a
//! temporary directory, starting a `StreamsApp` on it, producing keyed records to the
//! partition Java's partitioner picks, reading whole topics back, bounded waits, changelog
//! configs, a seeded pseudo-random generator and child processes for SIGKILL tests.

// Every test binary compiles this module but uses only some of its helpers.
#![allow(dead_code)]

pub(crate) mod cluster;
pub(crate) mod regions;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use broker_embedded::record::Record;
use broker_embedded::{
    partition_for_key, Broker, BrokerConfig, IsolationLevel, NewTopic, ProduceRecord,
    TopicPartition,
};
use streams_core::{EmbeddedCluster, StreamsApp, StreamsConfig, StreamsState, Topology};

/// Bound of a wait unless a test says otherwise.
pub(crate) const WAIT: Duration = Duration::from_secs(90);

// ---------------------------------------------------------------------------------------------
// The broker

/// An embedded broker in a temporary directory (removed on drop): the broker's data in
/// `<dir>/broker`, room for state directories next to it.
pub(crate) struct Env {
    /// The temporary directory.
    pub(crate) dir: tempfile::TempDir,
    /// The broker on `<dir>/broker`.
    pub(crate) broker: Broker,
}

impl Env {
    /// A new broker (see [`open_broker`]) with `topics` (name, partitions) created.
    pub(crate) fn new(topics: &[(&str, u32)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let broker = open_broker(dir.path());
        create_topics(&broker, topics);
        Env { dir, broker }
    }

    /// The temporary directory.
    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `<dir>/state`, the usual state directory of the application under test.
    pub(crate) fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// [`start_app`] on this broker.
    pub(crate) fn start(&self, topology: Topology, config: StreamsConfig) -> StreamsApp {
        start_app(topology, config, &self.broker)
    }

    /// Produces `records` to one partition.
    pub(crate) fn produce(&self, topic: &str, partition: i32, records: &[ProduceRecord]) {
        self.broker.produce(topic, partition, records).unwrap();
    }

    /// Every record of a partition, in offset order ([`read_partition`] from 0).
    pub(crate) fn read(&self, topic: &str, partition: i32) -> Vec<Record> {
        read_partition(&self.broker, topic, partition, 0)
    }

    /// Every record of every partition of `topic` ([`read_topic`]).
    pub(crate) fn read_all(&self, topic: &str) -> Vec<Record> {
        read_topic(&self.broker, topic)
    }

    /// The high watermark of a partition.
    pub(crate) fn end(&self, topic: &str, partition: i32) -> i64 {
        self.broker
            .partition_offsets(topic, partition)
            .unwrap()
            .high_watermark
    }

    /// The offset `group` committed for a partition, if any.
    pub(crate) fn committed(&self, group: &str, topic: &str, partition: i32) -> Option<i64> {
        self.broker
            .committed_offset(group, &TopicPartition::new(topic, partition))
            .map(|o| o.offset)
    }
}

/// Opens the broker of `<dir>/broker` with `group_initial_rebalance_delay = 0`, so that a
/// group forms at once.
pub(crate) fn open_broker(dir: &Path) -> Broker {
    let mut c = BrokerConfig::new(dir.join("broker"));
    c.group_initial_rebalance_delay = Duration::ZERO;
    Broker::open(c).unwrap()
}

/// Creates `topics` (name, partitions) with the broker's default configs.
pub(crate) fn create_topics(broker: &Broker, topics: &[(&str, u32)]) {
    for (t, p) in topics {
        broker.create_topic(NewTopic::new(*t, *p)).unwrap();
    }
}

/// The configs of `topic` as the broker describes them: name to value.
pub(crate) fn topic_configs(broker: &Broker, topic: &str) -> BTreeMap<String, String> {
    broker
        .describe_topic(topic)
        .unwrap()
        .configs
        .into_iter()
        .map(|e| (e.name, e.value))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The application

/// The usual config of an application under test: `app`, state in `state_dir`, a commit
/// every 100 ms.
pub(crate) fn config(app: &str, state_dir: &Path) -> StreamsConfig {
    StreamsConfig::new(app)
        .state_dir(state_dir)
        .commit_interval(Duration::from_millis(100))
}

/// Creates and starts an application of `topology` on `broker`, without waiting.
pub(crate) fn start_app(topology: Topology, config: StreamsConfig, broker: &Broker) -> StreamsApp {
    let mut app = StreamsApp::new(topology, config, EmbeddedCluster::new(broker.clone())).unwrap();
    app.start().unwrap();
    app
}

/// [`start_app`], then waits (at most [`WAIT`]) for it to be RUNNING.
pub(crate) fn start_running(
    topology: Topology,
    config: StreamsConfig,
    broker: &Broker,
) -> StreamsApp {
    let app = start_app(topology, config, broker);
    wait_running(&app, WAIT);
    app
}

/// Fails unless `app` is RUNNING within `timeout`.
pub(crate) fn wait_running(app: &StreamsApp, timeout: Duration) {
    assert!(
        app.wait_for_state(StreamsState::Running, timeout),
        "not running: {:?} {:?}",
        app.state(),
        app.errors()
    );
}

// ---------------------------------------------------------------------------------------------
// Waiting

/// How long to wait for a condition, and how often to look.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Patience {
    /// Fail after this long.
    pub(crate) timeout: Duration,
    /// Look again after this long.
    pub(crate) every: Duration,
}

impl Patience {
    /// [`WAIT`], looking every 50 ms.
    pub(crate) const DEFAULT: Patience = Patience::new(WAIT, Duration::from_millis(50));

    /// Waits at most `timeout`, looking every `every`.
    pub(crate) const fn new(timeout: Duration, every: Duration) -> Self {
        Patience { timeout, every }
    }

    /// Waits until `check` holds, or fails naming `what` after the timeout.
    pub(crate) fn wait_for(self, what: &str, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + self.timeout;
        while !check() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(self.every);
        }
    }
}

/// Waits until `check` holds, or fails naming `what` after [`WAIT`] ([`Patience::DEFAULT`]).
pub(crate) fn wait_for(what: &str, check: impl FnMut() -> bool) {
    Patience::DEFAULT.wait_for(what, check);
}

// ---------------------------------------------------------------------------------------------
// Producing

/// A record with a text key and value (`None`: a tombstone), no timestamp.
pub(crate) fn record(key: &str, value: Option<&str>) -> ProduceRecord {
    ProduceRecord {
        key: Some(key.as_bytes().to_vec().into()),
        value: value.map(|v| v.as_bytes().to_vec().into()),
        ..ProduceRecord::default()
    }
}

/// A record with a text key and value and a timestamp.
pub(crate) fn timed(key: &str, value: &str, timestamp: i64) -> ProduceRecord {
    record(key, Some(value)).with_timestamp(timestamp)
}

/// The partition of `key` among `partitions` as Java's default partitioner picks it.
pub(crate) fn partition_of(key: &[u8], partitions: u32) -> i32 {
    i32::try_from(partition_for_key(key, partitions).unwrap()).unwrap()
}

/// Produces each record, one at a time and in order, to the partition of its key (see
/// [`partition_of`]) among the `partitions` of `topic`.
pub(crate) fn produce_keyed(
    broker: &Broker,
    topic: &str,
    partitions: u32,
    records: &[ProduceRecord],
) {
    for r in records {
        let key = r.key.as_deref().expect("a keyed record");
        let p = partition_of(key, partitions);
        broker.produce(topic, p, std::slice::from_ref(r)).unwrap();
    }
}

/// Produces `(key, timestamp)` events, each with the text value `value`, one at a time and
/// in order, to the partition of its key (see [`produce_keyed`]).
pub(crate) fn produce_events(
    broker: &Broker,
    topic: &str,
    partitions: u32,
    value: &str,
    events: &[(String, i64)],
) {
    let records: Vec<_> = events.iter().map(|(k, ts)| timed(k, value, *ts)).collect();
    produce_keyed(broker, topic, partitions, &records);
}

// ---------------------------------------------------------------------------------------------
// Reading

/// Every record of a partition from offset `from` (or the log start, if later) to the end,
/// read committed (records of aborted transactions skipped), in offset order.
pub(crate) fn read_partition(
    broker: &Broker,
    topic: &str,
    partition: i32,
    from: i64,
) -> Vec<Record> {
    read_partition_isolated(
        broker,
        topic,
        partition,
        from,
        IsolationLevel::ReadCommitted,
    )
}

/// As [`read_partition`], with `isolation`: `ReadUncommitted` also returns the records of
/// aborted and open transactions (up to the high watermark).
pub(crate) fn read_partition_isolated(
    broker: &Broker,
    topic: &str,
    partition: i32,
    from: i64,
    isolation: IsolationLevel,
) -> Vec<Record> {
    let mut out = Vec::new();
    let start = broker
        .partition_offsets(topic, partition)
        .unwrap()
        .log_start_offset;
    let mut offset = from.max(start);
    loop {
        let read = broker
            .read_records(topic, partition, offset, 4 << 20, isolation)
            .unwrap();
        let Some(next) = read.next_offset else {
            return out;
        };
        offset = next;
        out.extend(read.records.into_iter().filter(|r| r.offset >= from));
    }
}

/// Every record of every partition of `topic`, partition by partition, in offset order.
pub(crate) fn read_topic(broker: &Broker, topic: &str) -> Vec<Record> {
    let n = i32::try_from(broker.partition_count(topic).unwrap()).unwrap();
    (0..n)
        .flat_map(|p| read_partition(broker, topic, p, 0))
        .collect()
}

/// The latest (key, value) of `records` per key, as `decode` reads them: a later record
/// replaces an earlier one of the same key.
pub(crate) fn latest_by_key<K: Ord, V>(
    records: &[Record],
    decode: impl FnMut(&Record) -> (K, V),
) -> BTreeMap<K, V> {
    records.iter().map(decode).collect()
}

/// Bytes as UTF-8 text (`None` stays `None`).
pub(crate) fn text(b: &Option<bytes::Bytes>) -> Option<String> {
    b.as_ref()
        .map(|b| String::from_utf8(b.to_vec()).expect("UTF-8 text"))
}

/// A big-endian `i64` (the bytes of Kafka's `LongSerializer`).
pub(crate) fn be_i64(b: &[u8]) -> i64 {
    i64::from_be_bytes(b.try_into().expect("8 bytes"))
}

// ---------------------------------------------------------------------------------------------
// Generated input

/// Marsaglia's xorshift64 from `0x9E37_79B9_7F4A_7C15 ^ seed`: the tests' seeded
/// pseudo-random input.
pub(crate) struct XorShift(u64);

impl XorShift {
    /// The generator of `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        XorShift(0x9E37_79B9_7F4A_7C15_u64 ^ seed)
    }

    /// The next number.
    pub(crate) fn next(&mut self) -> u64 {
        let x = &mut self.0;
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x
    }
}

/// The count per (key, window start) of `(key, timestamp)` events in tumbling windows of
/// `size` ms starting at 0.
pub(crate) fn counts_per_window(
    events: &[(String, i64)],
    size: i64,
) -> BTreeMap<(String, i64), i64> {
    let mut m = BTreeMap::new();
    for (k, ts) in events {
        *m.entry((k.clone(), ts / size * size)).or_insert(0) += 1;
    }
    m
}

/// `parts` joined into one text, one line each.
pub(crate) fn join_lines(parts: &[&[String]]) -> String {
    parts
        .iter()
        .flat_map(|p| p.iter())
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join("\n")
}

// ---------------------------------------------------------------------------------------------
// Child processes (SIGKILL tests)

/// Kills (SIGKILL) and reaps the child when dropped, so a failing parent leaves none behind.
pub(crate) struct ChildGuard(pub(crate) Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the ignored test `test` of this test binary in a child process with `env` set, and
/// returns it with the lines of its standard output (standard error is discarded).
pub(crate) fn spawn_child_test(
    test: &str,
    env: &[(&str, &std::ffi::OsStr)],
) -> (ChildGuard, mpsc::Receiver<String>) {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--exact",
            test,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = ChildGuard(command.spawn().unwrap());
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Kills the child with SIGKILL and reaps it.
pub(crate) fn kill(mut child: ChildGuard) {
    child.0.kill().unwrap(); // SIGKILL
    child.0.wait().unwrap();
}

// ---------------------------------------------------------------------------------------------
// `broker serve` as a process

/// `target/<profile>`, from this test binary's path (`target/<profile>/deps/<test>`).
pub(crate) fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// `broker serve` (`target/<profile>/broker`; `cargo build -p broker-cli` first) as a
/// process on an ephemeral port, its data in `<dir>/<data>` and its log in
/// `<dir>/broker.log`, restartable on the same port and data directory.
pub(crate) struct BrokerProcess {
    child: Option<ChildGuard>,
    data: PathBuf,
    log: PathBuf,
    configs: Vec<String>,
    rust_log: String,
    /// `host:port` the broker listens on.
    pub(crate) addr: String,
}

impl BrokerProcess {
    /// Starts the broker with `group.initial.rebalance.delay.ms=0` and `configs`
    /// (`key=value`), logging at `rust_log`.
    pub(crate) fn start(dir: &Path, data: &str, configs: &[&str], rust_log: &str) -> Self {
        let mut b = BrokerProcess {
            child: None,
            data: dir.join(data),
            log: dir.join("broker.log"),
            configs: configs.iter().map(|c| (*c).to_owned()).collect(),
            rust_log: rust_log.to_owned(),
            addr: "127.0.0.1:0".into(),
        };
        b.spawn();
        b
    }

    fn spawn(&mut self) {
        let binary = profile_dir().join("broker");
        assert!(
            binary.exists(),
            "{} is missing: run `cargo build -p broker-cli` first",
            binary.display()
        );
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut command = Command::new(binary);
        command
            .args(["serve", "--listen", &self.addr])
            .args(["--config", "group.initial.rebalance.delay.ms=0"]);
        for c in &self.configs {
            command.args(["--config", c]);
        }
        let mut child = command
            .arg("--data-dir")
            .arg(&self.data)
            .env("RUST_LOG", &self.rust_log)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        self.addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line of broker serve: {line:?}"))
            .to_owned();
        self.child = Some(ChildGuard(child));
    }

    /// SIGKILL, `down` without a broker, then the broker again on its port and data.
    pub(crate) fn kill_and_restart(&mut self, down: Duration) {
        let addr = self.addr.clone();
        kill(self.child.take().unwrap());
        std::thread::sleep(down);
        self.spawn();
        assert_eq!(self.addr, addr, "the broker came back on another port");
    }
}
