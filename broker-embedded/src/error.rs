//! The crate's error type, with the Kafka error code each variant maps to.

use std::io;
use std::path::PathBuf;

use kafka_protocol::ResponseError;

use crate::config::ConfigError;
use crate::record::RecordError;

/// Everything the broker can refuse or fail at. Every variant maps to a Kafka error code
/// ([`BrokerError::kafka_error`]) so the wire-protocol layer answers clients precisely.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// A file operation failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// File or directory involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Stored data failed validation (CRC, framing) where it was expected to be valid.
    #[error("corrupt data in {path} at byte {position}: {source}")]
    Corrupt {
        /// Segment file.
        path: PathBuf,
        /// Byte position of the bad batch.
        position: u64,
        /// What was wrong.
        #[source]
        source: RecordError,
    },
    /// A produced batch is malformed (CORRUPT_MESSAGE).
    #[error("invalid record batch: {0}")]
    InvalidBatch(#[source] RecordError),
    /// A produced record breaks a topic rule, e.g. a null key on a compacted topic
    /// (INVALID_RECORD).
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    /// CreateTime records outside the topic's `message.timestamp.before.max.ms` /
    /// `message.timestamp.after.max.ms` window around the broker's clock (INVALID_TIMESTAMP);
    /// the whole batch is refused.
    #[error("{}", timestamp_message(.records.first().copied().unwrap_or((0, 0)), *.min, *.max))]
    InvalidTimestamp {
        /// (index of the record in the produced batch, its timestamp) of each record out of
        /// the window.
        records: Vec<(i32, i64)>,
        /// The earliest timestamp accepted.
        min: i64,
        /// The latest timestamp accepted.
        max: i64,
    },
    /// A batch exceeds `max.message.bytes` (MESSAGE_TOO_LARGE).
    #[error("record batch of {size} bytes exceeds max.message.bytes = {max}")]
    MessageTooLarge {
        /// Batch size in bytes.
        size: usize,
        /// The topic's limit.
        max: usize,
    },
    /// The topic or partition does not exist (UNKNOWN_TOPIC_OR_PARTITION).
    #[error("unknown topic or partition {topic}-{partition}")]
    UnknownTopicOrPartition {
        /// Topic name.
        topic: String,
        /// Partition, or -1 when the topic itself is unknown.
        partition: i32,
    },
    /// A topic with this name exists already (TOPIC_ALREADY_EXISTS).
    #[error("topic `{0}` already exists")]
    TopicAlreadyExists(String),
    /// The topic name is illegal (INVALID_TOPIC_EXCEPTION).
    #[error("invalid topic name: {0}")]
    InvalidTopic(String),
    /// Bad partition count (INVALID_PARTITIONS).
    #[error("invalid partitions: {0}")]
    InvalidPartitions(String),
    /// More replicas than brokers, or zero (INVALID_REPLICATION_FACTOR).
    #[error("invalid replication factor {requested}: {available} broker(s) available")]
    InvalidReplicationFactor {
        /// Asked for.
        requested: i32,
        /// Brokers in the cluster.
        available: i32,
    },
    /// Bad topic config (INVALID_CONFIG).
    #[error(transparent)]
    InvalidConfig(#[from] ConfigError),
    /// Fetch or list-offsets outside `[log start, log end]` (OFFSET_OUT_OF_RANGE).
    #[error("offset {offset} is out of range for {topic}-{partition}: valid offsets are {log_start_offset}..={log_end_offset}")]
    OffsetOutOfRange {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Requested offset.
        offset: i64,
        /// First offset in the log.
        log_start_offset: i64,
        /// Offset the next record will get.
        log_end_offset: i64,
    },
    /// An idempotent producer's sequence is not the next one (OUT_OF_ORDER_SEQUENCE_NUMBER).
    #[error(
        "out of order sequence for producer {producer_id}: expected {expected}, got {received}"
    )]
    OutOfOrderSequence {
        /// Producer id.
        producer_id: i64,
        /// Next expected sequence.
        expected: i32,
        /// Sequence received.
        received: i32,
    },
    /// The producer's epoch is older than the partition's (INVALID_PRODUCER_EPOCH).
    #[error("producer {producer_id} epoch {epoch} is older than the current epoch {current}")]
    InvalidProducerEpoch {
        /// Producer id.
        producer_id: i64,
        /// Epoch received.
        epoch: i16,
        /// Current epoch.
        current: i16,
    },
    /// A producer wrote outside the transaction protocol, e.g. a non-transactional batch while
    /// its transaction is open (INVALID_TXN_STATE).
    #[error("invalid transaction state: {0}")]
    InvalidTxnState(String),
    /// A transaction marker came from an older transaction coordinator than the last one seen
    /// for the producer (TRANSACTION_COORDINATOR_FENCED).
    #[error("transaction marker for producer {producer_id} has coordinator epoch {coordinator_epoch}, older than {current}")]
    TransactionCoordinatorFenced {
        /// Producer id.
        producer_id: i64,
        /// Coordinator epoch received.
        coordinator_epoch: i32,
        /// Coordinator epoch last seen.
        current: i32,
    },
    /// A follower append whose first offset is not the log end offset (Kafka's
    /// `UnexpectedAppendOffsetException`, not an API error: UNKNOWN_SERVER_ERROR).
    #[error("unexpected offset in a follower append to {topic}-{partition}: first offset {first_offset}, log end offset {log_end_offset}")]
    UnexpectedAppendOffset {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Base offset of the first appended batch.
        first_offset: i64,
        /// The log end offset it should have been.
        log_end_offset: i64,
    },
    /// The broker is shutting down or the data directory is closed (KAFKA_STORAGE_ERROR).
    #[error("the broker is shut down")]
    Closed,
    /// A broker in a cluster has no producer-id block from the controller yet
    /// (COORDINATOR_LOAD_IN_PROGRESS: clients retry).
    #[error("no producer-id block from the controller yet")]
    ProducerIdsUnavailable,
    /// A replicated write of a coordinator (offsets, group metadata, transaction state or a
    /// transaction marker) failed with the Kafka error `code` of the partition's leader: the
    /// client receives the coordinator error Kafka maps it to (NOT_COORDINATOR when
    /// leadership moved, COORDINATOR_NOT_AVAILABLE when the in-sync replicas are too few or
    /// too slow).
    #[error("replicated coordinator write failed with error code {code}")]
    CoordinatorWrite {
        /// The Kafka error code of the append (NOT_LEADER_OR_FOLLOWER, NOT_ENOUGH_REPLICAS, …).
        code: i16,
    },
    /// This broker does not coordinate the group or transactional id (NOT_COORDINATOR), or
    /// is still loading its partition (COORDINATOR_LOAD_IN_PROGRESS).
    #[error("not the coordinator of this key ({0:?})")]
    NotCoordinator(ResponseError),
    /// Another process holds the data directory's lock.
    #[error("data directory {0} is locked by another broker process")]
    DataDirLocked(PathBuf),
    /// Broker metadata on disk is unreadable.
    #[error("unreadable broker metadata in {path}: {reason}")]
    Metadata {
        /// File.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl BrokerError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// The Kafka error code a client should receive for this error.
    pub fn kafka_error(&self) -> ResponseError {
        match self {
            Self::Io { .. } | Self::Closed | Self::DataDirLocked(_) | Self::Metadata { .. } => {
                ResponseError::KafkaStorageError
            }
            Self::ProducerIdsUnavailable => ResponseError::CoordinatorLoadInProgress,
            Self::Corrupt { .. } | Self::InvalidBatch(_) => ResponseError::CorruptMessage,
            Self::InvalidRecord(_) => ResponseError::InvalidRecord,
            Self::InvalidTimestamp { .. } => ResponseError::InvalidTimestamp,
            Self::MessageTooLarge { .. } => ResponseError::MessageTooLarge,
            Self::UnknownTopicOrPartition { .. } => ResponseError::UnknownTopicOrPartition,
            Self::TopicAlreadyExists(_) => ResponseError::TopicAlreadyExists,
            Self::InvalidTopic(_) => ResponseError::InvalidTopicException,
            Self::InvalidPartitions(_) => ResponseError::InvalidPartitions,
            Self::InvalidReplicationFactor { .. } => ResponseError::InvalidReplicationFactor,
            Self::InvalidConfig(_) => ResponseError::InvalidConfig,
            Self::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
            Self::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
            Self::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
            Self::InvalidTxnState(_) => ResponseError::InvalidTxnState,
            Self::TransactionCoordinatorFenced { .. } => {
                ResponseError::TransactionCoordinatorFenced
            }
            Self::UnexpectedAppendOffset { .. } => ResponseError::UnknownServerError,
            Self::CoordinatorWrite { code } => coordinator_write_error(*code),
            Self::NotCoordinator(e) => *e,
        }
    }
}

/// Kafka's mapping of a failed coordinator append to the error its client receives
/// (`GroupMetadataManager` / `TransactionStateManager`): a moved leader is NOT_COORDINATOR, too
/// few or too slow replicas COORDINATOR_NOT_AVAILABLE, so that clients look the coordinator up
/// again and retry.
fn coordinator_write_error(code: i16) -> ResponseError {
    use ResponseError as E;
    match ResponseError::try_from_code(code) {
        Some(E::NotLeaderOrFollower | E::KafkaStorageError | E::FencedLeaderEpoch) => {
            E::NotCoordinator
        }
        Some(E::MessageTooLarge | E::RecordListTooLarge) => E::UnknownServerError,
        _ => E::CoordinatorNotAvailable,
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = BrokerError> = std::result::Result<T, E>;

/// Kafka's message for a record refused by the timestamp window (`LogValidator`).
pub(crate) fn timestamp_message((index, timestamp): (i32, i64), min: i64, max: i64) -> String {
    format!(
        "Timestamp {timestamp} of message with offset {index} is out of range. The timestamp \
         should be within [{min}, {max}]"
    )
}
