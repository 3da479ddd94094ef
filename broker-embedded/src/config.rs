//! Broker and topic configuration with Kafka's names, defaults and validation.
//!
//! Topic-level keys follow Kafka's topic configs (`cleanup.policy`, `retention.ms`, ...). A
//! topic stores only its overrides; [`LogConfig`] is the resolved, typed view. Unknown keys and
//! values of the wrong type are rejected with a [`ConfigError`] that names the key.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::record::TimestampType;

/// A configuration key or value was rejected.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// The key is not a topic config this broker knows.
    #[error("unknown topic config `{0}`")]
    UnknownKey(String),
    /// The value does not parse or is out of range.
    #[error("invalid value `{value}` for config `{key}`: {reason}")]
    InvalidValue {
        /// Config key.
        key: String,
        /// Rejected value.
        value: String,
        /// Why it was rejected.
        reason: String,
    },
}

/// Which retention mechanism a topic uses (`cleanup.policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CleanupPolicy {
    /// Delete whole old segments by time and size (`delete`).
    pub delete: bool,
    /// Keep only the latest record per key (`compact`).
    pub compact: bool,
}

impl CleanupPolicy {
    /// `cleanup.policy=delete`.
    pub const DELETE: Self = Self {
        delete: true,
        compact: false,
    };
    /// `cleanup.policy=compact`.
    pub const COMPACT: Self = Self {
        delete: false,
        compact: true,
    };

    fn render(self) -> String {
        match (self.compact, self.delete) {
            (true, true) => "compact,delete".into(),
            (true, false) => "compact".into(),
            (false, true) => "delete".into(),
            (false, false) => String::new(),
        }
    }
}

/// Every topic-level config key this broker accepts, in Kafka's spelling.
pub const TOPIC_CONFIG_KEYS: &[&str] = &[
    "cleanup.policy",
    "compression.gzip.level",
    "compression.lz4.level",
    "compression.type",
    "compression.zstd.level",
    "delete.retention.ms",
    "file.delete.delay.ms",
    "flush.messages",
    "flush.ms",
    "follower.replication.throttled.replicas",
    "index.interval.bytes",
    "leader.replication.throttled.replicas",
    "local.retention.bytes",
    "local.retention.ms",
    "max.compaction.lag.ms",
    "max.message.bytes",
    "message.timestamp.after.max.ms",
    "message.timestamp.before.max.ms",
    "message.timestamp.type",
    "min.cleanable.dirty.ratio",
    "min.compaction.lag.ms",
    "min.insync.replicas",
    "preallocate",
    "remote.log.copy.disable",
    "remote.log.delete.on.disable",
    "remote.storage.enable",
    "retention.bytes",
    "retention.ms",
    "segment.bytes",
    "segment.index.bytes",
    "segment.jitter.ms",
    "segment.ms",
    "unclean.leader.election.enable",
];

