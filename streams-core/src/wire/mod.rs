//! The wire backend: the runtime's [`Cluster`] over any Kafka-protocol cluster (this
//! project's `broker serve`, Apache Kafka, Redpanda, librdkafka's mock cluster), built when
//! the `kafka` feature is on.
//!
//! Records flow through librdkafka (`rdkafka`): one idempotent producer per stream thread,
//! consumers in *assign* mode (the runtime decides the partitions), admin requests for the
//! internal topics. Group membership does not: librdkafka cannot run a custom assignor, so
//! each stream thread is a member of the application's group through this module's own
//! client of the classic group protocol ([`group`], on the `kafka-protocol` crate), the member
//! elected leader runs the same [`crate::TaskAssignor`] code as the embedded backend, and
//! offsets are committed by that client with the member's generation (librdkafka in assign
//! mode would commit as generation −1, which a real group refuses while it has members).
//!
//! Configuration uses Kafka's names: `bootstrap.servers`, `client.id`, and client properties
//! with Kafka Streams' prefixes (`consumer.`, `main.consumer.`, `restore.consumer.`,
//! `producer.`, `admin.`; see [`crate::StreamsConfig::client_property`]).

mod changelog;
pub(crate) mod conn;
mod consumer;
pub(crate) mod group;
mod native;
mod producer;

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::ResponseError;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use state_store::TopicPartition;

use crate::client::{
    ChangelogSource, Cluster, ClusterConsumer, ClusterProducer, InternalTopicSpec, IsolationLevel,
};
use crate::config::StreamsConfig;
use crate::error::{ClusterErrorKind, Result, StreamsError};
use crate::record::{ConsumedRecord, Header};

use self::group::GroupClient;

/// An error of the wire backend's own protocol client.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Connecting, reading or writing failed.
    #[error("connection to {address}: {source}")]
    Io {
        /// The broker address.
        address: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// No answer in time.
    #[error("no response from {address} in time")]
    Timeout {
        /// The broker address.
        address: String,
    },
    /// A request could not be encoded or a response decoded.
    #[error("{api}: malformed message: {reason}")]
    Codec {
        /// The API.
        api: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// The broker answered with a Kafka error code.
    #[error("{api}: {error:?} (error code {code}){}", detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Kafka {
        /// The API.
        api: &'static str,
        /// The error code.
        code: i16,
        /// The decoded error, when the code is known.
        error: Option<ResponseError>,
        /// Where (a partition) or the broker's message.
        detail: Option<String>,
    },
    /// The broker does not support a version of an API this client needs.
    #[error("the broker does not support {api} at a version in [{floor}, {cap}]")]
    UnsupportedApi {
        /// The API.
        api: &'static str,
        /// The lowest version this client can use.
        floor: i16,
        /// The highest version this client implements.
        cap: i16,
    },
    /// A feature the configuration asks for needs more than the broker supports.
    #[error("unsupported by the broker: {what}")]
    UnsupportedFeature {
        /// What.
        what: &'static str,
    },
    /// No bootstrap server answered FindCoordinator.
    #[error("no coordinator found for group `{group}`")]
    NoCoordinator {
        /// The group.
        group: String,
    },
}

impl WireError {
    pub(crate) fn kafka(api: &'static str, code: i16, detail: Option<String>) -> Self {
        WireError::Kafka {
            api,
            code,
            error: ResponseError::try_from_code(code),
            detail,
        }
    }

    /// The Kafka error, for error codes.
    pub(crate) fn response_error(&self) -> Option<ResponseError> {
        match self {
            WireError::Kafka { error, .. } => *error,
            _ => None,
        }
    }

    /// True if the coordinator connection is no good any more (moved, or broken).
    pub(crate) fn coordinator_lost(&self) -> bool {
        match self {
            WireError::Io { .. } | WireError::Timeout { .. } | WireError::Codec { .. } => true,
            WireError::Kafka { error, .. } => matches!(
                error,
                Some(
                    ResponseError::NotCoordinator
                        | ResponseError::CoordinatorNotAvailable
                        | ResponseError::CoordinatorLoadInProgress
                )
            ),
            _ => false,
        }
    }

