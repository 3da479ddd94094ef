//! Typed errors of the streams runtime.

use state_store::StoreError;

/// Result alias of this crate.
pub type Result<T, E = StreamsError> = std::result::Result<T, E>;

/// A serde failed to turn bytes into a value or a value into bytes.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SerdeError {
    message: String,
}

impl SerdeError {
    /// A serde error with a message saying what was wrong.
    pub fn new(message: impl Into<String>) -> Self {
        SerdeError {
            message: message.into(),
        }
    }

    /// The error message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// A topology is malformed (found when it is built, before anything runs).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    /// Two nodes, two stores or a node and a store share a name.
    #[error("name `{0}` is used twice in the topology")]
    NameClash(String),
    /// A node names a parent that does not exist.
    #[error("node `{node}` names unknown parent `{parent}`")]
    UnknownParent {
        /// The node being added.
        node: String,
        /// The missing parent.
        parent: String,
    },
    /// A node that must have a parent has none.
    #[error("node `{0}` has no parent")]
    NoParent(String),
    /// A parent cannot have children (a sink).
    #[error("node `{parent}` is a sink and cannot be the parent of `{node}`")]
    SinkAsParent {
        /// The node being added.
        node: String,
        /// The sink named as its parent.
        parent: String,
    },
    /// A store is connected to a node that does not exist or is not a processor.
    #[error("store `{store}` is connected to `{node}`, which is not a processor of this topology")]
    UnknownProcessor {
        /// The store.
        store: String,
        /// The missing processor.
        node: String,
    },
    /// A store is not connected to any processor.
    #[error("store `{0}` is not connected to any processor")]
    UnconnectedStore(String),
    /// A processor names a store that was never added.
    #[error("processor `{node}` is connected to unknown store `{store}`")]
    UnknownStore {
        /// The processor.
        node: String,
        /// The missing store.
        store: String,
    },
    /// A record type flowing into a node is not the one it accepts.
    #[error("node `{node}` accepts {expected} but parent `{parent}` forwards {actual}")]
    TypeMismatch {
        /// The child node.
        node: String,
        /// The parent node.
        parent: String,
        /// What the child accepts.
        expected: String,
        /// What the parent forwards.
        actual: String,
    },
    /// A source lists no topics, or a topic is subscribed twice.
    #[error("invalid source `{node}`: {reason}")]
    InvalidSource {
        /// The source node.
        node: String,
        /// What is wrong.
        reason: String,
    },
    /// A name is not a legal node, store or topic name.
    #[error("invalid name `{name}`: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// Why it is refused.
        reason: String,
    },
    /// The topology has no source node.
    #[error("the topology has no source node")]
    Empty,
    /// A store is shared by processors of different sub-topologies.
    #[error("store `{0}` is connected to processors of different sub-topologies")]
    StoreAcrossSubtopologies(String),
    /// A suppression until the window closes on a table that no windowed aggregation
    /// produced (Kafka's `TopologyException` from `GraphGraceSearchUtil`).
    #[error("Window close time is only defined for windowed computations. Got [{node}].")]
    WindowCloseUndefined {
        /// The table node the suppression was applied to.
        node: String,
    },
}