/// The resolved, typed configuration of one topic's partition logs.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// `cleanup.policy` (default `delete`).
    pub cleanup_policy: CleanupPolicy,
    /// `retention.ms`: delete segments whose newest record is older; -1 = forever (default 7 days).
    pub retention_ms: i64,
    /// `retention.bytes`: delete oldest segments while the log is larger; -1 = unlimited.
    pub retention_bytes: i64,
    /// `segment.bytes`: roll the active segment at this size (default 1 GiB).
    pub segment_bytes: u64,
    /// `segment.ms`: roll once the active segment spans this much record time (default 7 days).
    pub segment_ms: i64,
    /// `segment.index.bytes`: roll when the offset index reaches this size (default 10 MiB).
    pub segment_index_bytes: u64,
    /// `index.interval.bytes`: bytes between sparse index entries (default 4096).
    pub index_interval_bytes: u64,
    /// `delete.retention.ms`: how long tombstones survive after the cleaner first sees them.
    pub delete_retention_ms: i64,
    /// `min.compaction.lag.ms`: records younger than this are not compacted.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: once the oldest uncompacted segment is this old, the cleaner's
    /// next compaction check compacts the log whatever its dirty ratio (checks run every
    /// [`BrokerConfig::compaction_check_interval`]).
    pub max_compaction_lag_ms: i64,
    /// `min.cleanable.dirty.ratio`: the background cleaner skips logs less dirty than this.
    pub min_cleanable_dirty_ratio: f64,
    /// `file.delete.delay.ms`: accepted and reported (default 60000, Kafka's); segment files
    /// removed by retention or compaction are deleted at once, there being no readers of
    /// another process to wait for.
    pub file_delete_delay_ms: i64,
    /// `max.message.bytes`: largest batch accepted (default 1048588, Kafka's).
    pub max_message_bytes: usize,
    /// `message.timestamp.type`: CreateTime or LogAppendTime.
    pub message_timestamp_type: TimestampType,
    /// `flush.messages`: fsync after this many unflushed records (1 = every batch).
    pub flush_messages: u64,
    /// `flush.ms`: fsync data older than this, from a background flusher.
    pub flush_ms: i64,
    /// `min.insync.replicas` (meaningful once replication exists; default 1).
    pub min_insync_replicas: u32,
    /// `compression.type`: only `producer` (store batches as produced) is supported.
    pub compression_type: String,
    /// `message.timestamp.before.max.ms`: a CreateTime record more than this older than the
    /// broker's clock is refused with INVALID_TIMESTAMP (default `i64::MAX`: no bound).
    pub message_timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms`: a CreateTime record more than this ahead of the
    /// broker's clock is refused with INVALID_TIMESTAMP (default `i64::MAX`: no bound).
    pub message_timestamp_after_max_ms: i64,
    /// `unclean.leader.election.enable` (default false): read by the controller of a
    /// cluster; a single node has no other replica to elect.
    pub unclean_leader_election_enable: bool,
    /// Kafka topic configs accepted, validated and reported for compatibility that have no
    /// effect on this broker (replication quotas, tiered storage, recompression levels,
    /// preallocation, segment jitter), with their effective values.
    pub inert: BTreeMap<&'static str, String>,
}

/// Kafka topic configs this broker accepts (validated as Kafka types them) and reports in
/// DescribeConfigs, but that change nothing here: `(name, Kafka's default)`. Kafka's own tools
/// and clients set some of them; refusing them would break those clients for nothing.
pub(crate) const INERT_TOPIC_CONFIGS: &[(&str, &str)] = &[
    // Levels apply when the broker recompresses; batches are stored as produced.
    ("compression.gzip.level", "-1"),
    ("compression.lz4.level", "9"),
    ("compression.zstd.level", "3"),
    // No replication quotas.
    ("follower.replication.throttled.replicas", ""),
    ("leader.replication.throttled.replicas", ""),
    // No tiered storage (`remote.storage.enable` accepts only false).
    ("local.retention.bytes", "-2"),
    ("local.retention.ms", "-2"),
    ("remote.log.copy.disable", "false"),
    ("remote.log.delete.on.disable", "false"),
    ("remote.storage.enable", "false"),
    // Segment files are never preallocated.
    ("preallocate", "false"),
    // Segments roll at exactly `segment.ms`.
    ("segment.jitter.ms", "0"),
];

/// Checks one inert config's value the way Kafka types it.
fn validate_inert(key: &str, value: &str) -> Result<(), ConfigError> {
    let int_in = |lo: i64, hi: i64| -> Result<(), ConfigError> {
        let v = parse_i64(key, value, i64::MIN)?;
        if v < lo || v > hi || i32::try_from(v).is_err() {
            return Err(invalid(
                key,
                value,
                format!("must be between {lo} and {hi}"),
            ));
        }
        Ok(())
    };
    match key {
        "compression.gzip.level" => {
            let v = parse_i64(key, value, i64::MIN)?;
            if v != -1 && !(1..=9).contains(&v) {
                return Err(invalid(key, value, "must be -1 or between 1 and 9"));
            }
            Ok(())
        }
        "compression.lz4.level" => int_in(1, 17),
        "compression.zstd.level" => int_in(-131_072, 22),
        "follower.replication.throttled.replicas" | "leader.replication.throttled.replicas" => {
            validate_throttled_replicas(key, value)
        }
        "local.retention.bytes" | "local.retention.ms" => parse_i64(key, value, -2).map(|_| ()),
        "segment.jitter.ms" => parse_i64(key, value, 0).map(|_| ()),
        "remote.storage.enable" => {
            if parse_bool(key, value)? {
                return Err(invalid(
                    key,
                    value,
                    "Tiered Storage functionality is disabled in the broker. Topic cannot be \
                     configured with remote log storage.",
                ));
            }
            Ok(())
        }
        _ => parse_bool(key, value).map(|_| ()),
    }
}

/// Kafka's `ThrottledReplicaListValidator`: empty, `*`, or `partition:broker` pairs.
fn validate_throttled_replicas(key: &str, value: &str) -> Result<(), ConfigError> {
    let v = value.trim();
    if v.is_empty() || v == "*" {
        return Ok(());
    }
    let ok = v.split(',').all(|pair| {
        let mut it = pair.trim().split(':');
        matches!(
            (it.next(), it.next(), it.next()),
            (Some(p), Some(b), None) if p.trim().parse::<u32>().is_ok() && b.trim().parse::<u32>().is_ok()
        )
    });
    if ok {
        Ok(())
    } else {
        Err(invalid(
            key,
            value,
            "must be the wildcard (*) or a list of partitionId:brokerId pairs",
        ))
    }
}

fn parse_bool(key: &str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(key, value, "expected true or false")),
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            cleanup_policy: CleanupPolicy::DELETE,
            retention_ms: 7 * 24 * 3_600_000,
            retention_bytes: -1,
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3_600_000,
            segment_index_bytes: 10 * 1024 * 1024,
            index_interval_bytes: 4096,
            delete_retention_ms: 24 * 3_600_000,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            min_cleanable_dirty_ratio: 0.5,
            file_delete_delay_ms: 60_000,
            max_message_bytes: 1_048_588,
            message_timestamp_type: TimestampType::CreateTime,
            flush_messages: u64::MAX,
            flush_ms: i64::MAX,
            min_insync_replicas: 1,
            compression_type: "producer".into(),
            message_timestamp_before_max_ms: i64::MAX,
            message_timestamp_after_max_ms: i64::MAX,
            unclean_leader_election_enable: false,
            inert: INERT_TOPIC_CONFIGS
                .iter()
                .map(|&(k, v)| (k, v.to_string()))
                .collect(),
        }
    }
}

