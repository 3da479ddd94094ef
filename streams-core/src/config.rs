//! `StreamsConfig`: the settings of a streams application, with Kafka Streams' keys.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::assignment::HostInfo;
use crate::assignor::AssignorConfig;
use crate::error::{Result, StreamsError};
use crate::serde::{Serde, SerdeRegistry};

/// Delivery guarantee (Kafka's `processing.guarantee`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProcessingGuarantee {
    /// Records are processed at least once: after a crash, records since the last commit
    /// are processed again.
    #[default]
    AtLeastOnce,
    /// Exactly-once (Kafka's `exactly_once_v2`, KIP-447): each stream thread writes its
    /// output records, changelog records and input offsets in one transaction per commit
    /// (one transactional producer per thread), and reads `read_committed`. After a crash,
    /// what was not committed is aborted and its effects on local state are wiped.
    ExactlyOnceV2,
}

impl ProcessingGuarantee {
    /// True under exactly-once.
    pub fn is_exactly_once(self) -> bool {
        self == ProcessingGuarantee::ExactlyOnceV2
    }
}

/// Kafka Streams' default `commit.interval.ms` under exactly-once.
pub const EOS_DEFAULT_COMMIT_INTERVAL: Duration = Duration::from_millis(100);

/// Kafka Streams' default `transaction.timeout.ms` of its producers under exactly-once.
pub const EOS_DEFAULT_TRANSACTION_TIMEOUT: Duration = Duration::from_millis(10_000);

/// What happens to a record that cannot be deserialized (Kafka's
/// `default.deserialization.exception.handler`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum DeserializationHandler {
    /// Stop the stream thread with an error (Kafka's `LogAndFailExceptionHandler`).
    #[default]
    Fail,
    /// Log, count and skip the record (Kafka's `LogAndContinueExceptionHandler`); with a
    /// dead-letter topic, also write the original bytes there with `__streams.errors.*`
    /// headers saying what failed and where the record came from.
    LogAndContinue {
        /// Topic receiving the skipped records (must exist).
        dead_letter_topic: Option<String>,
    },
}

/// What happens to a record whose extracted timestamp is negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InvalidTimestampPolicy {
    /// Stop with an error (Kafka's `FailOnInvalidTimestamp`, the default extractor).
    #[default]
    Fail,
    /// Log and skip the record (`LogAndSkipOnInvalidTimestamp`).
    LogAndSkip,
    /// Use the partition's current time (`UsePartitionTimeOnInvalidTimestamp`).
    UsePartitionTime,
}

/// What happens when a stream thread fails (Kafka's `StreamsUncaughtExceptionHandler`
/// responses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UncaughtErrorPolicy {
    /// Stop the failed thread; the others go on with the remaining tasks.
    ReplaceThread,
    /// Stop this thread only; if no thread is left the application goes to ERROR.
    ShutdownThread,
    /// Stop the whole application (state ERROR) — Kafka's default.
    #[default]
    ShutdownClient,
}

