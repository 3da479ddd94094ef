//! Interactive queries on a running application (Kafka's `KafkaStreams#store`,
//! `metadataForAllStreamsClients`, `streamsMetadataForStore`, `queryMetadataForKey`),
//! and the feed of the metadata state.

use super::*;
use crate::query::metadata::{KeyQueryMetadata, StoreTopics, StreamsMetadata};
use crate::query::{QueryTarget, StoreProvider, StoreQueryParameters};
use crate::serde::Serde;
use crate::store::SharedTaskStore;

/// Kafka's name of a state (`KafkaStreams.State`), for errors.
fn state_name(state: StreamsState) -> &'static str {
    match state {
        StreamsState::Created => "CREATED",
        StreamsState::Rebalancing => "REBALANCING",
        StreamsState::Running => "RUNNING",
        StreamsState::PendingShutdown => "PENDING_SHUTDOWN",
        StreamsState::NotRunning => "NOT_RUNNING",
        StreamsState::Error => "ERROR",
    }
}

/// Kafka's `validateIsRunningOrRebalancing`.
fn running_or_rebalancing(state: StreamsState) -> Result<()> {
    match state {
        StreamsState::Running | StreamsState::Rebalancing => Ok(()),
        StreamsState::Created => Err(StreamsError::StreamsNotStarted),
        other => Err(StreamsError::StreamsNotRunning {
            state: state_name(other).to_owned(),
        }),
    }
}

impl StoreProvider for AppShared {
    fn stores(
        &self,
        name: &str,
        partition: Option<i32>,
        stale: bool,
    ) -> Result<Vec<SharedTaskStore>> {
        let state = *self.state.lock();
        running_or_rebalancing(state)?;
        if state == StreamsState::Rebalancing && !stale {
            return Err(StreamsError::StateStoreMigrated {
                store: name.to_owned(),
                reason: "the application is REBALANCING, not RUNNING (enable stale stores to \
                         read the tasks still open)"
                    .to_owned(),
            });
        }
        let found = self.queryable.stores(name, partition, stale);
        if found.is_empty() {
            return Err(match partition {
                Some(partition) => StreamsError::InvalidStateStorePartition {
                    store: name.to_owned(),
                    partition,
                },
                None => StreamsError::StateStoreMigrated {
                    store: name.to_owned(),
                    reason: "no task of this instance holds it".to_owned(),
                },
            });
        }
        Ok(found.into_iter().map(|(_, s)| s).collect())
    }
}

impl AppShared {
    /// The topology facts of the metadata: each store's physical source topics (known
    /// once `start` resolved them), and the global stores.
    pub(super) fn store_topics(&self) -> StoreTopics {
        let mut topics = StoreTopics::default();
        for r in self.resolved.lock().iter() {
            for store in &r.sub.stores {
                topics
                    .sources
                    .entry(store.clone())
                    .or_default()
                    .extend(r.inputs.keys().cloned());
            }
        }
        topics.globals = self
            .topology
            .globals
            .iter()
            .map(|g| g.store.name().to_owned())
            .collect();
        topics
    }

    /// THE METADATA FEED — the one place that feeds [`StreamsMetadataState`]
    /// (`crate::query::metadata`), as Kafka's `StreamsMetadataState.onChange` called from
    /// the assignor's `onAssignment`: a stream thread calls it with the
    /// [`AssignmentEvent::PartitionsByHost`] maps of each assignment it receives (every
    /// member's `application.server` with the input partitions of its active and of its
    /// standby tasks, the same on every member of a generation), so that every instance
    /// names the holder of any key. The partition counts of the source topics come from
    /// the topics `start` resolved.
    pub(super) fn on_partitions_by_host(&self, active: HostPartitions, standby: HostPartitions) {
        let mut partitions_by_topic = BTreeMap::new();
        for r in self.resolved.lock().iter() {
            for topic in r.inputs.keys() {
                partitions_by_topic.insert(topic.clone(), r.partitions);
            }
        }
        let mut metadata = self.metadata.lock();
        metadata.set_topics(self.store_topics());
        metadata.on_change(&active, &standby, partitions_by_topic);
        *self.partitions_by_host.lock() = (active, standby);
    }
}