/// Every error the streams runtime reports.
#[derive(Debug, thiserror::Error)]
pub enum StreamsError {
    /// The topology is malformed.
    #[error("invalid topology: {0}")]
    Topology(#[from] TopologyError),
    /// A configuration value is missing or wrong.
    #[error("invalid configuration `{key}`: {reason}")]
    Config {
        /// The configuration key (Kafka's name).
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A serde failed, with where it happened.
    #[error("serde failure for {what} on topic `{topic}`: {source}")]
    Serde {
        /// Key or value, and the node.
        what: String,
        /// The topic.
        topic: String,
        /// The serde's error.
        #[source]
        source: SerdeError,
    },
    /// No serde was given for a type and none is registered as the default for it.
    #[error(
        "no serde for {what} of type `{type_name}` at node `{node}`: pass one explicitly \
         (Consumed/Produced/Grouped/Materialized) or register a default with \
         StreamsConfig::default_serde"
    )]
    MissingSerde {
        /// Key or value.
        what: &'static str,
        /// The Rust type.
        type_name: &'static str,
        /// The node that needs it.
        node: String,
    },
    /// A state store failed.
    #[error("state store error: {0}")]
    Store(#[from] StoreError),
    /// The cluster (broker) failed or refused a request; `kind` says how to react.
    #[error("cluster error ({kind}): {message}")]
    Cluster {
        /// Retriable, fenced or fatal.
        kind: ClusterErrorKind,
        /// What failed.
        message: String,
        /// The underlying error, when there is one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// A topic the topology needs does not exist.
    #[error("source topic `{0}` does not exist")]
    MissingSourceTopic(String),
    /// Co-partitioned topics have different partition counts.
    #[error("topics of sub-topology {subtopology} are not co-partitioned: {counts}")]
    NotCopartitioned {
        /// The sub-topology.
        subtopology: usize,
        /// `topic: partitions` for each topic.
        counts: String,
    },
    /// An internal topic exists with settings the topology cannot use.
    #[error("internal topic `{topic}` is unusable: {reason}")]
    InternalTopic {
        /// The topic.
        topic: String,
        /// Why.
        reason: String,
    },
    /// An existing internal topic's `cleanup.policy` does not suit its use (Kafka Streams'
    /// validation of internal topics): a changelog that deletes old records would lose
    /// state, a compacted repartition topic would lose records.
    #[error(
        "internal topic `{topic}` is unusable: its cleanup.policy is `{policy}`, but a {kind}'s \
         must not contain `{forbidden}`; fix it (kafka-configs --alter) or delete the topic"
    )]
    InternalTopicCleanupPolicy {
        /// The topic.
        topic: String,
        /// What the topic is for.
        kind: crate::client::InternalTopicKind,
        /// Its `cleanup.policy`.
        policy: String,
        /// The policy it must not contain.
        forbidden: &'static str,
    },
    /// A processor failed while processing a record or punctuating.
    #[error("processing failed in task {task} at node `{node}`: {message}")]
    Processing {
        /// The task id (`<subtopology>_<partition>`).
        task: String,
        /// The processor node.
        node: String,
        /// What went wrong.
        message: String,
    },
    /// A processor asked for a store it is not connected to, or of another kind.
    #[error("processor `{node}` cannot access store `{store}`: {reason}")]
    StoreAccess {
        /// The processor.
        node: String,
        /// The store.
        store: String,
        /// Why.
        reason: String,
    },
    /// A fetched record cannot be deserialized and the deserialization handler is `Fail`
    /// (Kafka's `LogAndFailExceptionHandler`): the task stops at this record, whose offset
    /// is never committed.
    #[error(
        "cannot deserialize the record at {topic}-{partition} offset {offset} in task {task}: \
         {source} (default.deserialization.exception.handler = fail)"
    )]
    Deserialization {
        /// The task id (`<subtopology>_<partition>`).
        task: String,
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Offset.
        offset: i64,
        /// The serde's error ([`StreamsError::Serde`]).
        #[source]
        source: Box<StreamsError>,
    },
    /// A record's timestamp is invalid and the policy says fail.
    #[error("invalid timestamp {timestamp} on {topic}-{partition} at offset {offset}")]
    InvalidTimestamp {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Offset.
        offset: i64,
        /// The extracted timestamp.
        timestamp: i64,
    },
    /// A processor returned an error of its own.
    #[error("{0}")]
    User(String),
    /// A suppression buffer configured to shut down when full (Kafka's
    /// `BufferConfig#shutDownWhenFull`) exceeded its capacity; Kafka raises a
    /// `StreamsException` with the same message, which stops the stream thread.
    #[error(
        "{node} buffer exceeded its max capacity. Currently [{records}/{max_records}] records \
         and [{bytes}/{max_bytes}] bytes."
    )]
    SuppressionBufferFull {
        /// The suppress processor's name.
        node: String,
        /// Buffered records.
        records: u64,
        /// The record limit.
        max_records: u64,
        /// Buffered bytes (Kafka's estimate).
        bytes: u64,
        /// The byte limit.
        max_bytes: u64,
    },
    /// The application is not in a state that allows the call.
    #[error("illegal state: {0}")]
    IllegalState(String),
    /// A task's local state cannot be trusted (Kafka's `TaskCorruptedException`): its
    /// checkpoint claims offsets its changelog no longer has. The task manager wipes the
    /// task's stores and restores them from the changelog; users see this only if that
    /// fails too.
    #[error("the local state of task {task} is corrupted: {reason}")]
    TaskCorrupted {
        /// The task, `<subtopology>_<partition>`.
        task: String,
        /// Which checkpoint and changelog offsets disagree.
        reason: String,
    },
    /// The group gave this member's tasks to another member (Kafka's
    /// `TaskMigratedException`): a commit with a stale generation, or after the member fell
    /// out of the group. The runtime closes the tasks without committing and rejoins.
    #[error("tasks migrated to another member: {0}")]
    TaskMigrated(String),
    /// Interactive queries: the application has not been started yet (Kafka's
    /// `StreamsNotStartedException`). Call [`StreamsApp::start`](crate::StreamsApp::start)
    /// first.
    #[error("the streams application is not started yet (state CREATED); start it before querying its stores")]
    StreamsNotStarted,
    /// Interactive queries: the application is shutting down, stopped or failed (Kafka's
    /// `IllegalStateException` from `KafkaStreams.store`): its stores cannot be queried
    /// any more.
    #[error(
        "the streams application is not running (state {state}); its stores cannot be queried"
    )]
    StreamsNotRunning {
        /// The application's state, as Kafka prints it (`NOT_RUNNING`, `ERROR`, ...).
        state: String,
    },
    /// Interactive queries: no store of this name is registered in the topology (Kafka's
    /// `UnknownStateStoreException`). Not retriable.
    #[error("cannot get state store `{0}`: no such store is registered in the topology")]
    UnknownStateStore(String),
    /// Interactive queries: the store exists but cannot be read here now (Kafka's
    /// `StateStoreMigratedException` / `InvalidStateStoreException`): the application is
    /// rebalancing, or no task of this instance holds the store, or the task holding it
    /// was closed while the query ran. Retriable: look the store up again with
    /// `query_metadata_for_key` / `streams_metadata_for_store` and retry, here or on the
    /// instance that now holds it.
    #[error("state store `{store}` is not available here: {reason}; it may have migrated to another instance, retry after re-discovering its location")]
    StateStoreMigrated {
        /// The store.
        store: String,
        /// Why (rebalancing, not local, closed).
        reason: String,
    },
    /// Interactive queries: a query restricted to one partition found no local task of
    /// the store on that partition (Kafka's `InvalidStateStorePartitionException`).
    #[error(
        "the specified partition {partition} for store `{store}` does not exist on this instance"
    )]
    InvalidStateStorePartition {
        /// The store.
        store: String,
        /// The partition asked for.
        partition: i32,
    },
    /// Interactive queries: the store is not of the queried type (Kafka's
    /// `InvalidStateStoreException` "the queryable store type does not accept the actual
    /// store type"), e.g. a window store queried as a key-value store. Not retriable.
    #[error("cannot query state store `{store}` as a {requested}: it is a {actual}")]
    InvalidStoreType {
        /// The store.
        store: String,
        /// The type asked for.
        requested: &'static str,
        /// The store's type.
        actual: &'static str,
    },
    /// A file operation failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// How a caller should react to a cluster failure (Kafka's retriable and fatal exceptions,
