//! The word-count application: the classic Kafka Streams example, on the embedded broker.
//!
//! Lines go to [`INPUT_TOPIC`] (null keys); the topology splits them into words (maximal runs
//! of Unicode alphanumeric characters, lowercased), groups by word through a repartition
//! topic, counts into the RocksDB store [`STORE`], and writes each count update to
//! [`OUTPUT_TOPIC`]. [`WordCount`] wraps the broker and the running application for the
//! `word-count` example and the tests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use broker_embedded::{Broker, BrokerConfig, BrokerError, IsolationLevel, NewTopic, ProduceRecord};
use bytes::Bytes;
use streams_core::{
    EmbeddedCluster, I64Serde, Nullable, ProcessingGuarantee, StreamsApp, StreamsConfig,
    StreamsError, StreamsState, StringSerde, Topology, VoidSerde,
};
use streams_dsl::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};

/// The application id (and consumer group).
pub const APPLICATION_ID: &str = "word-count";
/// Topic the lines are written to.
pub const INPUT_TOPIC: &str = "word-count-input";
/// Topic of the count updates (`word` -> count as a big-endian i64, Kafka's Long serde).
pub const OUTPUT_TOPIC: &str = "word-count-output";
/// The counts store; its changelog is `word-count-counts-changelog`.
pub const STORE: &str = "counts";
/// The text used when no input is given.
pub const SAMPLE_TEXT: &str = include_str!("../data/sample.txt");

/// Errors of the word-count application.
#[derive(Debug, thiserror::Error)]
pub enum WordCountError {
    /// The embedded broker failed.
    #[error("broker: {0}")]
    Broker(#[from] BrokerError),
    /// The streams runtime failed.
    #[error("streams: {0}")]
    Streams(#[from] StreamsError),
    /// Something did not happen in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// An output record could not be read.
    #[error("bad output record: {0}")]
    BadOutput(String),
}

/// Result alias.
pub type Result<T> = std::result::Result<T, WordCountError>;

/// The words of `line`: maximal runs of Unicode alphanumeric characters, lowercased.
///
/// ```
/// assert_eq!(examples::word_count::words("KAFKA_NODE_ID el tópico!").collect::<Vec<_>>(),
///            ["kafka", "node", "id", "el", "tópico"]);
/// ```
pub fn words(line: &str) -> impl Iterator<Item = String> + '_ {
    line.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

/// Counts the words of `text` directly (the oracle of the tests).
pub fn direct_count(text: &str) -> BTreeMap<String, i64> {
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        for w in words(line) {
            *counts.entry(w).or_insert(0) += 1;
        }
    }
    counts
}

/// The word-count topology.
pub fn topology() -> streams_core::Result<Topology> {
    topology_for(INPUT_TOPIC, OUTPUT_TOPIC)
}

/// The word-count topology reading lines from `input` and writing count updates to
/// `output`.
pub fn topology_for(input: &str, output: &str) -> streams_core::Result<Topology> {
    let builder = StreamsBuilder::new();
    builder
        .stream(input, Consumed::with(VoidSerde, StringSerde))
        .flat_map_values(|line: String| words(&line).collect::<Vec<_>>())
        .group_by(
            |_: &(), word: &String| word.clone(),
            Grouped::with(StringSerde, StringSerde),
        )
        .count(Materialized::as_store(STORE))
        .to_stream()
        .to(output, Produced::with(StringSerde, Nullable(I64Serde)));
    builder.build()
}

/// Settings of a [`WordCount`] run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Holds `broker/` (the log) and `state/` (the stores).
    pub data_dir: PathBuf,
    /// Partitions of the input and output topics.
    pub partitions: u32,
    /// Stream threads.
    pub threads: usize,
    /// Commit interval.
    pub commit_interval: Duration,
    /// Record cache size for the whole instance.
    pub cache_bytes: usize,
    /// The stream threads' `session.timeout.ms`. The broker keeps the group across
    /// restarts, so after a crash the restarted instance waits this long for the dead
    /// members to expire before it gets their tasks.
    pub session_timeout: Duration,
    /// `processing.guarantee`.
    pub processing_guarantee: ProcessingGuarantee,
}

impl Options {
    /// Defaults: 4 partitions, 1 thread, commit every 200 ms, 10 MiB cache, Kafka's 45 s
    /// session timeout.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Options {
            data_dir: data_dir.into(),
            partitions: 4,
            threads: 1,
            commit_interval: Duration::from_millis(200),
            cache_bytes: 10 << 20,
            session_timeout: Duration::from_secs(45),
            processing_guarantee: ProcessingGuarantee::AtLeastOnce,
        }
    }
}

/// A running word count: an embedded broker plus the streams application.
pub struct WordCount {
    broker: Broker,
    app: StreamsApp,
    next_partition: u32,
    partitions: u32,
}

impl std::fmt::Debug for WordCount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WordCount").field("app", &self.app).finish()
    }
}