    /// True if the request may succeed when sent again after the connection is made
    /// afresh (and the coordinator looked up again): the connection was refused, reset or
    /// closed, no answer came in time, no coordinator was found, or the coordinator moved
    /// or is still loading. A malformed answer is not retried (it would come again).
    pub(crate) fn retry_elsewhere(&self) -> bool {
        match self {
            WireError::Io { .. } | WireError::Timeout { .. } | WireError::NoCoordinator { .. } => {
                true
            }
            WireError::Kafka { .. } => self.coordinator_lost(),
            _ => false,
        }
    }

    fn kind(&self) -> ClusterErrorKind {
        match self {
            WireError::Io { .. } | WireError::Timeout { .. } | WireError::NoCoordinator { .. } => {
                ClusterErrorKind::Retriable
            }
            WireError::Kafka { error: Some(e), .. } => ClusterErrorKind::of(*e),
            _ => ClusterErrorKind::Fatal,
        }
    }

    pub(crate) fn into_streams(self, context: impl Into<String>) -> StreamsError {
        StreamsError::cluster_source(self.kind(), format!("{}: {self}", context.into()), self)
    }
}

/// librdkafka error codes of a condition that passes by itself: a broker connection
/// down or refused (`_TRANSPORT`, `_ALL_BROKERS_DOWN`, `_RESOLVE`), no answer in time,
/// leadership or a coordinator moving or loading. librdkafka reconnects and retries by
/// itself; a request that failed with one may be sent again.
pub(crate) fn is_transient_code(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::Resolve
            | RDKafkaErrorCode::OperationTimedOut
            | RDKafkaErrorCode::RequestTimedOut
            | RDKafkaErrorCode::TimedOutQueue
            | RDKafkaErrorCode::NetworkException
            | RDKafkaErrorCode::NotLeaderForPartition
            | RDKafkaErrorCode::LeaderNotAvailable
            | RDKafkaErrorCode::ReplicaNotAvailable
            | RDKafkaErrorCode::PreferredLeaderNotAvailable
            | RDKafkaErrorCode::FencedLeaderEpoch
            | RDKafkaErrorCode::UnknownLeaderEpoch
            | RDKafkaErrorCode::KafkaStorageError
            | RDKafkaErrorCode::NotCoordinator
            | RDKafkaErrorCode::CoordinatorNotAvailable
            | RDKafkaErrorCode::CoordinatorLoadInProgress
            | RDKafkaErrorCode::WaitingForCoordinator
            | RDKafkaErrorCode::OffsetNotAvailable
            | RDKafkaErrorCode::NotEnoughReplicas
            | RDKafkaErrorCode::NotEnoughReplicasAfterAppend
            | RDKafkaErrorCode::Retry
    )
}

/// True for an error a librdkafka consumer's poll hands out for information only: the
/// end of a partition, or a transient condition ([`is_transient_code`]) the consumer
/// recovers from by itself (librdkafka documents consumer errors as informational unless
/// fatal). The caller logs it and polls on; it must not stop a stream thread.
pub(crate) fn is_informational_consumer_error(e: &KafkaError) -> bool {
    match e {
        KafkaError::PartitionEOF(_) => true,
        KafkaError::MessageConsumption(code) => is_transient_code(*code),
        _ => false,
    }
}

/// An rdkafka error as the runtime's cluster error: fencing codes → `Fenced`, transient
/// ones ([`is_transient_code`], a full local queue) → `Retriable`, others → `Fatal`.
pub(crate) fn rdkafka_error(context: impl Into<String>, e: KafkaError) -> StreamsError {
    let kind = match e.rdkafka_error_code() {
        Some(
            RDKafkaErrorCode::ProducerFenced
            | RDKafkaErrorCode::FencedInstanceId
            | RDKafkaErrorCode::InvalidProducerEpoch,
        ) => ClusterErrorKind::Fenced,
        Some(RDKafkaErrorCode::QueueFull) => ClusterErrorKind::Retriable,
        Some(code) if is_transient_code(code) => ClusterErrorKind::Retriable,
        _ => ClusterErrorKind::Fatal,
    };
    StreamsError::cluster_source(kind, format!("{}: {e}", context.into()), e)
}