impl StreamsApp {
    /// A read-only view of a local store (Kafka's `KafkaStreams#store`), spanning every
    /// local task's instance of it (only those of partition `with_partition` if set;
    /// standby copies too with `enable_stale_stores`). Reads go through the record
    /// cache and are safe while the stream threads run; each call of the returned handle
    /// finds the current instances again.
    ///
    /// Errors: [`StreamsError::StreamsNotStarted`] before `start`,
    /// [`StreamsError::StreamsNotRunning`] once closing or failed,
    /// [`StreamsError::UnknownStateStore`] for a name the topology does not have,
    /// [`StreamsError::InvalidStoreType`] for a store of another type, a missing serde
    /// ([`StreamsError::MissingSerde`]). Calls of the handle can also fail with
    /// [`StreamsError::StateStoreMigrated`] (rebalancing, or no local task holds the
    /// store: retry after finding it with [`StreamsApp::query_metadata_for_key`]) and
    /// [`StreamsError::InvalidStateStorePartition`]. Global stores cannot be queried
    /// this way yet ([`StreamsError::IllegalState`]).
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use broker_embedded::{Broker, BrokerConfig, NewTopic, ProduceRecord};
    /// use streams_core::{EmbeddedCluster, Processor, ProcessorContext, QueryableStoreTypes,
    ///     Record, Source, StoreBuilder, StoreQueryParameters, StreamsApp, StreamsConfig,
    ///     StreamsError, StreamsState, Topology};
    ///
    /// /// Counts records per key in store `counts`.
    /// struct Count;
    /// impl Processor<String, String, String, i64> for Count {
    ///     fn process(&mut self, ctx: &mut ProcessorContext<'_, String, i64>, r: Record<String, String>) -> streams_core::Result<()> {
    ///         let mut store = ctx.key_value_store::<String, i64>("counts")?;
    ///         let n = store.get(&r.key)?.unwrap_or(0) + 1;
    ///         store.put(&r.key, &n)
    ///     }
    /// }
    ///
    /// let dir = tempfile::tempdir()?;
    /// let broker = Broker::open(BrokerConfig::new(dir.path().join("log")))?;
    /// broker.create_topic(NewTopic::new("words", 2))?;
    /// for word in ["a", "b", "a"] {
    ///     // The partition Java's default partitioner picks for the key.
    ///     let partition = broker_embedded::partition_for_key(word.as_bytes(), 2).unwrap_or(0);
    ///     broker.produce("words", partition as i32, &[ProduceRecord::new(word, "")])?;
    /// }
    /// let mut topology = Topology::new();
    /// topology.add_source(Source::<String, String>::new("in", ["words"]))?;
    /// topology.add_processor("count", || Count, &["in"])?;
    /// topology.add_state_store(StoreBuilder::key_value("counts"), &["count"])?;
    /// let config = StreamsConfig::new("iq-doc")
    ///     .state_dir(dir.path().join("state"))
    ///     .commit_interval(Duration::from_millis(100));
    /// let mut app = StreamsApp::new(topology, config, EmbeddedCluster::new(broker.clone()))?;
    /// let params = || StoreQueryParameters::from_name_and_type("counts",
    ///     QueryableStoreTypes::key_value::<String, i64>());
    /// assert!(matches!(app.store(params()), Err(StreamsError::StreamsNotStarted)));
    /// app.start()?;
    /// assert!(app.wait_for_state(StreamsState::Running, Duration::from_secs(30)));
    /// assert!(app.wait_until_caught_up(Duration::from_secs(30))?);
    /// let counts = app.store(params())?;
    /// assert_eq!(counts.get(&"a".to_owned())?, Some(2));
    /// assert_eq!(counts.get(&"zzz".to_owned())?, None);
    /// let mut all = counts.all()?.collect::<streams_core::Result<Vec<_>>>()?;
    /// all.sort();
    /// assert_eq!(all, vec![("a".to_owned(), 2), ("b".to_owned(), 1)]);
    /// let unknown = StoreQueryParameters::from_name_and_type("nope",
    ///     QueryableStoreTypes::key_value::<String, i64>());
    /// assert!(matches!(app.store(unknown), Err(StreamsError::UnknownStateStore(_))));
    /// let as_window = StoreQueryParameters::from_name_and_type("counts",
    ///     QueryableStoreTypes::window::<String, i64>());
    /// assert!(matches!(app.store(as_window), Err(StreamsError::InvalidStoreType { .. })));
    /// app.close();
    /// assert!(matches!(counts.get(&"a".to_owned()), Err(StreamsError::StreamsNotRunning { .. })));
    /// # Ok(()) }
    /// ```
    pub fn store<S>(&self, params: StoreQueryParameters<S>) -> Result<S> {
        running_or_rebalancing(self.state())?;
        let shared = &self.shared;
        let spec = match shared.topology.stores.get(&params.name) {
            Some(spec) => spec.clone(),
            None if shared
                .topology
                .globals
                .iter()
                .any(|g| g.store.name() == params.name) =>
            {
                return Err(StreamsError::IllegalState(format!(
                    "store `{}` is a global store; interactive queries of global stores are \
                     not supported yet",
                    params.name
                )))
            }
            None => return Err(StreamsError::UnknownStateStore(params.name)),
        };
        let provider: Arc<dyn StoreProvider> = Arc::clone(&self.shared) as Arc<dyn StoreProvider>;
        params.store_type.create(QueryTarget {
            topic: crate::names::changelog_topic(&shared.config.application_id, &params.name),
            name: params.name,
            spec,
            registry: shared.config.serdes.clone(),
            provider,
            partition: params.partition,
            stale: params.stale,
        })
    }