fn invalid(key: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::InvalidValue {
        key: key.into(),
        value: value.into(),
        reason: reason.into(),
    }
}

fn parse_i64(key: &str, value: &str, min: i64) -> Result<i64, ConfigError> {
    let v: i64 = value
        .trim()
        .parse()
        .map_err(|_| invalid(key, value, "expected a whole number (long)"))?;
    if v < min {
        return Err(invalid(key, value, format!("must be at least {min}")));
    }
    Ok(v)
}

fn parse_u64(key: &str, value: &str, min: u64, max: u64) -> Result<u64, ConfigError> {
    let v = parse_i64(key, value, min as i64)?;
    let v = v as u64;
    if v > max {
        return Err(invalid(key, value, format!("must be at most {max}")));
    }
    Ok(v)
}

impl LogConfig {
    /// Returns a copy with one `key=value` applied.
    pub fn with(mut self, key: &str, value: &str) -> Result<Self, ConfigError> {
        self.set(key, value)?;
        Ok(self)
    }

    /// Applies one topic config, validating key and value.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        match key {
            "cleanup.policy" => {
                let mut policy = CleanupPolicy::default();
                for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    match part {
                        "delete" => policy.delete = true,
                        "compact" => policy.compact = true,
                        other => {
                            return Err(invalid(
                                key,
                                value,
                                format!("`{other}` is not one of delete, compact"),
                            ))
                        }
                    }
                }
                if !policy.delete && !policy.compact {
                    return Err(invalid(key, value, "expected delete, compact or both"));
                }
                self.cleanup_policy = policy;
            }
            "compression.type" => {
                if value != "producer" {
                    return Err(invalid(
                        key,
                        value,
                        "only `producer` is supported: batches are stored as produced",
                    ));
                }
                self.compression_type = value.into();
            }
            "delete.retention.ms" => self.delete_retention_ms = parse_i64(key, value, 0)?,
            "file.delete.delay.ms" => self.file_delete_delay_ms = parse_i64(key, value, 0)?,
            "flush.messages" => self.flush_messages = parse_u64(key, value, 1, u64::MAX)?,
            "flush.ms" => self.flush_ms = parse_i64(key, value, 0)?,
            "index.interval.bytes" => {
                self.index_interval_bytes = parse_u64(key, value, 0, i32::MAX as u64)?
            }
            "max.compaction.lag.ms" => self.max_compaction_lag_ms = parse_i64(key, value, 1)?,
            "max.message.bytes" => {
                self.max_message_bytes = parse_u64(key, value, 0, i32::MAX as u64)? as usize
            }
            "message.timestamp.type" => {
                self.message_timestamp_type = match value {
                    "CreateTime" => TimestampType::CreateTime,
                    "LogAppendTime" => TimestampType::LogAppendTime,
                    _ => return Err(invalid(key, value, "expected CreateTime or LogAppendTime")),
                }
            }
            "min.cleanable.dirty.ratio" => {
                let v: f64 = value
                    .trim()
                    .parse()
                    .map_err(|_| invalid(key, value, "expected a number (double)"))?;
                if !(0.0..=1.0).contains(&v) {
                    return Err(invalid(key, value, "must be between 0 and 1"));
                }
                self.min_cleanable_dirty_ratio = v;
            }
            "min.compaction.lag.ms" => self.min_compaction_lag_ms = parse_i64(key, value, 0)?,
            "min.insync.replicas" => {
                self.min_insync_replicas = parse_u64(key, value, 1, i32::MAX as u64)? as u32
            }
            "retention.bytes" => self.retention_bytes = parse_i64(key, value, -1)?,
            "retention.ms" => self.retention_ms = parse_i64(key, value, -1)?,
            "segment.bytes" => {
                // Kafka's lower bound is the v0 record overhead (14 bytes); tests use tiny
                // segments, production uses megabytes.
                self.segment_bytes = parse_u64(key, value, 14, i32::MAX as u64)?
            }
            "segment.index.bytes" => {
                self.segment_index_bytes = parse_u64(key, value, 8, i32::MAX as u64)?
            }
            "segment.ms" => self.segment_ms = parse_i64(key, value, 1)?,
            "message.timestamp.before.max.ms" => {
                self.message_timestamp_before_max_ms = parse_i64(key, value, 0)?
            }
            "message.timestamp.after.max.ms" => {
                self.message_timestamp_after_max_ms = parse_i64(key, value, 0)?
            }
            "unclean.leader.election.enable" => {
                self.unclean_leader_election_enable = parse_bool(key, value)?
            }
            other => {
                let Some(&(name, _)) = INERT_TOPIC_CONFIGS.iter().find(|(k, _)| *k == other) else {
                    return Err(ConfigError::UnknownKey(other.into()));
                };
                validate_inert(name, value)?;
                self.inert.insert(name, value.trim().to_string());
            }
        }
        Ok(())
    }

    /// Resolves `overrides` on top of `self` (the broker defaults).
    pub fn resolve(&self, overrides: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let mut out = self.clone();
        for (k, v) in overrides {
            out.set(k, v)?;
        }
        Ok(out)
    }

    /// The value of one key as Kafka would print it, or `None` for an unknown key.
    pub fn get(&self, key: &str) -> Option<String> {
        let v = match key {
            "cleanup.policy" => self.cleanup_policy.render(),
            "compression.type" => self.compression_type.clone(),
            "delete.retention.ms" => self.delete_retention_ms.to_string(),
            "file.delete.delay.ms" => self.file_delete_delay_ms.to_string(),
            "flush.messages" => (self.flush_messages.min(i64::MAX as u64)).to_string(),
            "flush.ms" => self.flush_ms.to_string(),
            "index.interval.bytes" => self.index_interval_bytes.to_string(),
            "max.compaction.lag.ms" => self.max_compaction_lag_ms.to_string(),
            "max.message.bytes" => self.max_message_bytes.to_string(),
            "message.timestamp.type" => match self.message_timestamp_type {
                TimestampType::CreateTime => "CreateTime".into(),
                TimestampType::LogAppendTime => "LogAppendTime".into(),
            },
            "min.cleanable.dirty.ratio" => self.min_cleanable_dirty_ratio.to_string(),
            "min.compaction.lag.ms" => self.min_compaction_lag_ms.to_string(),
            "min.insync.replicas" => self.min_insync_replicas.to_string(),
            "retention.bytes" => self.retention_bytes.to_string(),
            "retention.ms" => self.retention_ms.to_string(),
            "segment.bytes" => self.segment_bytes.to_string(),
            "segment.index.bytes" => self.segment_index_bytes.to_string(),
            "segment.ms" => self.segment_ms.to_string(),
            "message.timestamp.before.max.ms" => self.message_timestamp_before_max_ms.to_string(),
            "message.timestamp.after.max.ms" => self.message_timestamp_after_max_ms.to_string(),
            "unclean.leader.election.enable" => self.unclean_leader_election_enable.to_string(),
            other => return self.inert.get(other).cloned(),
        };
        Some(v)
    }
}

