//! Word count against a Kafka-protocol cluster (`broker serve`, or any Kafka): several
//! processes with the same application id share the work.
//!
//! Lines go to [`INPUT_TOPIC`] (`text-lines`, created with [`PARTITIONS`] partitions when
//! missing); count updates go to [`OUTPUT_TOPIC`] (`word-counts`: key = the word as UTF-8,
//! value = the count as Kafka's 8-byte big-endian long). The topology is the embedded
//! example's ([`crate::word_count::topology_for`]); the application runs on the wire backend
//! ([`streams_core::KafkaCluster`]). The counting sub-topology's task `1_p` owns the words of
//! repartition partition `p`, and since the output topic has as many partitions and uses the
//! same (Java) partitioner, its updates land in `word-counts` partition `p`: what
//! [`read_counts`] reads back per partition.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};
use streams_core::{KafkaCluster, StreamsApp, StreamsConfig, StreamsError, TaskId};

use crate::word_count::{topology_for, WordCountError};

/// Topic of the input lines.
pub const INPUT_TOPIC: &str = "text-lines";
/// Topic of the count updates.
pub const OUTPUT_TOPIC: &str = "word-counts";
/// Partitions of the topics when the example creates them.
pub const PARTITIONS: i32 = 8;
/// The sub-topology that counts (the first one splits lines and repartitions by word).
pub const COUNT_SUBTOPOLOGY: u32 = 1;

/// Result alias.
pub type Result<T> = std::result::Result<T, WordCountError>;

fn kafka(context: &str, e: KafkaError) -> WordCountError {
    WordCountError::Streams(StreamsError::Cluster {
        kind: streams_core::ClusterErrorKind::Fatal,
        message: format!("{context}: {e}"),
        source: Some(Box::new(e)),
    })
}

/// Settings of one instance.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// `bootstrap.servers`.
    pub bootstrap: String,
    /// `application.id` (the group every instance joins).
    pub application_id: String,
    /// `state.dir` of this instance.
    pub state_dir: PathBuf,
    /// `num.stream.threads`.
    pub threads: usize,
    /// `commit.interval.ms`.
    pub commit_interval: Duration,
    /// `session.timeout.ms`.
    pub session_timeout: Duration,
    /// Further Kafka Streams properties (`num.standby.replicas`, `group.instance.id`, ...).
    pub properties: Vec<(String, String)>,
}

impl ClusterOptions {
    /// Defaults: 1 thread, commit every second, a 10 s session timeout (instances that die
    /// hand their tasks over within seconds).
    pub fn new(bootstrap: &str, application_id: &str, state_dir: impl Into<PathBuf>) -> Self {
        ClusterOptions {
            bootstrap: bootstrap.to_owned(),
            application_id: application_id.to_owned(),
            state_dir: state_dir.into(),
            threads: 1,
            commit_interval: Duration::from_secs(1),
            session_timeout: Duration::from_secs(10),
            properties: Vec::new(),
        }
    }

    /// The streams configuration of these options.
    pub fn config(&self) -> Result<StreamsConfig> {
        let mut props: Vec<(String, String)> = vec![
            ("application.id".into(), self.application_id.clone()),
            ("bootstrap.servers".into(), self.bootstrap.clone()),
            ("state.dir".into(), self.state_dir.display().to_string()),
            ("num.stream.threads".into(), self.threads.to_string()),
            (
                "commit.interval.ms".into(),
                self.commit_interval.as_millis().to_string(),
            ),
            (
                "session.timeout.ms".into(),
                self.session_timeout.as_millis().to_string(),
            ),
        ];
        props.extend(self.properties.iter().cloned());
        Ok(StreamsConfig::from_properties(props)?)
    }
}

fn admin(bootstrap: &str) -> Result<AdminClient<DefaultClientContext>> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .map_err(|e| kafka("creating an admin client", e))
}

/// Creates `text-lines` and `word-counts` with [`PARTITIONS`] partitions if they are missing.
pub fn ensure_topics(bootstrap: &str) -> Result<()> {
    let admin = admin(bootstrap)?;
    let topics = [
        NewTopic::new(INPUT_TOPIC, PARTITIONS, TopicReplication::Fixed(1)),
        NewTopic::new(OUTPUT_TOPIC, PARTITIONS, TopicReplication::Fixed(1)),
    ];
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| WordCountError::Timeout(format!("tokio runtime: {e}")))?;
    let results = rt
        .block_on(admin.create_topics(&topics, &AdminOptions::new()))
        .map_err(|e| kafka("creating topics", e))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(kafka(
                    &format!("creating topic `{name}`"),
                    KafkaError::AdminOp(code),
                ))
            }
        }
    }
    Ok(())
}