/// The configuration of a streams application.
///
/// ```
/// use std::time::Duration;
/// use streams_core::StreamsConfig;
/// let config = StreamsConfig::new("word-count")
///     .num_stream_threads(2)
///     .commit_interval(Duration::from_millis(100));
/// assert_eq!(config.application_id(), "word-count");
/// let from_props = StreamsConfig::from_properties([
///     ("application.id", "word-count"),
///     ("num.stream.threads", "2"),
///     ("commit.interval.ms", "100"),
/// ])?;
/// assert_eq!(from_props.commit_interval_value(), Duration::from_millis(100));
/// assert!(StreamsConfig::from_properties([("application.id", "a"), ("num.stream.threads", "0")]).is_err());
/// # Ok::<(), streams_core::StreamsError>(())
/// ```
#[derive(Debug, Clone)]
pub struct StreamsConfig {
    pub(crate) application_id: String,
    pub(crate) state_dir: PathBuf,
    pub(crate) num_stream_threads: usize,
    /// `commit.interval.ms` when set; the guarantee's default otherwise.
    pub(crate) commit_interval: Option<Duration>,
    pub(crate) processing_guarantee: ProcessingGuarantee,
    pub(crate) cache_max_bytes: usize,
    pub(crate) deserialization: DeserializationHandler,
    pub(crate) invalid_timestamps: InvalidTimestampPolicy,
    pub(crate) uncaught: UncaughtErrorPolicy,
    pub(crate) serdes: SerdeRegistry,
    pub(crate) max_poll_records: usize,
    /// Kafka's `max.task.idle.ms`: -1 disables waiting.
    pub(crate) max_task_idle_ms: i64,
    pub(crate) poll: Duration,
    pub(crate) replication_factor: i16,
    pub(crate) session_timeout: Duration,
    pub(crate) max_poll_interval: Duration,
    /// Kafka's internal `__emit.interval.ms.kstreams.outer.join.spurious.results.fix__`:
    /// how often (wall clock) a left/outer stream-stream join looks for non-joined records
    /// whose window closed. `None`: 1,000 ms in an application, 0 in the test driver.
    pub(crate) outer_join_emit_interval_ms: Option<i64>,
    /// Kafka's internal `__emit.interval.ms.kstreams.windowed.aggregation__`: how often (wall
    /// clock) an emit-on-window-close aggregation looks for closed windows. `None`: the
    /// default, 1000 ms in an application and 0 in the `TopologyTestDriver`.
    pub(crate) emit_interval_windowed_aggregation_ms: Option<i64>,
    /// `topology.optimization` includes `reuse.ktable.source.topics`.
    pub(crate) reuse_ktable_source_topics: bool,
    /// `bootstrap.servers`: the Kafka-protocol cluster a wire backend connects to.
    pub(crate) bootstrap_servers: Option<String>,
    /// `client.id` prefix of the application's clients (default: the application id).
    pub(crate) client_id: Option<String>,
    /// Client properties passed to the wire backend's clients: keys with Kafka Streams'
    /// prefixes (`consumer.`, `main.consumer.`, `restore.consumer.`, `producer.`, `admin.`)
    /// kept with their prefix, and un-prefixed client keys (`group.instance.id`,
    /// `security.protocol`, `ssl.*`, `sasl.*`, `request.timeout.ms`, ...).
    pub(crate) client_properties: BTreeMap<String, String>,
    /// `application.server`: this instance's endpoint for interactive queries.
    pub(crate) application_server: Option<HostInfo>,
    /// `num.standby.replicas`, `acceptable.recovery.lag`, `max.warmup.replicas`,
    /// `probing.rebalance.interval.ms`.
    pub(crate) assignor: AssignorConfig,
}

/// Prefixes of client properties passed through to the wire backend's clients, as Kafka
/// Streams' `StreamsConfig.consumerPrefix` and friends.
pub const CLIENT_PROPERTY_PREFIXES: [&str; 6] = [
    "consumer.",
    "main.consumer.",
    "restore.consumer.",
    "global.consumer.",
    "producer.",
    "admin.",
];

/// Un-prefixed client keys a streams configuration accepts and passes to every client of the
/// wire backend (exact keys; `ssl.` and `sasl.` keys are accepted by prefix).
const SHARED_CLIENT_KEYS: [&str; 8] = [
    "group.instance.id",
    "security.protocol",
    "request.timeout.ms",
    "heartbeat.interval.ms",
    "socket.connection.setup.timeout.ms",
    "reconnect.backoff.ms",
    "retry.backoff.ms",
    "metadata.max.age.ms",
];

/// Kafka's internal config key of the outer-join emit interval.
const OUTER_JOIN_EMIT_INTERVAL: &str =
    "__emit.interval.ms.kstreams.outer.join.spurious.results.fix__";

/// Kafka Streams' internal config key throttling the closed-window check of an
/// emit-on-window-close windowed aggregation (`StreamsConfig.InternalConfig`).
pub const EMIT_INTERVAL_MS_KSTREAMS_WINDOWED_AGGREGATION: &str =
    "__emit.interval.ms.kstreams.windowed.aggregation__";

impl StreamsConfig {
    /// Defaults for application `application_id` (Kafka Streams' defaults: 1 thread, commit
    /// every 30 s, 10 MiB of record cache, state under the system temp dir's
    /// `kafka-streams`).
    pub fn new(application_id: impl Into<String>) -> Self {
        StreamsConfig {
            application_id: application_id.into(),
            state_dir: std::env::temp_dir().join("kafka-streams"),
            num_stream_threads: 1,
            commit_interval: None,
            processing_guarantee: ProcessingGuarantee::AtLeastOnce,
            cache_max_bytes: 10 << 20,
            deserialization: DeserializationHandler::Fail,
            invalid_timestamps: InvalidTimestampPolicy::Fail,
            uncaught: UncaughtErrorPolicy::ShutdownClient,
            serdes: SerdeRegistry::with_builtins(),
            max_poll_records: 1000,
            max_task_idle_ms: 0,
            poll: Duration::from_millis(100),
            replication_factor: 1,
            session_timeout: Duration::from_secs(45),
            max_poll_interval: Duration::from_secs(300),
            outer_join_emit_interval_ms: None,
            emit_interval_windowed_aggregation_ms: None,
            reuse_ktable_source_topics: false,
            bootstrap_servers: None,
            client_id: None,
            client_properties: BTreeMap::new(),
            application_server: None,
            assignor: AssignorConfig::default(),
        }
    }