/// and fencing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ClusterErrorKind {
    /// Transient (a leader moving, a coordinator loading, a timeout): retrying may succeed.
    Retriable,
    /// Another producer or member with this identity took over (Kafka's
    /// `ProducerFencedException`, `FENCED_INSTANCE_ID`): stop using it.
    Fenced,
    /// The request is wrong or refused for good (a missing topic, an invalid config).
    Fatal,
}

impl std::fmt::Display for ClusterErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ClusterErrorKind::Retriable => "retriable",
            ClusterErrorKind::Fenced => "fenced",
            ClusterErrorKind::Fatal => "fatal",
        })
    }
}

impl ClusterErrorKind {
    /// The kind of a Kafka error code.
    pub fn of(error: kafka_protocol::ResponseError) -> Self {
        use kafka_protocol::ResponseError as E;
        match error {
            E::ProducerFenced | E::FencedInstanceId | E::InvalidProducerEpoch => {
                ClusterErrorKind::Fenced
            }
            e if e.is_retriable() => ClusterErrorKind::Retriable,
            _ => ClusterErrorKind::Fatal,
        }
    }
}

impl StreamsError {
    /// An error a processor raises for its own reasons.
    pub fn user(message: impl Into<String>) -> Self {
        StreamsError::User(message.into())
    }