/// Runs a librdkafka request (`f`, given the time an attempt may take: at most
/// `request.timeout.ms`, less near the deadline) and runs it again after a backoff (100 ms
/// doubling to 1 s) while it fails with a transient code ([`is_transient_code`]: the broker
/// is away, restarting, or moved leadership), for at most `settings.api_timeout`; then the
/// last error, as a retriable cluster error.
pub(crate) fn retry_transient<T>(
    settings: &WireSettings,
    context: impl Fn() -> String,
    mut f: impl FnMut(Duration) -> rdkafka::error::KafkaResult<T>,
) -> Result<T> {
    let deadline = std::time::Instant::now() + settings.api_timeout;
    let mut backoff = Duration::from_millis(100);
    loop {
        let attempt = settings
            .request_timeout
            .min(deadline.saturating_duration_since(std::time::Instant::now()))
            .max(Duration::from_millis(100));
        match f(attempt) {
            Ok(v) => return Ok(v),
            Err(e) => {
                let transient = e.rdkafka_error_code().is_some_and(is_transient_code);
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if !transient || left <= backoff {
                    return Err(rdkafka_error(context(), e));
                }
                tracing::debug!(error = %e, context = %context(), "transient error; retrying after {backoff:?}");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// A record consumed through librdkafka as the runtime's [`ConsumedRecord`] (a timestamp
/// librdkafka does not know is -1, as Kafka's `RecordBatch.NO_TIMESTAMP`).
pub(crate) fn consumed_record(m: &impl rdkafka::Message) -> ConsumedRecord {
    use rdkafka::message::Headers;
    let headers = m
        .headers()
        .map(|h| {
            h.iter()
                .map(|x| Header {
                    key: x.key.to_owned(),
                    value: x.value.map(bytes::Bytes::copy_from_slice),
                })
                .collect()
        })
        .unwrap_or_default();
    ConsumedRecord {
        offset: m.offset(),
        timestamp: m.timestamp().to_millis().unwrap_or(-1),
        key: m.key().map(bytes::Bytes::copy_from_slice),
        value: m.payload().map(bytes::Bytes::copy_from_slice),
        headers,
    }
}

/// Client properties the runtime sets itself: a user value would break it, so it is refused
/// at start.
const OWNED_KEYS: [&str; 10] = [
    "bootstrap.servers",
    // Kafka Streams' `<application.id>-<process id>-<thread>` under exactly-once.
    "transactional.id",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "isolation.level",
    "enable.idempotence",
    "partitioner",
    "auto.offset.reset",
    "client.id",
];

/// Which client a property applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientKind {
    MainConsumer,
    RestoreConsumer,
    Producer,
    Admin,
}

/// The backend's settings, read from a [`StreamsConfig`].
#[derive(Debug, Clone)]
pub(crate) struct WireSettings {
    pub(crate) bootstrap: Vec<String>,
    pub(crate) client_id: String,
    pub(crate) properties: BTreeMap<String, String>,
    pub(crate) request_timeout: Duration,
    /// How long a call of the own protocol client, or a metadata query, keeps retrying a
    /// broker it cannot reach (Kafka's consumer `default.api.timeout.ms`, 60 s).
    pub(crate) api_timeout: Duration,
    pub(crate) heartbeat_interval: Duration,
    pub(crate) group_instance_id: Option<String>,
}

impl WireSettings {
    /// librdkafka settings of a client of `kind`, with the pass-through properties that apply
    /// to it (a more specific prefix wins over a less specific one, as in Kafka Streams).
    pub(crate) fn client_config(&self, kind: ClientKind, client_id: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.bootstrap.join(","));
        c.set("client.id", client_id);
        let specific: &[&str] = match kind {
            ClientKind::MainConsumer => &["consumer.", "main.consumer."],
            ClientKind::RestoreConsumer => &["consumer.", "restore.consumer."],
            ClientKind::Producer => &["producer."],
            ClientKind::Admin => &["admin."],
        };
        for (k, v) in &self.properties {
            if is_unprefixed(k) && !OWN_CLIENT_KEYS.contains(&k.as_str()) {
                c.set(k, v);
            }
        }
        for prefix in specific {
            for (k, v) in &self.properties {
                if let Some(key) = k.strip_prefix(prefix) {
                    if !OWN_CLIENT_KEYS.contains(&key) {
                        c.set(key, v);
                    }
                }
            }
        }
        c
    }
}

/// Java client properties that the backend's own group client reads and librdkafka does
/// not know (it refuses unknown properties): never passed to librdkafka.
const OWN_CLIENT_KEYS: [&str; 3] = [
    "group.instance.id",
    "heartbeat.interval.ms",
    "default.api.timeout.ms",
];

fn is_unprefixed(key: &str) -> bool {
    !crate::config::CLIENT_PROPERTY_PREFIXES
        .iter()
        .any(|p| key.starts_with(p))
}

fn parse_ms(key: &str, v: &str) -> Result<Duration> {
    v.parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| StreamsError::config(key, format!("`{v}` is not a number of milliseconds")))
}

/// The runtime's cluster over a Kafka-protocol cluster (see the module doc).
///
/// ```no_run
/// use streams_core::{KafkaCluster, StreamsConfig};
/// let config = StreamsConfig::new("word-count").bootstrap_servers("127.0.0.1:9092")?;
/// let cluster = KafkaCluster::new(&config)?;
/// # Ok::<(), streams_core::StreamsError>(())
/// ```
#[derive(Clone)]
pub struct KafkaCluster {
    settings: std::sync::Arc<WireSettings>,
    admin: std::sync::Arc<AdminClient<DefaultClientContext>>,
    /// A consumer used for metadata and watermark queries.
    meta: std::sync::Arc<BaseConsumer>,
    /// Set once the cluster was found not to support DescribeConfigs (warned about once;
    /// existing internal topics' configs are not checked then).
    no_describe_configs: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for KafkaCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaCluster")
            .field("bootstrap", &self.settings.bootstrap)
            .finish_non_exhaustive()
    }
}