    /// Reads Kafka Streams property keys: `application.id` (required), `state.dir`,
    /// `num.stream.threads`, `commit.interval.ms`, `processing.guarantee`,
    /// `statestore.cache.max.bytes` (or the older `cache.max.bytes.buffering`),
    /// `default.deserialization.exception.handler` (`fail` / `log-and-continue`, or the Java
    /// class names), `errors.dead.letter.queue.topic.name`, `max.poll.records`,
    /// `poll.ms`, `replication.factor`, `session.timeout.ms`, `max.poll.interval.ms`,
    /// `topology.optimization`, `application.server`, `num.standby.replicas`,
    /// `acceptable.recovery.lag`, `max.warmup.replicas`, `probing.rebalance.interval.ms`
    /// (at least 60 000, as Kafka), and Kafka's internal
    /// `__emit.interval.ms.kstreams.outer.join.spurious.results.fix__`
    /// (see [`StreamsConfig::outer_join_emit_interval`]) and
    /// `__emit.interval.ms.kstreams.windowed.aggregation__`
    /// ([`EMIT_INTERVAL_MS_KSTREAMS_WINDOWED_AGGREGATION`]). Unknown keys are refused.
    pub fn from_properties<I, K, V>(props: I) -> Result<Self>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let props: Vec<(String, String)> = props
            .into_iter()
            .map(|(k, v)| (k.as_ref().trim().to_owned(), v.as_ref().trim().to_owned()))
            .collect();
        let app = props
            .iter()
            .find(|(k, _)| k == "application.id")
            .map(|(_, v)| v.clone())
            .ok_or_else(|| StreamsError::config("application.id", "missing (required)"))?;
        let mut c = StreamsConfig::new(app);
        c.validate_application_id()?;
        let mut dlq = None;
        let mut handler = None;
        for (k, v) in &props {
            match k.as_str() {
                "application.id" => {}
                "state.dir" => c.state_dir = PathBuf::from(v),
                "num.stream.threads" => {
                    c.num_stream_threads = parse_range(k, v, 1, 1024)? as usize;
                }
                "commit.interval.ms" => {
                    c.commit_interval =
                        Some(Duration::from_millis(parse_range(k, v, 0, i64::MAX)? as u64))
                }
                "processing.guarantee" => {
                    c.processing_guarantee = match v.as_str() {
                        "at_least_once" => ProcessingGuarantee::AtLeastOnce,
                        // `exactly_once_beta` is the 2.x name of v2 (removed in Kafka 4.0).
                        "exactly_once_v2" | "exactly_once_beta" => {
                            ProcessingGuarantee::ExactlyOnceV2
                        }
                        "exactly_once" => {
                            return Err(StreamsError::config(
                                k,
                                "`exactly_once` (one producer per task) was removed in Kafka \
                                 4.0; use exactly_once_v2",
                            ))
                        }
                        _ => return Err(StreamsError::config(k, format!("unknown value `{v}`"))),
                    }
                }
                "statestore.cache.max.bytes" | "cache.max.bytes.buffering" => {
                    c.cache_max_bytes = parse_range(k, v, 0, i64::MAX)? as usize
                }
                "default.deserialization.exception.handler" => handler = Some(v.clone()),
                "errors.dead.letter.queue.topic.name" => dlq = Some(v.clone()),
                "max.poll.records" => c.max_poll_records = parse_range(k, v, 1, 1 << 24)? as usize,
                "max.task.idle.ms" => c.max_task_idle_ms = parse_range(k, v, -1, i64::MAX)?,
                "topology.optimization" => c = c.topology_optimization(v)?,
                "poll.ms" => {
                    c.poll = Duration::from_millis(parse_range(k, v, 1, 3_600_000)? as u64)
                }
                "replication.factor" => {
                    c.replication_factor = parse_range(k, v, 1, i64::from(i16::MAX))? as i16
                }
                "session.timeout.ms" => {
                    c.session_timeout =
                        Duration::from_millis(parse_range(k, v, 1, 3_600_000)? as u64)
                }
                "max.poll.interval.ms" => {
                    c.max_poll_interval =
                        Duration::from_millis(parse_range(k, v, 1, i64::from(i32::MAX))? as u64)
                }
                "application.server" => c = c.application_server(v)?,
                "num.standby.replicas" => {
                    c.assignor.num_standby_replicas = parse_range(k, v, 0, 1024)? as usize
                }
                "acceptable.recovery.lag" => {
                    c.assignor.acceptable_recovery_lag = parse_range(k, v, 0, i64::MAX)?
                }
                "max.warmup.replicas" => {
                    c.assignor.max_warmup_replicas =
                        parse_range(k, v, 1, i64::from(i32::MAX))? as usize
                }
                "probing.rebalance.interval.ms" => {
                    c.assignor.probing_rebalance_interval =
                        Duration::from_millis(parse_range(k, v, 60_000, i64::MAX)? as u64)
                }
                OUTER_JOIN_EMIT_INTERVAL => {
                    c.outer_join_emit_interval_ms = Some(parse_range(k, v, 0, i64::MAX)?)
                }
                EMIT_INTERVAL_MS_KSTREAMS_WINDOWED_AGGREGATION => {
                    c.emit_interval_windowed_aggregation_ms = Some(parse_range(k, v, 0, i64::MAX)?)
                }
                "bootstrap.servers" => c = c.bootstrap_servers(v)?,
                "client.id" => c.client_id = Some(v.clone()),
                key if CLIENT_PROPERTY_PREFIXES.iter().any(|p| key.starts_with(p))
                    || SHARED_CLIENT_KEYS.contains(&key)
                    || key.starts_with("ssl.")
                    || key.starts_with("sasl.") =>
                {
                    c.client_properties.insert(key.to_owned(), v.clone());
                }
                _ => {
                    return Err(StreamsError::config(
                        k,
                        "unknown configuration key for a streams application",
                    ))
                }
            }
        }
        c.deserialization = match handler.as_deref() {
            None
            | Some("fail")
            | Some("org.apache.kafka.streams.errors.LogAndFailExceptionHandler") => {
                if dlq.is_some() {
                    DeserializationHandler::LogAndContinue {
                        dead_letter_topic: dlq,
                    }
                } else {
                    DeserializationHandler::Fail
                }
            }
            Some("log-and-continue")
            | Some("org.apache.kafka.streams.errors.LogAndContinueExceptionHandler") => {
                DeserializationHandler::LogAndContinue {
                    dead_letter_topic: dlq,
                }
            }
            Some(other) => {
                return Err(StreamsError::config(
                    "default.deserialization.exception.handler",
                    format!("unknown handler `{other}` (fail or log-and-continue)"),
                ))
            }
        };
        Ok(c)
    }

    pub(crate) fn validate_application_id(&self) -> Result<()> {
        let id = &self.application_id;
        if id.is_empty()
            || id.len() > 200
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(StreamsError::config(
                "application.id",
                format!(
                    "`{id}` must be 1-200 characters of [a-zA-Z0-9._-] (it prefixes topic names)"
                ),
            ));
        }
        Ok(())
    }

    /// How long the group coordinator waits for a silent stream thread before it moves the
    /// thread's tasks elsewhere (the consumer's `session.timeout.ms`, default 45 s; the broker
    /// accepts 6 s to 30 min). Threads heartbeat from their poll loop.
    pub fn session_timeout(mut self, timeout: Duration) -> Self {
        self.session_timeout = timeout;
        self
    }

    /// How long a rebalance waits for every stream thread to rejoin (the consumer's
    /// `max.poll.interval.ms`, sent as the rebalance timeout; default 5 min).
    pub fn max_poll_interval(mut self, interval: Duration) -> Self {
        self.max_poll_interval = interval;
        self
    }

    /// Where task state lives: `<state.dir>/<application.id>/<task id>/`.
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = dir.into();
        self
    }

    /// Stream threads in this instance (at least 1).
    pub fn num_stream_threads(mut self, n: usize) -> Self {
        self.num_stream_threads = n.max(1);
        self
    }

    /// How often to commit (`commit.interval.ms`; default 30 s under at-least-once and
    /// 100 ms under exactly-once, as Kafka Streams).
    pub fn commit_interval(mut self, interval: Duration) -> Self {
        self.commit_interval = Some(interval);
        self
    }

    /// The processing guarantee.
    pub fn processing_guarantee(mut self, g: ProcessingGuarantee) -> Self {
        self.processing_guarantee = g;
        self
    }

    /// Bytes of record cache for the whole instance, split between the threads' tasks
    /// (0 turns caching off everywhere).
    pub fn cache_max_bytes(mut self, bytes: usize) -> Self {
        self.cache_max_bytes = bytes;
        self
    }

    /// What to do with records that cannot be deserialized.
    pub fn deserialization_handler(mut self, handler: DeserializationHandler) -> Self {
        self.deserialization = handler;
        self
    }

    /// What to do with negative timestamps.
    pub fn invalid_timestamp_policy(mut self, policy: InvalidTimestampPolicy) -> Self {
        self.invalid_timestamps = policy;
        self
    }

    /// What to do when a stream thread fails.
    pub fn uncaught_error_policy(mut self, policy: UncaughtErrorPolicy) -> Self {
        self.uncaught = policy;
        self
    }

    /// Registers `serde` as the default serde for `T` (the typed `default.key.serde` /
    /// `default.value.serde`).
    pub fn default_serde<T: 'static>(mut self, serde: impl Serde<T>) -> Self {
        self.serdes.register::<T>(serde);
        self
    }

    /// Kafka's `max.task.idle.ms`: how long a task whose input partitions are not all
    /// buffered waits for data on the empty ones (once the consumer knows they have no
    /// unfetched records) before it processes the others, so that records of several
    /// partitions (joins, merges) are processed in timestamp order. `None` is -1: never
    /// wait. The default, 0, waits only until the empty partitions are known to be caught
    /// up.
    pub fn max_task_idle(mut self, idle: Option<Duration>) -> Self {
        self.max_task_idle_ms = match idle {
            Some(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            None => -1,
        };
        self
    }

    /// How often, by the wall clock, a left or outer stream-stream join looks for
    /// non-joined records whose join window has closed (Kafka's internal config
    /// `__emit.interval.ms.kstreams.outer.join.spurious.results.fix__`, also read by
    /// [`StreamsConfig::from_properties`]). Default 1,000 ms in an application; the
    /// `TopologyTestDriver` uses 0 (check after every record) unless this is set, as
    /// Kafka's test driver does. A throttle only: results are the same, some are emitted
    /// later.
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_core::StreamsConfig;
    /// let c = StreamsConfig::new("app").outer_join_emit_interval(Duration::from_millis(250));
    /// assert_eq!(c.outer_join_emit_interval_ms(), Some(250));
    /// assert_eq!(StreamsConfig::new("app").outer_join_emit_interval_ms(), None);
    /// ```
    pub fn outer_join_emit_interval(mut self, interval: Duration) -> Self {
        self.outer_join_emit_interval_ms =
            Some(i64::try_from(interval.as_millis()).unwrap_or(i64::MAX));
        self
    }

    /// The outer-join emit interval if set (see [`StreamsConfig::outer_join_emit_interval`]).
    pub fn outer_join_emit_interval_ms(&self) -> Option<i64> {
        self.outer_join_emit_interval_ms
    }

    /// Records a thread fetches per poll at most (`max.poll.records`).
    pub fn max_poll_records(mut self, n: usize) -> Self {
        self.max_poll_records = n.max(1);
        self
    }

    /// Replication factor of internal topics (default 1).
    pub fn replication_factor(mut self, rf: i16) -> Self {
        self.replication_factor = rf;
        self
    }

    /// How often (wall clock) an emit-on-window-close windowed aggregation checks for
    /// closed windows to emit: Kafka's internal
    /// `__emit.interval.ms.kstreams.windowed.aggregation__` (default 1000 ms; the
    /// `TopologyTestDriver` defaults it to 0, as Kafka's own driver tests set it, so that
    /// every record checks).
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_core::StreamsConfig;
    /// let c = StreamsConfig::new("app").emit_interval_windowed_aggregation(Duration::from_millis(50));
    /// assert_eq!(c.emit_interval_windowed_aggregation_ms(), Some(50));
    /// let c = StreamsConfig::from_properties([("application.id", "app"),
    ///     ("__emit.interval.ms.kstreams.windowed.aggregation__", "0")])?;
    /// assert_eq!(c.emit_interval_windowed_aggregation_ms(), Some(0));
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn emit_interval_windowed_aggregation(mut self, interval: Duration) -> Self {
        self.emit_interval_windowed_aggregation_ms =
            Some(i64::try_from(interval.as_millis()).unwrap_or(i64::MAX));
        self
    }

    /// The emit interval of emit-on-window-close aggregations, if set (else the default:
    /// 1000 ms, 0 in the `TopologyTestDriver`).
    pub fn emit_interval_windowed_aggregation_ms(&self) -> Option<i64> {
        self.emit_interval_windowed_aggregation_ms
    }

    /// The application id.
    pub fn application_id(&self) -> &str {
        &self.application_id
    }

    /// The state directory.
    pub fn state_dir_path(&self) -> &std::path::Path {
        &self.state_dir
    }

    /// The commit interval.
    pub fn commit_interval_value(&self) -> Duration {
        self.commit_interval
            .unwrap_or(if self.processing_guarantee.is_exactly_once() {
                EOS_DEFAULT_COMMIT_INTERVAL
            } else {
                Duration::from_secs(30)
            })
    }

    /// The processing guarantee (`processing.guarantee`).
    pub fn processing_guarantee_value(&self) -> ProcessingGuarantee {
        self.processing_guarantee
    }

    /// `transaction.timeout.ms` of the stream threads' producers under exactly-once: the
    /// `producer.transaction.timeout.ms` (or un-prefixed) client property, 10 s by default
    /// as in Kafka Streams. A thread that dies in a transaction blocks `read_committed`
    /// readers of its partitions until the coordinator aborts it after this timeout.
    pub fn transaction_timeout(&self) -> Result<Duration> {
        let key = ["producer.transaction.timeout.ms", "transaction.timeout.ms"]
            .into_iter()
            .find(|k| self.client_properties.contains_key(*k));
        match key {
            None => Ok(EOS_DEFAULT_TRANSACTION_TIMEOUT),
            Some(k) => Ok(Duration::from_millis(parse_range(
                k,
                &self.client_properties[k],
                1,
                i64::from(i32::MAX),
            )? as u64)),
        }
    }

    /// Checks the settings that only make sense together: under exactly-once the commit
    /// interval must be below the transaction timeout (as Kafka Streams checks), or every
    /// transaction would be aborted by the coordinator before it commits.
    pub(crate) fn validate_guarantee(&self) -> Result<()> {
        if !self.processing_guarantee.is_exactly_once() {
            return Ok(());
        }
        let timeout = self.transaction_timeout()?;
        let interval = self.commit_interval_value();
        if interval >= timeout {
            return Err(StreamsError::config(
                "commit.interval.ms",
                format!(
                    "{} ms must be below the producers' transaction.timeout.ms ({} ms) under \
                     exactly_once_v2",
                    interval.as_millis(),
                    timeout.as_millis()
                ),
            ));
        }
        Ok(())
    }

    /// Threads per instance.
    pub fn num_stream_threads_value(&self) -> usize {
        self.num_stream_threads
    }

    /// The serde registry.
    pub fn serdes(&self) -> &SerdeRegistry {
        &self.serdes
    }

    /// Kafka's `topology.optimization`: `none` (the default), `all`, or a comma-separated
    /// list of optimizations. `reuse.ktable.source.topics` (also part of `all`) restores a
    /// source table's store (`StreamsBuilder::table`) from the table's source topic instead
    /// of a `<application.id>-<store>-changelog` topic, which is then neither written nor
    /// created. Kafka's other optimizations (`merge.repartition.topics`,
    /// `single.store.self.join`) are not implemented: naming them is an error, and `all`
    /// applies only the source-topic reuse.
    ///
    /// ```
    /// use streams_core::StreamsConfig;
    /// let config = StreamsConfig::new("app").topology_optimization("reuse.ktable.source.topics")?;
    /// assert!(config.reuses_ktable_source_topics());
    /// assert!(StreamsConfig::new("app").topology_optimization("all")?.reuses_ktable_source_topics());
    /// assert!(!StreamsConfig::new("app").topology_optimization("none")?.reuses_ktable_source_topics());
    /// assert!(StreamsConfig::new("app").topology_optimization("merge.repartition.topics").is_err());
    /// assert!(StreamsConfig::new("app").topology_optimization("fast").is_err());
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn topology_optimization(mut self, value: &str) -> Result<Self> {
        const KEY: &str = "topology.optimization";
        let items: Vec<&str> = value.split(',').map(str::trim).collect();
        let mut reuse = false;
        for item in &items {
            match *item {
                "none" | "all" if items.len() > 1 => {
                    return Err(StreamsError::config(
                        KEY,
                        format!("`{item}` cannot be combined with other values"),
                    ))
                }
                "none" => {}
                "all" | "reuse.ktable.source.topics" => reuse = true,
                "merge.repartition.topics" | "single.store.self.join" => {
                    return Err(StreamsError::config(
                        KEY,
                        format!("the `{item}` optimization is not implemented"),
                    ))
                }
                other => {
                    return Err(StreamsError::config(
                        KEY,
                        format!("unknown optimization `{other}`"),
                    ))
                }
            }
        }
        self.reuse_ktable_source_topics = reuse;
        Ok(self)
    }

    /// Kafka's `application.server`: the `host:port` endpoint where this instance serves
    /// interactive queries, sent to the group leader in every subscription and handed to
    /// every member in the assignment's partitions-by-host maps. Empty clears it.
    ///
    /// ```
    /// use streams_core::StreamsConfig;
    /// let c = StreamsConfig::new("app").application_server("localhost:8080")?;
    /// assert_eq!(c.application_server_value().map(ToString::to_string).as_deref(), Some("localhost:8080"));
    /// assert!(StreamsConfig::new("app").application_server("localhost").is_err());
    /// let c = StreamsConfig::from_properties([
    ///     ("application.id", "app"),
    ///     ("application.server", "[::1]:9090"),
    ///     ("num.standby.replicas", "1"),
    ///     ("acceptable.recovery.lag", "500"),
    ///     ("max.warmup.replicas", "3"),
    ///     ("probing.rebalance.interval.ms", "60000"),
    /// ])?;
    /// assert_eq!(c.assignor_config().num_standby_replicas, 1);
    /// assert_eq!(c.assignor_config().acceptable_recovery_lag, 500);
    /// assert_eq!(c.assignor_config().max_warmup_replicas, 3);
    /// assert_eq!(c.assignor_config().probing_rebalance_interval.as_millis(), 60_000);
    /// assert_eq!(c.application_server_value().unwrap().host, "::1");
    /// for (key, bad) in [("max.warmup.replicas", "0"), ("probing.rebalance.interval.ms", "59999"),
    ///                    ("num.standby.replicas", "-1"), ("acceptable.recovery.lag", "-5"),
    ///                    ("application.server", "nohostport")] {
    ///     let err = StreamsConfig::from_properties([("application.id", "app"), (key, bad)]).unwrap_err();
    ///     assert!(matches!(&err, streams_core::StreamsError::Config { key: k, .. } if k == key), "{err}");
    /// }
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn application_server(mut self, endpoint: &str) -> Result<Self> {
        self.application_server = if endpoint.is_empty() {
            None
        } else {
            Some(
                HostInfo::parse(endpoint)
                    .map_err(|e| StreamsError::config("application.server", e.to_string()))?,
            )
        };
        Ok(self)
    }

    /// The `application.server` endpoint, if set.
    pub fn application_server_value(&self) -> Option<&HostInfo> {
        self.application_server.as_ref()
    }

    /// Kafka's `num.standby.replicas` (default 0): standby copies of each stateful task,
    /// kept on other instances than the task's active one.
    pub fn num_standby_replicas(mut self, n: usize) -> Self {
        self.assignor.num_standby_replicas = n;
        self
    }

    /// Kafka's `acceptable.recovery.lag` (default 10 000): the largest changelog lag at
    /// which an instance counts as caught up on a task, so the task may move to it at once.
    pub fn acceptable_recovery_lag(mut self, records: u64) -> Self {
        self.assignor.acceptable_recovery_lag = i64::try_from(records).unwrap_or(i64::MAX);
        self
    }

    /// Kafka's `max.warmup.replicas` (default 2, at least 1): warm-up replicas the group may
    /// restore at once while their tasks stay on caught-up instances.
    pub fn max_warmup_replicas(mut self, n: usize) -> Result<Self> {
        if n == 0 {
            return Err(StreamsError::config(
                "max.warmup.replicas",
                "must be at least 1",
            ));
        }
        self.assignor.max_warmup_replicas = n;
        Ok(self)
    }

    /// Kafka's `probing.rebalance.interval.ms` (default 10 minutes): how long after an
    /// assignment with warm-ups the members rejoin to see whether they caught up. The
    /// property must be at least 60 s, as in Kafka; this setter accepts shorter intervals
    /// (for tests).
    pub fn probing_rebalance_interval(mut self, interval: Duration) -> Self {
        self.assignor.probing_rebalance_interval = interval;
        self
    }

    /// The assignor settings (standbys, recovery lag, warm-ups, probing interval).
    pub fn assignor_config(&self) -> &AssignorConfig {
        &self.assignor
    }

    /// True if `topology.optimization` reuses source topics as table changelogs.
    pub fn reuses_ktable_source_topics(&self) -> bool {
        self.reuse_ktable_source_topics
    }
}