/// When appended data is forced to disk (Kafka's `log.flush.interval.messages` /
/// `log.flush.interval.ms`). This sets the broker-wide defaults of the topic configs
/// `flush.messages` and `flush.ms`; topics may override them.
///
/// What an acknowledged append means under each policy:
/// - [`FlushPolicy::EveryBatch`]: the batch was `fdatasync`ed before the append returned; it
///   survives a process crash and a power loss.
/// - [`FlushPolicy::Interval`]: the batch is in the OS page cache; it survives a process crash
///   (SIGKILL included) but a power loss or kernel crash may lose up to the interval.
/// - [`FlushPolicy::Os`]: as `Interval`, with the kernel deciding when to write back (Kafka's
///   default; durability then comes from replication).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushPolicy {
    /// fsync after every appended batch (`flush.messages=1`).
    EveryBatch,
    /// fsync from a background flusher at this interval (`flush.ms`).
    Interval(Duration),
    /// Never fsync explicitly except on roll and clean shutdown.
    Os,
}

/// Configuration of one broker (an embedded instance or a `broker serve` process).
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Directory holding every partition directory and the broker's metadata.
    pub data_dir: PathBuf,
    /// `node.id`.
    pub node_id: i32,
    /// Defaults for topic configs (Kafka's `log.*` broker settings).
    pub log_defaults: LogConfig,
    /// `num.partitions`: partitions of auto-created topics.
    pub num_partitions: u32,
    /// `auto.create.topics.enable` (default true, as in Kafka).
    pub auto_create_topics_enable: bool,
    /// `offsets.topic.num.partitions` (default 50).
    pub offsets_topic_num_partitions: u32,
    /// `offsets.topic.segment.bytes` (default 100 MiB).
    pub offsets_topic_segment_bytes: u64,
    /// How often the background cleaner applies retention and compaction
    /// (`log.retention.check.interval.ms`, default 5 minutes). `None` disables the background
    /// cleaner; [`crate::Broker::run_cleaner_pass`] still works.
    pub cleaner_interval: Option<Duration>,
    /// How often the background cleaner checks compacted logs for compaction
    /// (`log.cleaner.backoff.ms`, default 15 s, as Kafka's cleaner threads): a log is compacted
    /// when its dirty ratio reaches `min.cleanable.dirty.ratio` or its oldest uncompacted
    /// segment is older than `max.compaction.lag.ms`. Runs only with the background cleaner.
    pub compaction_check_interval: Duration,
    /// How often the recovery-point checkpoint is written
    /// (`log.flush.offset.checkpoint.interval.ms`, default 60 s).
    pub recovery_checkpoint_interval: Duration,
    /// How long the first rebalance of an empty consumer group waits for more members
    /// (Kafka's `group.initial.rebalance.delay.ms`, default 3 s).
    pub group_initial_rebalance_delay: Duration,
    /// The longest `transaction.timeout.ms` a transactional producer may ask for
    /// (`transaction.max.timeout.ms`, default 900000 ms = 15 minutes, as Kafka).
    pub transaction_max_timeout: Duration,
    /// `transaction.state.log.num.partitions` (default 50): partitions of
    /// `__transaction_state`.
    pub transaction_state_log_num_partitions: u32,
    /// `transaction.state.log.segment.bytes` (default 100 MiB).
    pub transaction_state_log_segment_bytes: u64,
    /// How often timed-out transactions are aborted and unfinished markers retried
    /// (`transaction.abort.timed.out.transaction.cleanup.interval.ms`, default 10 s).
    pub transaction_abort_timed_out_transaction_cleanup_interval: Duration,
    /// Whether the group and transaction coordinators own only the partitions of
    /// `__consumer_offsets` / `__transaction_state` this broker is elected leader of (a node
    /// of a cluster: ownership follows [`crate::Broker::coordinator_partition_elected`] and
    /// [`crate::Broker::coordinator_partition_resigned`], nothing is loaded at open) rather
    /// than every partition (the single-node broker, the default).
    pub elected_coordinators: bool,
    /// `transaction.state.log.min.isr` (default 2): `min.insync.replicas` of
    /// `__transaction_state` when a cluster creates it.
    pub transaction_state_log_min_isr: u32,
    /// `offsets.commit.timeout.ms` (default 5 s): how long a coordinator write waits for the
    /// in-sync replicas of its partition (cluster mode).
    pub offsets_commit_timeout: Duration,
}