impl KafkaCluster {
    /// A cluster for `config`'s `bootstrap.servers` and client properties. Fails on a
    /// missing `bootstrap.servers`, on client properties the runtime owns (`group.id`,
    /// `enable.auto.commit`, ...), and when librdkafka refuses a property.
    pub fn new(config: &StreamsConfig) -> Result<Self> {
        let bootstrap = config.bootstrap_servers_list();
        if bootstrap.is_empty() {
            return Err(StreamsError::config(
                "bootstrap.servers",
                "missing: the wire backend needs host:port[,host:port...]",
            ));
        }
        let properties = config.client_properties().clone();
        for k in properties.keys() {
            let bare = crate::config::CLIENT_PROPERTY_PREFIXES
                .iter()
                .find_map(|p| k.strip_prefix(p))
                .unwrap_or(k);
            if OWNED_KEYS.contains(&bare) {
                return Err(StreamsError::config(
                    k,
                    "set by the streams runtime itself; it cannot be overridden",
                ));
            }
        }
        let lookup = |key: &str| {
            properties
                .get(&format!("main.consumer.{key}"))
                .or_else(|| properties.get(&format!("consumer.{key}")))
                .or_else(|| properties.get(key))
                .cloned()
        };
        let request_timeout = match lookup("request.timeout.ms") {
            Some(v) => parse_ms("request.timeout.ms", &v)?,
            None => Duration::from_secs(30),
        };
        let api_timeout = match lookup("default.api.timeout.ms") {
            Some(v) => parse_ms("default.api.timeout.ms", &v)?,
            None => Duration::from_secs(60),
        };
        let heartbeat_interval = match lookup("heartbeat.interval.ms") {
            Some(v) => parse_ms("heartbeat.interval.ms", &v)?,
            None => Duration::from_secs(3),
        };
        let settings = WireSettings {
            bootstrap,
            client_id: config.client_id_value().to_owned(),
            group_instance_id: lookup("group.instance.id"),
            properties,
            request_timeout,
            api_timeout,
            heartbeat_interval,
        };
        let admin: AdminClient<DefaultClientContext> = settings
            .client_config(ClientKind::Admin, &format!("{}-admin", settings.client_id))
            .create()
            .map_err(|e| rdkafka_error("creating the admin client", e))?;
        let meta: BaseConsumer = settings
            .client_config(
                ClientKind::RestoreConsumer,
                &format!("{}-metadata", settings.client_id),
            )
            .create()
            .map_err(|e| rdkafka_error("creating the metadata client", e))?;
        Ok(KafkaCluster {
            settings: std::sync::Arc::new(settings),
            admin: std::sync::Arc::new(admin),
            meta: std::sync::Arc::new(meta),
            no_describe_configs: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
        })
    }