impl StreamsConfig {
    /// Sets `bootstrap.servers`: a comma-separated list of `host:port` of a Kafka-protocol
    /// cluster, for the wire backend (`KafkaCluster`, feature `kafka`). An empty list or an
    /// entry without a port is refused.
    ///
    /// ```
    /// use streams_core::StreamsConfig;
    /// let c = StreamsConfig::new("app").bootstrap_servers("127.0.0.1:9092,other:9093")?;
    /// assert_eq!(c.bootstrap_servers_list(), vec!["127.0.0.1:9092", "other:9093"]);
    /// assert!(StreamsConfig::new("app").bootstrap_servers("no-port").is_err());
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn bootstrap_servers(mut self, servers: &str) -> Result<Self> {
        let list: Vec<&str> = servers
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if list.is_empty() {
            return Err(StreamsError::config(
                "bootstrap.servers",
                "empty: give host:port[,host:port...]",
            ));
        }
        for server in &list {
            let port = server.rsplit_once(':').map(|(h, p)| (h, p.parse::<u16>()));
            if !matches!(port, Some((h, Ok(_))) if !h.is_empty()) {
                return Err(StreamsError::config(
                    "bootstrap.servers",
                    format!("`{server}` is not host:port"),
                ));
            }
        }
        self.bootstrap_servers = Some(list.join(","));
        Ok(self)
    }

