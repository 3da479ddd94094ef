//! What the server needs to know and do when the broker is one node of a cluster: the
//! cluster's view of brokers and partitions ([`ClusterView`]), topic administration forwarded
//! to the controller ([`ClusterAdmin`]) and the [`ReplicaManager`]. The cluster layer
//! implements the traits; without [`ClusterHooks`] the server is the single-node broker it
//! always was.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, CreatePartitionsRequest, CreatePartitionsResponse,
    CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    ElectLeadersRequest, ElectLeadersResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
};
use uuid::Uuid;

use crate::replica::{BoxFuture, ReplicaManager};

/// One listener of a broker (Kafka's `advertised.listeners` entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerEndpoint {
    /// The listener name (`PLAINTEXT`, `INTERNAL`, …).
    pub listener: String,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: i32,
}

/// A registered broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// `node.id`.
    pub id: i32,
    /// `broker.rack`.
    pub rack: Option<String>,
    /// Its advertised listeners.
    pub endpoints: Vec<ListenerEndpoint>,
    /// Fenced brokers are left out of Metadata.
    pub fenced: bool,
}

/// A partition's assignment and state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// Partition index.
    pub partition: i32,
    /// Leader broker id, -1 when leaderless.
    pub leader: i32,
    /// Leader epoch.
    pub leader_epoch: i32,
    /// Assigned replicas.
    pub replicas: Vec<i32>,
    /// In-sync replicas.
    pub isr: Vec<i32>,
    /// Replicas on brokers whose log directory is offline.
    pub offline_replicas: Vec<i32>,
}

/// A topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// Name.
    pub name: String,
    /// Topic id.
    pub topic_id: Uuid,
    /// Internal topics (`__consumer_offsets`, `__transaction_state`).
    pub internal: bool,
    /// Partitions in index order.
    pub partitions: Vec<PartitionInfo>,
}

/// The cluster as the broker last learned it from the controller.
pub trait ClusterView: Send + Sync + 'static {
    /// The cluster id.
    fn cluster_id(&self) -> String;
    /// The active controller's id (-1 when unknown).
    fn controller_id(&self) -> i32;
    /// Registered brokers.
    fn brokers(&self) -> Vec<BrokerInfo>;
    /// All topics.
    fn topics(&self) -> Vec<TopicInfo>;
    /// One topic by name.
    fn topic(&self, name: &str) -> Option<TopicInfo>;
    /// One topic by id.
    fn topic_by_id(&self, id: Uuid) -> Option<TopicInfo>;
    /// The dynamic config overrides of topic `name` (Kafka's `DYNAMIC_TOPIC_CONFIG` entries),
    /// as the cluster's metadata holds them; `None` when the topic does not exist.
    fn topic_configs(&self, name: &str) -> Option<BTreeMap<String, String>>;
}

/// Topic administration forwarded to the controller; per-topic results carry Kafka error
/// codes.
pub trait ClusterAdmin: Send + Sync + 'static {
    /// CreateTopics.
    fn create_topics(
        &self,
        request: CreateTopicsRequest,
    ) -> BoxFuture<'static, CreateTopicsResponse>;
    /// DeleteTopics.
    fn delete_topics(
        &self,
        request: DeleteTopicsRequest,
    ) -> BoxFuture<'static, DeleteTopicsResponse>;
    /// CreatePartitions.
    fn create_partitions(
        &self,
        request: CreatePartitionsRequest,
    ) -> BoxFuture<'static, CreatePartitionsResponse>;
    /// ElectLeaders (preferred or unclean elections), advertised only in cluster mode.
    fn elect_leaders(
        &self,
        request: ElectLeadersRequest,
    ) -> BoxFuture<'static, ElectLeadersResponse>;
    /// AlterConfigs (replace every override of each resource).
    fn alter_configs(
        &self,
        request: AlterConfigsRequest,
    ) -> BoxFuture<'static, AlterConfigsResponse>;
    /// IncrementalAlterConfigs (SET, DELETE, APPEND, SUBTRACT).
    fn incremental_alter_configs(
        &self,
        request: IncrementalAlterConfigsRequest,
    ) -> BoxFuture<'static, IncrementalAlterConfigsResponse>;
    /// Asks the controller to create the internal topic `name` (`__consumer_offsets` or
    /// `__transaction_state`) with the cluster's settings for it (`offsets.topic.*`,
    /// `transaction.state.log.*`), as Kafka does on the first FindCoordinator for it. Returns
    /// at once; a creation already under way is not asked again.
    fn create_internal_topic(&self, name: &str);
}

/// The cluster side of a server (see [`crate::KafkaServer::start_with_cluster`]).
#[derive(Clone)]
pub struct ClusterHooks {
    /// The listener name of the server (Metadata answers with the brokers' endpoints of this
    /// listener).
    pub listener_name: String,
    /// The cluster view.
    pub view: Arc<dyn ClusterView>,
    /// Topic administration (without it, topic admin requests are answered NOT_CONTROLLER
    /// per topic and topics are not auto-created).
    pub admin: Option<Arc<dyn ClusterAdmin>>,
    /// The replica manager serving Produce, Fetch and ListOffsets.
    pub replicas: ReplicaManager,
}

impl std::fmt::Debug for ClusterHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterHooks")
            .field("listener_name", &self.listener_name)
            .field("replicas", &self.replicas)
            .finish_non_exhaustive()
    }
}