impl BrokerConfig {
    /// Kafka's defaults with the given data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            node_id: 0,
            log_defaults: LogConfig::default(),
            num_partitions: 1,
            auto_create_topics_enable: true,
            offsets_topic_num_partitions: 50,
            offsets_topic_segment_bytes: 100 * 1024 * 1024,
            cleaner_interval: Some(Duration::from_secs(300)),
            compaction_check_interval: Duration::from_secs(15),
            recovery_checkpoint_interval: Duration::from_secs(60),
            group_initial_rebalance_delay: Duration::from_secs(3),
            transaction_max_timeout: Duration::from_millis(900_000),
            transaction_state_log_num_partitions: 50,
            transaction_state_log_segment_bytes: 100 * 1024 * 1024,
            transaction_abort_timed_out_transaction_cleanup_interval: Duration::from_secs(10),
            elected_coordinators: false,
            transaction_state_log_min_isr: 2,
            offsets_commit_timeout: Duration::from_secs(5),
        }
    }

    /// Sets the durability policy (the defaults of `flush.messages` and `flush.ms`).
    pub fn with_flush_policy(mut self, policy: FlushPolicy) -> Self {
        match policy {
            FlushPolicy::EveryBatch => {
                self.log_defaults.flush_messages = 1;
                self.log_defaults.flush_ms = i64::MAX;
            }
            FlushPolicy::Interval(d) => {
                self.log_defaults.flush_messages = u64::MAX;
                self.log_defaults.flush_ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
            }
            FlushPolicy::Os => {
                self.log_defaults.flush_messages = u64::MAX;
                self.log_defaults.flush_ms = i64::MAX;
            }
        }
        self
    }
}