    /// The `bootstrap.servers` entries (empty when not set).
    pub fn bootstrap_servers_list(&self) -> Vec<String> {
        self.bootstrap_servers
            .as_deref()
            .map(|s| s.split(',').map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// Sets `client.id`, the prefix of the application's client ids (default: the
    /// application id), as Kafka Streams names its clients `<client.id>-StreamThread-<n>-...`.
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = Some(id.into());
        self
    }

    /// The `client.id` prefix (the application id when not set).
    pub fn client_id_value(&self) -> &str {
        self.client_id.as_deref().unwrap_or(&self.application_id)
    }

    /// Sets a client property passed through to the wire backend's clients, with Kafka
    /// Streams' prefixes: `consumer.` (every consumer), `main.consumer.` /
    /// `restore.consumer.` (one kind), `producer.`, `admin.`; an un-prefixed key goes to
    /// every client. The backend refuses, at start, keys the runtime owns (such as
    /// `enable.auto.commit` or `group.id`).
    pub fn client_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.client_properties.insert(key.into(), value.into());
        self
    }

    /// The client properties set (keys with their prefixes).
    pub fn client_properties(&self) -> &BTreeMap<String, String> {
        &self.client_properties
    }

    /// `replication.factor` of the internal topics the application creates.
    pub fn replication_factor_value(&self) -> i16 {
        self.replication_factor
    }