/// Produces `lines` to `text-lines` (null keys, 500-line batches spread round-robin over
/// the partitions, each record stamped with the current time) and waits for every
/// acknowledgement. Returns the number of lines written.
pub fn produce_lines<S: AsRef<str>>(bootstrap: &str, lines: &[S]) -> Result<usize> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .map_err(|e| kafka("creating a producer", e))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    for (i, chunk) in lines.chunks(500).enumerate() {
        let partition = i32::try_from(i % PARTITIONS as usize).unwrap_or(0);
        for line in chunk {
            let payload = line.as_ref().as_bytes();
            loop {
                let record: BaseRecord<'_, (), [u8]> = BaseRecord::to(INPUT_TOPIC)
                    .partition(partition)
                    .timestamp(now)
                    .payload(payload);
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        producer.poll(Duration::from_millis(50));
                    }
                    Err((e, _)) => return Err(kafka("producing lines", e)),
                }
            }
        }
    }
    producer
        .flush(Duration::from_secs(60))
        .map_err(|e| kafka("flushing the lines", e))?;
    Ok(lines.len())
}

/// The latest count per word in `word-counts`, from the partitions in `only` (every
/// partition when `None`), read up to the end offsets at the time of the call.
pub fn read_counts(bootstrap: &str, only: Option<&BTreeSet<i32>>) -> Result<BTreeMap<String, i64>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.auto.commit", "false")
        // librdkafka assigns only with a group id; this one never joins nor commits.
        .set("group.id", "word-count-reader")
        .set("isolation.level", "read_committed")
        .create()
        .map_err(|e| kafka("creating a consumer", e))?;
    let timeout = Duration::from_secs(10);
    let mut ends = BTreeMap::new();
    let mut list = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        if only.is_some_and(|o| !o.contains(&p)) {
            continue;
        }
        let (low, high) = consumer
            .fetch_watermarks(OUTPUT_TOPIC, p, timeout)
            .map_err(|e| kafka("reading the end offsets", e))?;
        if high > low {
            ends.insert(p, high);
            list.add_partition_offset(OUTPUT_TOPIC, p, Offset::Offset(low))
                .map_err(|e| kafka("assigning", e))?;
        }
    }
    let mut counts = BTreeMap::new();
    if ends.is_empty() {
        return Ok(counts);
    }
    consumer.assign(&list).map_err(|e| kafka("assigning", e))?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut done = BTreeSet::new();
    while done.len() < ends.len() {
        if Instant::now() > deadline {
            return Err(WordCountError::Timeout(format!(
                "reading {OUTPUT_TOPIC}: {} of {} partitions read to their end",
                done.len(),
                ends.len()
            )));
        }
        let Some(m) = consumer.poll(Duration::from_millis(200)) else {
            // Under exactly-once the last offset below the end is a transaction marker,
            // never handed out: the consumer's position (past markers) tells the end.
            let positions = consumer
                .position()
                .map_err(|e| kafka("reading positions", e))?;
            for e in positions.elements() {
                if let (Offset::Offset(o), Some(end)) = (e.offset(), ends.get(&e.partition())) {
                    if o >= *end {
                        done.insert(e.partition());
                    }
                }
            }
            continue;
        };
        let m = m.map_err(|e| kafka("reading counts", e))?;
        let key = m
            .key()
            .ok_or_else(|| WordCountError::BadOutput("null key".into()))?;
        let word = String::from_utf8(key.to_vec())
            .map_err(|e| WordCountError::BadOutput(format!("key is not UTF-8: {e}")))?;
        let value = m
            .payload()
            .ok_or_else(|| WordCountError::BadOutput(format!("null count for `{word}`")))?;
        let bytes: [u8; 8] = value.try_into().map_err(|_| {
            WordCountError::BadOutput(format!("count of `{word}` is {} bytes, not 8", value.len()))
        })?;
        counts.insert(word, i64::from_be_bytes(bytes));
        if ends
            .get(&m.partition())
            .is_some_and(|end| m.offset() + 1 >= *end)
        {
            done.insert(m.partition());
        }
    }
    Ok(counts)
}

/// Records in the counts store's changelog (`<application_id>-counts-changelog`) partitions
/// `partitions`, summed: what restoring those count tasks from scratch reads.
pub fn changelog_records(
    bootstrap: &str,
    application_id: &str,
    partitions: &BTreeSet<i32>,
) -> Result<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "word-count-reader")
        .create()
        .map_err(|e| kafka("creating a consumer", e))?;
    let topic = format!("{application_id}-{}-changelog", crate::word_count::STORE);
    let mut total = 0;
    for p in partitions {
        let (low, high) = consumer
            .fetch_watermarks(&topic, *p, Duration::from_secs(10))
            .map_err(|e| kafka("reading the changelog's offsets", e))?;
        total += high - low;
    }
    Ok(total)
}

/// Starts an instance of the word-count application on the cluster (it joins the group and
/// gets its share of the tasks through rebalances).
pub fn start(options: &ClusterOptions) -> Result<StreamsApp> {
    let config = options.config()?;
    let cluster = KafkaCluster::new(&config)?;
    let mut app = StreamsApp::new(topology_for(INPUT_TOPIC, OUTPUT_TOPIC)?, config, cluster)?;
    app.start()?;
    Ok(app)
}

/// The output partitions whose counts the counting tasks in `tasks` own.
pub fn count_partitions(tasks: &BTreeSet<TaskId>) -> BTreeSet<i32> {
    tasks
        .iter()
        .filter(|t| t.subtopology == COUNT_SUBTOPOLOGY)
        .map(|t| t.partition)
        .collect()
}