fn ensure_topic(broker: &Broker, name: &str, partitions: u32) -> Result<()> {
    if !broker.topic_exists(name) {
        match broker.create_topic(NewTopic::new(name, partitions)) {
            Ok(_) | Err(BrokerError::TopicAlreadyExists(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

impl WordCount {
    /// Opens (or reopens) the broker in `<data_dir>/broker`, creates the topics and starts
    /// the application with its state in `<data_dir>/state`; returns once it is running.
    pub fn start(options: &Options) -> Result<Self> {
        let mut broker_config = BrokerConfig::new(options.data_dir.join("broker"));
        // One application instance on an in-process broker: no other members to wait for
        // (Kafka recommends 0 for development too).
        broker_config.group_initial_rebalance_delay = Duration::ZERO;
        let broker = Broker::open(broker_config)?;
        ensure_topic(&broker, INPUT_TOPIC, options.partitions)?;
        ensure_topic(&broker, OUTPUT_TOPIC, options.partitions)?;
        let config = StreamsConfig::new(APPLICATION_ID)
            .state_dir(options.data_dir.join("state"))
            .num_stream_threads(options.threads)
            .commit_interval(options.commit_interval)
            .cache_max_bytes(options.cache_bytes)
            .session_timeout(options.session_timeout)
            .processing_guarantee(options.processing_guarantee);
        let mut app = StreamsApp::new(topology()?, config, EmbeddedCluster::new(broker.clone()))?;
        app.start()?;
        if !app.wait_for_state(StreamsState::Running, Duration::from_secs(120)) {
            return Err(WordCountError::Timeout(format!(
                "the application did not reach RUNNING (state {:?}; errors: {})",
                app.state(),
                app.errors().join("; ")
            )));
        }
        let partitions = broker.partition_count(INPUT_TOPIC)?;
        Ok(WordCount {
            broker,
            app,
            next_partition: 0,
            partitions,
        })
    }

    /// The broker.
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// The application.
    pub fn app(&self) -> &StreamsApp {
        &self.app
    }

    /// Appends lines to the input topic (null keys, spread over the partitions in batches).
    pub fn produce_lines<S: AsRef<str>>(&mut self, lines: &[S]) -> Result<()> {
        for chunk in lines.chunks(500) {
            let records: Vec<ProduceRecord> = chunk
                .iter()
                .map(|l| ProduceRecord::value_only(Bytes::copy_from_slice(l.as_ref().as_bytes())))
                .collect();
            let p = i32::try_from(self.next_partition).unwrap_or(0);
            self.broker.produce(INPUT_TOPIC, p, &records)?;
            self.next_partition = (self.next_partition + 1) % self.partitions.max(1);
        }
        Ok(())
    }

    /// Waits until every line produced so far is counted and committed.
    pub fn wait_until_processed(&self, timeout: Duration) -> Result<()> {
        if self.app.wait_until_caught_up(timeout)? {
            Ok(())
        } else {
            Err(WordCountError::Timeout(format!(
                "input not processed within {timeout:?} (state {:?})",
                self.app.state()
            )))
        }
    }

    /// The latest count of every word, read from the output topic.
    pub fn counts(&self) -> Result<BTreeMap<String, i64>> {
        read_counts(&self.broker)
    }

    /// Stops the application cleanly (final commit, checkpoints) and closes the broker.
    pub fn close(mut self) -> Result<()> {
        self.app.close();
        let errors = self.app.errors();
        self.broker.shutdown()?;
        if errors.is_empty() {
            Ok(())
        } else {
            Err(WordCountError::Streams(StreamsError::IllegalState(
                errors.join("; "),
            )))
        }
    }
}

/// The latest count per word in [`OUTPUT_TOPIC`] of `broker`.
pub fn read_counts(broker: &Broker) -> Result<BTreeMap<String, i64>> {
    let mut counts = BTreeMap::new();
    let partitions = broker.partition_count(OUTPUT_TOPIC)?;
    for p in 0..i32::try_from(partitions).unwrap_or(0) {
        let mut offset = broker.partition_offsets(OUTPUT_TOPIC, p)?.log_start_offset;
        loop {
            // Records of aborted transactions (exactly-once after a crash) are skipped.
            let read = broker.read_records(
                OUTPUT_TOPIC,
                p,
                offset,
                4 << 20,
                IsolationLevel::ReadCommitted,
            )?;
            let Some(next) = read.next_offset else {
                break;
            };
            offset = next;
            let records = read.records;
            for r in records {
                let key = r
                    .key
                    .ok_or_else(|| WordCountError::BadOutput("null key".into()))?;
                let word = String::from_utf8(key.to_vec())
                    .map_err(|e| WordCountError::BadOutput(format!("key is not UTF-8: {e}")))?;
                let value = r
                    .value
                    .ok_or_else(|| WordCountError::BadOutput(format!("null count for `{word}`")))?;
                let bytes: [u8; 8] = value.as_ref().try_into().map_err(|_| {
                    WordCountError::BadOutput(format!(
                        "count of `{word}` is {} bytes, not 8",
                        value.len()
                    ))
                })?;
                counts.insert(word, i64::from_be_bytes(bytes));
            }
        }
    }
    Ok(counts)
}

/// The `n` most frequent words (ties by word), as `(word, count)`.
pub fn top(counts: &BTreeMap<String, i64>, n: usize) -> Vec<(&str, i64)> {
    let mut v: Vec<(&str, i64)> = counts.iter().map(|(w, c)| (w.as_str(), *c)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    v.truncate(n);
    v
}

/// Removes the local state of the application under `data_dir` (the tests use this to
/// check restoration from the changelog).
pub fn delete_local_state(data_dir: &Path) -> std::io::Result<()> {
    let dir = data_dir.join("state");
    match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