    /// `session.timeout.ms` of the stream threads' group membership.
    pub fn session_timeout_value(&self) -> Duration {
        self.session_timeout
    }
}

fn parse_range(key: &str, v: &str, min: i64, max: i64) -> Result<i64> {
    let n: i64 = v
        .parse()
        .map_err(|_| StreamsError::config(key, format!("`{v}` is not an integer")))?;
    if n < min || n > max {
        return Err(StreamsError::config(
            key,
            format!("{n} is out of range [{min}, {max}]"),
        ));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> Result<StreamsConfig> {
        let mut all = vec![("application.id", "app")];
        all.extend_from_slice(pairs);
        StreamsConfig::from_properties(all)
    }

    #[test]
    fn exactly_once_v2_defaults_to_100_ms_commits_and_a_10_s_transaction_timeout() {
        let alos = props(&[]).unwrap();
        assert_eq!(
            alos.processing_guarantee_value(),
            ProcessingGuarantee::AtLeastOnce
        );
        assert_eq!(alos.commit_interval_value(), Duration::from_secs(30));
        for name in ["exactly_once_v2", "exactly_once_beta"] {
            let eos = props(&[("processing.guarantee", name)]).unwrap();
            assert_eq!(
                eos.processing_guarantee_value(),
                ProcessingGuarantee::ExactlyOnceV2
            );
            assert_eq!(eos.commit_interval_value(), EOS_DEFAULT_COMMIT_INTERVAL);
            assert_eq!(
                eos.transaction_timeout().unwrap(),
                EOS_DEFAULT_TRANSACTION_TIMEOUT
            );
            eos.validate_guarantee().unwrap();
        }
        // An explicit interval wins, whatever the guarantee.
        let set = props(&[
            ("commit.interval.ms", "250"),
            ("processing.guarantee", "exactly_once_v2"),
        ])
        .unwrap();
        assert_eq!(set.commit_interval_value(), Duration::from_millis(250));
    }

    #[test]
    fn exactly_once_alpha_and_unknown_guarantees_are_refused() {
        let e = props(&[("processing.guarantee", "exactly_once")]).unwrap_err();
        assert!(e.to_string().contains("exactly_once_v2"), "{e}");
        assert!(props(&[("processing.guarantee", "at_most_once")]).is_err());
    }

    #[test]
    fn a_commit_interval_not_below_the_transaction_timeout_is_refused_under_exactly_once() {
        let c = props(&[
            ("processing.guarantee", "exactly_once_v2"),
            ("producer.transaction.timeout.ms", "5000"),
            ("commit.interval.ms", "5000"),
        ])
        .unwrap();
        assert_eq!(c.transaction_timeout().unwrap(), Duration::from_secs(5));
        let e = c.validate_guarantee().unwrap_err();
        assert!(e.to_string().contains("transaction.timeout.ms"), "{e}");
        // At-least-once has no transactions: any interval goes.
        props(&[("commit.interval.ms", "600000")])
            .unwrap()
            .validate_guarantee()
            .unwrap();
        let bad = props(&[("producer.transaction.timeout.ms", "soon")]).unwrap();
        assert!(bad.transaction_timeout().is_err());
    }
}
