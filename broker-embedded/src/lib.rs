//! # broker-embedded
//!
//! A Kafka-compatible, partitioned, durable commit log, usable in-process through the
//! [`Broker`] handle (the streams runtime's default backend) and, in later layers, over the
//! Kafka wire protocol.
//!
//! ## What this crate owns
//! - **The log** ([`PartitionLog`]): per partition, a directory `<topic>-<partition>/` of
//!   segments in Kafka's layout — `.log` files of record batches v2 (magic 2, CRC-32C), sparse
//!   `.index` and `.timeindex` files, producer-state `.snapshot` files and a
//!   `partition.metadata` file with the topic id. Segments roll by size, age and index size.
//! - **Recovery**: a clean-shutdown marker (`.kafka_cleanshutdown`) and a
//!   `recovery-point-offset-checkpoint` let a restart skip scanning flushed data; otherwise
//!   every batch after the recovery point is validated, a torn or corrupt tail is truncated at
//!   the last valid batch (with a warning giving byte counts), and indexes that are missing or
//!   inconsistent are rebuilt.
//! - **Retention and compaction**: `retention.ms` / `retention.bytes` delete whole old
//!   segments; `cleanup.policy=compact` keeps the latest record per key outside the active
//!   segment and drops tombstones `delete.retention.ms` after the cleaner first saw them. A
//!   background cleaner runs on a timer; [`Broker::run_cleaner_pass`] runs one pass now.
//! - **Durability** ([`FlushPolicy`]): fsync every batch, every N ms, or leave it to the OS.
//! - **Topics** with persisted ids, partitions and validated configs ([`LogConfig`]).
//! - **The group coordinator** ([`GroupCoordinator`], [`Broker::group_coordinator`]): the
//!   classic JoinGroup/SyncGroup/Heartbeat/LeaveGroup protocol with typed requests and
//!   errors, timers on a broker thread; the wire server and in-process members use it alike.
//! - **Committed consumer-group offsets** in the compacted `__consumer_offsets` topic, with
//!   Kafka's record layouts; member commits checked by the coordinator
//!   ([`Broker::commit_group_offsets`]).
//! - **Producer state** (idempotence sequences, open transactions) per partition, and a
//!   durable producer-id allocator.
//! - **Partitioners**: the Java client's murmur2 ([`partition_for_key`]) and a sticky
//!   partitioner for null keys.
//! - **An async Kafka-protocol client** ([`client::KafkaConnection`]) for traffic between
//!   nodes (replica fetches, controller requests).
//!
//! ## What it must not depend on
//! Nothing above it: not `state-store`, `streams-core` or `streams-dsl`.
//!
//! ## Example
//! ```
//! use broker_embedded::{Broker, BrokerConfig, FetchOptions, NewTopic, ProduceRecord};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let broker = Broker::open(BrokerConfig::new(dir.path()))?;
//! broker.create_topic(NewTopic::new("events", 3))?;
//! let appended = broker.produce("events", 1, &[ProduceRecord::new("k", "v")])?;
//! assert_eq!(appended.base_offset, 0);
//! let records = broker.fetch_records("events", 1, 0, FetchOptions::default()).await?;
//! assert_eq!(records[0].value.as_deref(), Some(&b"v"[..]));
//! broker.shutdown()?;
//! # Ok(()) }
//! ```

mod broker;
pub mod client;
mod config;
mod error;
mod fsutil;
mod group;
mod log;
mod offsets;
mod partitioner;
pub mod record;
pub mod replica;
mod server;
mod txn;

pub use broker::{
    decode_fetched, decode_fetched_committed, decode_fetched_shared, AlterConfigOp, Broker,
    ConfigEntry, ConfigSource, CoordinatorKind, CoordinatorLease, FetchOptions, ListedOffset,
    NewTopic, OffsetSpec, PartitionDescription, ProduceRecord, ProducerIdBlock,
    ProducerIdBlockSource, RecordsRead, TopicDescription, TransactionalProducer,
    TxnOffsetCommitError, TxnProducerError, TxnProducerResult, TRANSACTION_STATE_TOPIC,
};
pub use config::{
    validate_topic_name, BrokerConfig, CleanupPolicy, ConfigError, FlushPolicy, LogConfig,
    TOPIC_CONFIG_KEYS,
};
pub use error::{BrokerError, Result};
pub use group::{
    CommitMember, GroupCoordinator, GroupDescription, GroupError, GroupListing, GroupState,
    JoinGroupRequest, JoinGroupResponse, JoinedMember, MemberDescription, PendingJoin, PendingSync,
    SyncGroupRequest, SyncGroupResponse, MAX_SESSION_TIMEOUT, MIN_SESSION_TIMEOUT,
};
pub use log::{
    AbortedTxn, AppendInfo, AppendOrigin, BatchMetadata, CleanerStats, EpochEntry, FetchData,
    IsolationLevel, LogOffsets, PartitionLog, ProducerEntry, MAX_REMEMBERED_BATCHES,
    UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET,
};
pub use offsets::{OffsetAndMetadata, TopicPartition, OFFSETS_TOPIC};
pub use partitioner::{java_string_hash, murmur2, partition_for_key, StickyPartitioner};
pub use server::{
    check_request_frame, BrokerInfo, ClusterAdmin, ClusterHooks, ClusterView, KafkaServer,
    ListenerEndpoint, PartitionInfo, ServerConfig, ServerError, TopicInfo,
};
pub use txn::{
    ProducerIdAndEpoch, TransactionCoordinator, TransactionDescription, TransactionListing,
    TxnError, TxnMarkerWriter, TxnState,
};

/// Entry points for the fuzz targets (feature `fuzzing`); not part of the supported API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use server::fuzzing;