    /// A cluster error of `kind` with a message and no underlying error.
    pub(crate) fn cluster(kind: ClusterErrorKind, message: impl Into<String>) -> Self {
        StreamsError::Cluster {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// A fatal cluster error with a message and no underlying error.
    pub(crate) fn cluster_fatal(message: impl Into<String>) -> Self {
        StreamsError::Cluster {
            kind: ClusterErrorKind::Fatal,
            message: message.into(),
            source: None,
        }
    }

    /// A cluster error from the broker, classified by its Kafka error code, keeping the
    /// broker's error as the source.
    pub(crate) fn broker(context: impl Into<String>, e: broker_embedded::BrokerError) -> Self {
        StreamsError::Cluster {
            kind: ClusterErrorKind::of(e.kafka_error()),
            message: format!("{}: {e}", context.into()),
            source: Some(Box::new(e)),
        }
    }

    /// A cluster error of `kind` caused by `source`.
    pub(crate) fn cluster_source(
        kind: ClusterErrorKind,
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        StreamsError::Cluster {
            kind,
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }

    /// A group coordinator error, classified by its Kafka error code.
    pub(crate) fn group(context: impl Into<String>, e: broker_embedded::GroupError) -> Self {
        let kind = ClusterErrorKind::of(e.kafka_error());
        Self::cluster_source(kind, format!("{}: {e}", context.into()), e)
    }

    /// The kind of a cluster error (`None` for other errors).
    pub fn cluster_kind(&self) -> Option<ClusterErrorKind> {
        match self {
            StreamsError::Cluster { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    pub(crate) fn config(key: &str, reason: impl Into<String>) -> Self {
        StreamsError::Config {
            key: key.to_owned(),
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use kafka_protocol::ResponseError;

    use super::*;

    #[test]
    fn cluster_errors_are_classified_by_their_kafka_code_and_keep_their_source() {
        assert_eq!(
            ClusterErrorKind::of(ResponseError::NotLeaderOrFollower),
            ClusterErrorKind::Retriable
        );
        assert_eq!(
            ClusterErrorKind::of(ResponseError::CoordinatorLoadInProgress),
            ClusterErrorKind::Retriable
        );
        assert_eq!(
            ClusterErrorKind::of(ResponseError::ProducerFenced),
            ClusterErrorKind::Fenced
        );
        assert_eq!(
            ClusterErrorKind::of(ResponseError::FencedInstanceId),
            ClusterErrorKind::Fenced
        );
        assert_eq!(
            ClusterErrorKind::of(ResponseError::InvalidTopicException),
            ClusterErrorKind::Fatal
        );

        let broker = broker_embedded::BrokerError::UnknownTopicOrPartition {
            topic: "t".into(),
            partition: 3,
        };
        let e = StreamsError::broker("producing to t-3", broker);
        // UNKNOWN_TOPIC_OR_PARTITION is retriable in Kafka (metadata may be stale).
        assert_eq!(e.cluster_kind(), Some(ClusterErrorKind::Retriable));
        assert!(e.to_string().contains("producing to t-3"), "{e}");
        assert!(e.source().is_some_and(|s| s.to_string().contains('t')));
        assert_eq!(
            StreamsError::cluster_fatal("x").cluster_kind(),
            Some(ClusterErrorKind::Fatal)
        );
        assert_eq!(StreamsError::user("x").cluster_kind(), None);
    }
}