    fn group_client(&self, group: &str, client_id: &str) -> GroupClient {
        GroupClient::new(
            self.settings.bootstrap.clone(),
            client_id,
            group,
            self.settings.request_timeout,
            self.settings.api_timeout,
        )
    }
}

/// Runs an admin future to completion on the calling thread, on a small current-thread
/// runtime (admin calls are rare: internal topic creation at start).
fn block_on<F: std::future::Future>(f: F) -> Result<F::Output> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| StreamsError::Io {
            path: "tokio runtime".into(),
            source: e,
        })?;
    Ok(rt.block_on(f))
}

impl Cluster for KafkaCluster {
    fn partitions(&self, topic: &str) -> Result<Option<i32>> {
        let md = retry_transient(
            &self.settings,
            || format!("metadata of `{topic}`"),
            |timeout| self.meta.fetch_metadata(Some(topic), timeout),
        )?;
        let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
            return Ok(None);
        };
        match t.error() {
            None => Ok(Some(
                i32::try_from(t.partitions().len()).unwrap_or(i32::MAX),
            )),
            Some(e) if RDKafkaErrorCode::from(e) == RDKafkaErrorCode::UnknownTopicOrPartition => {
                Ok(None)
            }
            Some(e) => Err(StreamsError::cluster_fatal(format!(
                "metadata of `{topic}`: {}",
                RDKafkaErrorCode::from(e)
            ))),
        }
    }

    fn topic_names(&self) -> Result<Vec<String>> {
        let md = retry_transient(
            &self.settings,
            || "listing topics".to_owned(),
            |timeout| self.meta.fetch_metadata(None, timeout),
        )?;
        Ok(md
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .map(|t| t.name().to_owned())
            .collect())
    }

    fn create_topic(&self, spec: &InternalTopicSpec) -> Result<()> {
        if self.partitions(&spec.name)?.is_some() {
            // Existing (created by an earlier run, or by hand where the cluster has no
            // CreateTopics, as librdkafka's mock cluster): topic preparation checks its
            // partition count.
            return Ok(());
        }
        let mut topic = NewTopic::new(
            &spec.name,
            spec.partitions.max(1),
            TopicReplication::Fixed(i32::from(spec.replication_factor)),
        );
        for (k, v) in &spec.configs {
            topic = topic.set(k, v);
        }
        let options = AdminOptions::new().operation_timeout(Some(self.settings.request_timeout));
        let results = block_on(self.admin.create_topics([&topic], &options))?
            .map_err(|e| rdkafka_error(format!("creating topic `{}`", spec.name), e))?;
        for r in results {
            match r {
                Ok(_) => {}
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    let kind = match code {
                        RDKafkaErrorCode::RequestTimedOut
                        | RDKafkaErrorCode::NotController
                        | RDKafkaErrorCode::LeaderNotAvailable => ClusterErrorKind::Retriable,
                        _ => ClusterErrorKind::Fatal,
                    };
                    return Err(StreamsError::Cluster {
                        kind,
                        message: format!("creating topic `{name}`: {code}"),
                        source: None,
                    });
                }
            }
        }
        // A created topic's metadata reaches every broker a moment later.
        let deadline = std::time::Instant::now() + self.settings.request_timeout;
        while self.partitions(&spec.name)?.is_none() {
            if std::time::Instant::now() >= deadline {
                return Err(StreamsError::Cluster {
                    kind: ClusterErrorKind::Retriable,
                    message: format!("topic `{}` created but not in the metadata", spec.name),
                    source: None,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    fn topic_configs(&self, topic: &str) -> Result<Option<BTreeMap<String, String>>> {
        use std::sync::atomic::Ordering;
        if self.no_describe_configs.load(Ordering::Relaxed) {
            return Ok(None);
        }
        match self.describe_topic_configs(topic) {
            Ok(configs) => Ok(configs),
            Err(e @ WireError::UnsupportedApi { .. }) => {
                if !self.no_describe_configs.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        topic,
                        "{e}: the cleanup.policy of existing internal topics is not checked"
                    );
                }
                Ok(None)
            }
            Err(e) => Err(e.into_streams(format!("configs of topic `{topic}`"))),
        }
    }

    fn producer(&self, client_id: &str) -> Result<Box<dyn ClusterProducer>> {
        Ok(Box::new(producer::WireProducer::new(
            &self.settings,
            &format!("{client_id}-producer"),
        )?))
    }

    /// An rdkafka producer with the thread's `transactional.id` and `transaction.timeout.ms`,
    /// idempotent and with the Java partitioner as every producer of this backend, after
    /// librdkafka's `rd_kafka_init_transactions` (which fences the id's previous producer
    /// and has its open transaction aborted).
    fn transactional_producer(
        &self,
        client_id: &str,
        transactional_id: &str,
        transaction_timeout: Duration,
    ) -> Result<Box<dyn ClusterProducer>> {
        Ok(Box::new(producer::WireProducer::transactional(
            &self.settings,
            &format!("{client_id}-producer"),
            transactional_id,
            transaction_timeout,
        )?))
    }

    fn consumer(
        &self,
        group: &str,
        client_id: &str,
        isolation: IsolationLevel,
    ) -> Result<Box<dyn ClusterConsumer>> {
        let instance_id = self.settings.group_instance_id.as_ref().map(|id| {
            // Kafka Streams gives each thread's consumer `<group.instance.id>-<thread>`.
            let thread = client_id.rsplit('-').next().unwrap_or("1");
            format!("{id}-{thread}")
        });
        Ok(Box::new(consumer::WireConsumer::new(
            &self.settings,
            self.group_client(group, &format!("{client_id}-consumer")),
            &format!("{client_id}-consumer"),
            instance_id,
            isolation,
        )?))
    }

    fn changelog_source(&self) -> Result<Box<dyn ChangelogSource>> {
        Ok(Box::new(changelog::WireChangelogSource::new(
            &self.settings,
            &format!("{}-restore-consumer", self.settings.client_id),
        )?))
    }

    fn standby_source(&self) -> Result<Box<dyn ChangelogSource>> {
        Ok(Box::new(changelog::WireStandbySource::new(
            &self.settings,
            &format!("{}-restore-consumer", self.settings.client_id),
        )?))
    }

    fn end_offset(&self, tp: &TopicPartition) -> Result<i64> {
        let (_, high) = retry_transient(
            &self.settings,
            || format!("end offset of {tp}"),
            |timeout| self.meta.fetch_watermarks(&tp.topic, tp.partition, timeout),
        )?;
        Ok(high)
    }

    fn committed_offset(&self, group: &str, tp: &TopicPartition) -> Result<Option<i64>> {
        Ok(self.committed_metadata_pair(group, tp)?.map(|(o, _)| o))
    }

    fn committed_metadata(&self, group: &str, tp: &TopicPartition) -> Result<Option<String>> {
        Ok(self.committed_metadata_pair(group, tp)?.map(|(_, m)| m))
    }
}

/// Kafka's DescribeConfigs resource type of a topic.
const RESOURCE_TOPIC: i8 = 2;

impl KafkaCluster {
    /// DescribeConfigs of `topic` (every config) on the first bootstrap server that
    /// answers, with this crate's own protocol client: librdkafka's admin API does not
    /// report per-resource errors. `None` for an unknown topic; [`WireError::UnsupportedApi`]
    /// when the broker has no DescribeConfigs. When no server answers (refused, closed,
    /// no answer in time) it is asked again after a backoff (100 ms doubling to 1 s) until
    /// `default.api.timeout.ms` has passed.
    fn describe_topic_configs(
        &self,
        topic: &str,
    ) -> std::result::Result<Option<BTreeMap<String, String>>, WireError> {
        let deadline = std::time::Instant::now() + self.settings.api_timeout;
        let mut backoff = Duration::from_millis(100);
        loop {
            let attempt = self
                .settings
                .request_timeout
                .min(deadline.saturating_duration_since(std::time::Instant::now()))
                .max(Duration::from_millis(100));
            match self.describe_topic_configs_once(topic, attempt) {
                Err(e) if e.retry_elsewhere() => {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    if left <= backoff {
                        return Err(e);
                    }
                    tracing::debug!(topic, error = %e, "DescribeConfigs failed; retrying after {backoff:?}");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                other => return other,
            }
        }
    }

    /// One round of [`KafkaCluster::describe_topic_configs`] over the bootstrap servers.
    fn describe_topic_configs_once(
        &self,
        topic: &str,
        timeout: Duration,
    ) -> std::result::Result<Option<BTreeMap<String, String>>, WireError> {
        use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
        use kafka_protocol::messages::DescribeConfigsRequest;
        use kafka_protocol::protocol::StrBytes;

        let client_id = format!("{}-admin", self.settings.client_id);
        let mut last = None;
        for server in &self.settings.bootstrap {
            let mut conn = match conn::Connection::connect(server, &client_id, timeout) {
                Ok(c) => c,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            let version = conn.version::<DescribeConfigsRequest>(0, 4)?;
            let request = DescribeConfigsRequest::default().with_resources(vec![
                DescribeConfigsResource::default()
                    .with_resource_type(RESOURCE_TOPIC)
                    .with_resource_name(StrBytes::from_string(topic.to_owned()))
                    .with_configuration_keys(None),
            ]);
            let response = match conn.call(request, version, timeout) {
                Ok(r) => r,
                Err(e) if e.retry_elsewhere() => {
                    last = Some(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let Some(result) = response.results.into_iter().next() else {
                return Err(WireError::Codec {
                    api: "DescribeConfigs",
                    reason: "no result for the topic".into(),
                });
            };
            if result.error_code == ResponseError::UnknownTopicOrPartition.code() {
                return Ok(None);
            }
            if result.error_code != 0 {
                return Err(WireError::kafka(
                    "DescribeConfigs",
                    result.error_code,
                    result.error_message.map(|m| m.to_string()),
                ));
            }
            return Ok(Some(
                result
                    .configs
                    .into_iter()
                    .filter_map(|c| Some((c.name.to_string(), c.value?.to_string())))
                    .collect(),
            ));
        }
        Err(last.unwrap_or_else(|| WireError::Io {
            address: String::new(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no bootstrap server"),
        }))
    }

    fn committed_metadata_pair(
        &self,
        group: &str,
        tp: &TopicPartition,
    ) -> Result<Option<(i64, String)>> {
        let mut client = self.group_client(group, &format!("{}-admin", self.settings.client_id));
        let mut got = client
            .committed(std::slice::from_ref(tp))
            .map_err(|e| e.into_streams(format!("committed offset of {tp} for group `{group}`")))?;
        Ok(got.remove(tp))
    }
}