    /// Every instance of the application with its endpoint, stores and partitions
    /// (Kafka's `metadataForAllStreamsClients`), from the latest assignment; empty when no
    /// instance has `application.server` set. Every instance returns the same list (the
    /// assignment's partitions-by-host maps, as each member received them).
    pub fn all_metadata(&self) -> Result<Vec<StreamsMetadata>> {
        running_or_rebalancing(self.state())?;
        Ok(self.shared.metadata.lock().all_metadata())
    }

    /// The instances holding an active or standby task of `store` (Kafka's
    /// `streamsMetadataForStore`); [`StreamsError::UnknownStateStore`] for a name the
    /// topology does not have.
    pub fn streams_metadata_for_store(&self, store: &str) -> Result<Vec<StreamsMetadata>> {
        running_or_rebalancing(self.state())?;
        let metadata = self.shared.metadata.lock();
        if !self.has_store(store) {
            return Err(StreamsError::UnknownStateStore(store.to_owned()));
        }
        Ok(metadata.all_metadata_for_store(store))
    }

    /// This instance as the latest assignment describes it, if known.
    pub fn local_metadata(&self) -> Result<Option<StreamsMetadata>> {
        running_or_rebalancing(self.state())?;
        Ok(self.shared.metadata.lock().local_metadata())
    }

    fn has_store(&self, store: &str) -> bool {
        let t = &self.shared.topology;
        t.stores.contains_key(store) || t.globals.iter().any(|g| g.store.name() == store)
    }

    /// Which instance holds `key` of `store` (Kafka's `queryMetadataForKey`): the key
    /// serialized with `key_serde` is hashed as Java's default partitioner does
    /// (`murmur2 & 0x7fffffff % partitions`) over the partitions of the store's source
    /// topics, and the instance whose active tasks read that partition is named, with the
    /// instances holding standby copies. [`KeyQueryMetadata::not_available`] before the
    /// first assignment; [`StreamsError::UnknownStateStore`] for an unknown store.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use broker_embedded::{Broker, BrokerConfig, NewTopic};
    /// use streams_core::{EmbeddedCluster, HostInfo, Processor, ProcessorContext, Record,
    ///     Source, StoreBuilder, StreamsApp, StreamsConfig, StreamsState, StringSerde, Topology};
    ///
    /// struct Keep;
    /// impl Processor<String, String, String, String> for Keep {
    ///     fn process(&mut self, ctx: &mut ProcessorContext<'_, String, String>, r: Record<String, String>) -> streams_core::Result<()> {
    ///         ctx.key_value_store::<String, String>("latest")?.put(&r.key, &r.value)
    ///     }
    /// }
    /// let dir = tempfile::tempdir()?;
    /// let broker = Broker::open(BrokerConfig::new(dir.path().join("log")))?;
    /// broker.create_topic(NewTopic::new("events", 3))?;
    /// let mut topology = Topology::new();
    /// topology.add_source(Source::<String, String>::new("in", ["events"]))?;
    /// topology.add_processor("keep", || Keep, &["in"])?;
    /// topology.add_state_store(StoreBuilder::key_value("latest").in_memory(), &["keep"])?;
    /// let config = StreamsConfig::new("iq-meta-doc")
    ///     .state_dir(dir.path().join("state"))
    ///     .application_server("localhost:7070")?;
    /// let mut app = StreamsApp::new(topology, config, EmbeddedCluster::new(broker.clone()))?;
    /// app.start()?;
    /// assert!(app.wait_for_state(StreamsState::Running, Duration::from_secs(30)));
    /// let md = app.query_metadata_for_key("latest", &"truck-7".to_owned(), &StringSerde)?;
    /// assert_eq!(Some(md.partition as u32), broker_embedded::partition_for_key(b"truck-7", 3));
    /// assert_eq!(md.active_host, HostInfo::new("localhost", 7070));
    /// let all = app.all_metadata()?;
    /// assert_eq!(all.len(), 1);
    /// assert_eq!(all[0].topic_partitions.len(), 3);
    /// assert!(all[0].state_store_names.contains("latest"));
    /// app.close();
    /// # Ok(()) }
    /// ```
    pub fn query_metadata_for_key<K: 'static>(
        &self,
        store: &str,
        key: &K,
        key_serde: &dyn Serde<K>,
    ) -> Result<KeyQueryMetadata> {
        running_or_rebalancing(self.state())?;
        let metadata = self.shared.metadata.lock();
        let found =
            metadata.key_query_metadata_for_partition(
                store,
                |topic, partitions| match key_serde.serialize(topic, key) {
                    Ok(Some(bytes)) => Ok(default_partition(&bytes, partitions)),
                    Ok(None) => Err(StreamsError::IllegalState(format!(
                        "a key of store `{store}` serialized to null has no partition"
                    ))),
                    Err(source) => Err(StreamsError::Serde {
                        what: format!("key of store `{store}`"),
                        topic: topic.to_owned(),
                        source,
                    }),
                },
            )?;
        match found {
            Some(md) => Ok(md),
            None if self.has_store(store) => Ok(KeyQueryMetadata::not_available()),
            None => Err(StreamsError::UnknownStateStore(store.to_owned())),
        }
    }
}
