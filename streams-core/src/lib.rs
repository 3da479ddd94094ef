//! # streams-core
//!
//! The streams runtime, in Kafka Streams' terms:
//!
//! - [`Topology`]: source, processor and sink nodes, state stores attached to processors,
//!   repartition topics; validated as it is built (name clashes, unknown parents, record
//!   types that do not match), split into sub-topologies, described as text
//!   ([`TopologyDescription`]) or Graphviz ([`TopologyDescription::to_dot`]).
//! - The Processor API: [`Processor`] and its [`ProcessorContext`] (forward, stores, record
//!   metadata, punctuation on stream time or wall-clock time, commit requests).
//! - Serdes byte-compatible with Kafka's Java serdes ([`Serde`], [`StringSerde`],
//!   [`I64Serde`], ...) and a [`SerdeRegistry`] of defaults by type.
//! - Tasks (one per sub-topology and partition) processing records in timestamp order across
//!   their partitions, with RocksDB or in-memory stores, caching and changelogs from the
//!   `state-store` crate.
//! - [`StreamsApp`] (Kafka's `KafkaStreams`): N stream threads sharing the tasks, the
//!   commit cycle (flush caches → flush produced records → commit offsets → checkpoint),
//!   restoration from changelogs, internal topics named as Kafka Streams names them, state
//!   listener and uncaught-error policy.
//! - The client layer ([`Cluster`] and friends) with [`EmbeddedCluster`] over the in-process
//!   broker.
//! - With the `test-utils` feature, `TopologyTestDriver`: runs a topology synchronously,
//!   without a broker.
//!
//! It depends on `state-store` and `broker-embedded` and must never depend on
//! `streams-dsl` (the DSL compiles into a [`Topology`] of this crate).
//!
//! ## The commit path
//! At-least-once today: [`StreamsApp`] commits every `commit.interval.ms` by flushing each
//! task's stores (caches forward what they hold), flushing the thread's producer, committing
//! the consumed offsets to the group, then writing `.checkpoint` files. Exactly-once will
//! wrap the producer flush and the offset commit into one transaction at the same place.

mod assignment;
mod assignor;
mod client;
mod collector;
mod config;
mod error;
mod global;
mod names;
mod processor;
mod query;
mod record;
mod runtime;
mod serde;
mod sink;
mod source;
mod store;
mod task;
mod task_manager;
#[cfg(feature = "test-utils")]
mod test_driver;
mod topology;
mod windowed;
#[cfg(feature = "kafka")]
mod wire;

pub use assignment::{
    decode_assignment, decode_subscription, encode_assignment, encode_subscription,
    AssignmentDataError, AssignmentInfo, AssignmentSpec, EndOffsetsFn, HostInfo, HostPartitions,
    MemberSubscription, SubscriptionInfo, CONSUMER_PROTOCOL_TYPE, LATEST_OFFSET,
    LATEST_READABLE_VERSION, NO_REBALANCE, STREAMS_PROTOCOL, UNKNOWN_OFFSET_SUM, USER_DATA_VERSION,
};
pub use assignor::{
    assign_tasks_to_threads, AssignorConfig, ClientState, HighAvailabilityTaskAssignor,
    StickyTaskAssignor, TaskAssignor,
};
pub use client::{
    AssignmentEvent, ChangelogSource, Cluster, ClusterConsumer, ClusterProducer,
    ConsumerGroupMetadata, EmbeddedCluster, InternalTopicKind, InternalTopicSpec, IsolationLevel,
    PollResult, Subscription, TaskOffsetSumsFn,
};
pub use config::{
    DeserializationHandler, InvalidTimestampPolicy, ProcessingGuarantee, StreamsConfig,
    UncaughtErrorPolicy, CLIENT_PROPERTY_PREFIXES, EMIT_INTERVAL_MS_KSTREAMS_WINDOWED_AGGREGATION,
    EOS_DEFAULT_COMMIT_INTERVAL, EOS_DEFAULT_TRANSACTION_TIMEOUT,
};
pub use error::{ClusterErrorKind, Result, SerdeError, StreamsError, TopologyError};
pub use global::GlobalStoreHandle;
pub use names::{
    changelog_topic, repartition_topic, CHANGELOG_TOPIC_SUFFIX, REPARTITION_TOPIC_SUFFIX,
};
pub use processor::{Processor, ProcessorContext, PunctuationType, ScheduleId, StoreAccess};
pub use query::metadata::{KeyQueryMetadata, StreamsMetadata};
pub use query::{
    QueryableStoreType, QueryableStoreTypes, ReadOnlyKeyValueStore, ReadOnlySessionStore,
    ReadOnlyWindowStore, StoreQueryParameters,
};
pub use record::{Change, ConsumedRecord, Header, ProducedRecord, Record, RecordMetadata};
pub use runtime::{StateListener, StreamsApp, StreamsState};
pub use serde::{
    BoolSerde, BytesSerde, F32Serde, F64Serde, I16Serde, I32Serde, I64Serde, JsonSerde, Nullable,
    Serde, SerdeRegistry, SharedSerde, StringSerde, VoidSerde,
};
pub use state_store::{Direction, TopicPartition};
pub use store::{
    BufferedRecord, KeyValueStoreHandle, SessionStoreHandle, StoreBuilder, StoreIter, StoreKind,
    TimeOrderedBufferHandle, ValueAndTimestamp, Window, WindowStoreHandle, Windowed,
};
pub use task::TaskId;
#[cfg(feature = "test-utils")]
pub use test_driver::{TestInputTopic, TestOutputTopic, TopologyTestDriver};
pub use topology::{
    GlobalStoreDescription, NodeDescription, NodeDescriptionKind, OffsetReset, Sink, SinkTopic,
    Source, SourceTopics, StreamPartitioner, SubtopologyDescription, TimestampExtractor,
    TopicNameExtractor, Topology, TopologyDescription,
};
pub use windowed::{SessionWindowedSerde, TimeWindowedSerde};
#[cfg(feature = "kafka")]
pub use wire::{KafkaCluster, WireError};