/// Validates a topic name as Kafka does (`Topic.validate`): 1 to 249 characters from
/// `[a-zA-Z0-9._-]`, and not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("topic name is empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("topic name cannot be `{name}`"));
    }
    if name.len() > 249 {
        return Err(format!(
            "topic name is {} characters long; the maximum is 249",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "topic name `{name}` contains `{c}`; only ASCII alphanumerics, '.', '_' and '-' are legal"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_renders_known_keys() {
        let mut c = LogConfig::default();
        c.set("cleanup.policy", "compact,delete").unwrap();
        assert_eq!(
            c.cleanup_policy,
            CleanupPolicy {
                delete: true,
                compact: true
            }
        );
        assert_eq!(c.get("cleanup.policy").unwrap(), "compact,delete");
        c.set("retention.ms", "-1").unwrap();
        assert_eq!(c.retention_ms, -1);
        c.set("message.timestamp.type", "LogAppendTime").unwrap();
        assert_eq!(c.get("message.timestamp.type").unwrap(), "LogAppendTime");
        for key in TOPIC_CONFIG_KEYS {
            assert!(c.get(key).is_some(), "{key} renders");
        }
    }

    #[test]
    fn kafkas_other_topic_configs_are_validated_and_reported_but_inert() {
        let c = LogConfig::default();
        // Every topic config of Kafka's `TopicConfig` (4.x) is known here.
        for (key, default) in INERT_TOPIC_CONFIGS {
            assert!(TOPIC_CONFIG_KEYS.contains(key), "{key} listed");
            assert_eq!(c.get(key).as_deref(), Some(*default), "{key} default");
        }
        let c = c
            .with("preallocate", "true")
            .and_then(|c| c.with("segment.jitter.ms", "1000"))
            .and_then(|c| c.with("compression.zstd.level", "-5"))
            .and_then(|c| c.with("leader.replication.throttled.replicas", "0:1, 1:2"))
            .and_then(|c| c.with("follower.replication.throttled.replicas", "*"))
            .and_then(|c| c.with("local.retention.ms", "-2"))
            .and_then(|c| c.with("unclean.leader.election.enable", "true"))
            .unwrap();
        assert_eq!(c.get("preallocate").as_deref(), Some("true"));
        assert_eq!(c.get("segment.jitter.ms").as_deref(), Some("1000"));
        assert_eq!(
            c.get("unclean.leader.election.enable").as_deref(),
            Some("true")
        );
        for (key, value) in [
            ("preallocate", "yes"),
            ("segment.jitter.ms", "-1"),
            ("compression.gzip.level", "0"),
            ("compression.gzip.level", "10"),
            ("compression.lz4.level", "18"),
            ("compression.zstd.level", "23"),
            ("leader.replication.throttled.replicas", "0-1"),
            ("local.retention.bytes", "-3"),
            ("remote.storage.enable", "true"),
            ("message.timestamp.after.max.ms", "-1"),
        ] {
            assert!(
                matches!(
                    LogConfig::default().with(key, value),
                    Err(ConfigError::InvalidValue { .. })
                ),
                "{key}={value} refused"
            );
        }
        let c = LogConfig::default()
            .with("message.timestamp.before.max.ms", "60000")
            .unwrap();
        assert_eq!(c.message_timestamp_before_max_ms, 60_000);
        assert_eq!(c.message_timestamp_after_max_ms, i64::MAX);
    }

    #[test]
    fn rejects_unknown_keys_and_bad_values() {
        let c = LogConfig::default();
        assert_eq!(
            c.clone().with("retention.msx", "1"),
            Err(ConfigError::UnknownKey("retention.msx".into()))
        );
        assert!(matches!(
            c.clone().with("retention.ms", "soon"),
            Err(ConfigError::InvalidValue { .. })
        ));
        assert!(c.clone().with("retention.ms", "-2").is_err());
        assert!(c.clone().with("cleanup.policy", "shred").is_err());
        assert!(c.clone().with("min.cleanable.dirty.ratio", "1.5").is_err());
        assert!(c.clone().with("segment.bytes", "3").is_err());
        assert!(c.clone().with("file.delete.delay.ms", "-1").is_err());
        assert_eq!(
            c.clone()
                .with("file.delete.delay.ms", "10000")
                .map(|c| c.file_delete_delay_ms),
            Ok(10_000)
        );
    }

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("orders.v1_x-2").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name(".").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("a/b").is_err());
        assert!(validate_topic_name("tópico").is_err());
        assert!(validate_topic_name(&"x".repeat(249)).is_ok());
        assert!(validate_topic_name(&"x".repeat(250)).is_err());
    }

    #[test]
    fn flush_policy_sets_defaults() {
        let c = BrokerConfig::new("/tmp/x").with_flush_policy(FlushPolicy::EveryBatch);
        assert_eq!(c.log_defaults.flush_messages, 1);
        let c = BrokerConfig::new("/tmp/x")
            .with_flush_policy(FlushPolicy::Interval(Duration::from_millis(250)));
        assert_eq!(c.log_defaults.flush_ms, 250);
    }
}
