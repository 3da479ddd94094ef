//! Topic lifecycle on the [`Broker`]: validation, creation, deletion, growing partitions,
//! descriptions and config changes, and their persistence in `meta/topics.json` and each
//! partition's `partition.metadata` file.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};
use uuid::Uuid;

use super::types::{
    AlterConfigOp, ConfigEntry, ConfigSource, NewTopic, PartitionDescription, TopicDescription,
};
use super::{Broker, META_DIR, TOPICS_FILE};
use crate::config::{validate_topic_name, LogConfig};
use crate::error::{BrokerError, Result};
use crate::fsutil::{sync_dir, write_atomic};
use crate::log::{partition_dir_name, PartitionLog};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct TopicRecord {
    pub(super) name: String,
    pub(super) id: Uuid,
    pub(super) partitions: u32,
    pub(super) replication_factor: i16,
    pub(super) configs: BTreeMap<String, String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct MetadataFile {
    pub(super) version: u32,
    pub(super) topics: Vec<TopicRecord>,
}

pub(super) struct Topic {
    pub(super) record: RwLock<TopicRecord>,
    pub(super) logs: RwLock<Vec<Arc<PartitionLog>>>,
}

impl Broker {
    pub(super) fn persist_metadata(&self) -> Result<()> {
        let topics = self.inner.topics.read();
        let file = MetadataFile {
            version: 1,
            topics: topics.values().map(|t| t.record.read().clone()).collect(),
        };
        let bytes = serde_json::to_vec_pretty(&file).map_err(|e| BrokerError::Metadata {
            path: self.inner.config.data_dir.join(META_DIR),
            reason: e.to_string(),
        })?;
        write_atomic(
            &*self.inner.storage,
            &self.inner.config.data_dir.join(META_DIR).join(TOPICS_FILE),
            &bytes,
        )
    }

    /// Creates the log of a new partition (removing a stale directory a deleted topic of the
    /// same name may have left) and writes its `partition.metadata`.
    fn create_partition_log(
        &self,
        topic: &str,
        partition: i32,
        config: &Arc<LogConfig>,
        id: Uuid,
    ) -> Result<PartitionLog> {
        let pdir = self
            .inner
            .config
            .data_dir
            .join(partition_dir_name(topic, partition));
        let storage = &self.inner.storage;
        if storage.exists(&pdir) {
            warn!(dir = %pdir.display(), "removing a stale directory of a topic that no longer exists");
            storage
                .remove_dir_all(&pdir)
                .map_err(|e| BrokerError::io(&pdir, e))?;
        }
        let log = PartitionLog::open_with_storage(
            Arc::clone(storage),
            pdir.clone(),
            topic,
            partition,
            Arc::clone(config),
            true,
            0,
        )?;
        self.write_partition_metadata(&pdir, id)?;
        Ok(log)
    }

    pub(super) fn write_partition_metadata(&self, dir: &Path, id: Uuid) -> Result<()> {
        use base64::Engine;
        let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id.as_bytes());
        write_atomic(
            &*self.inner.storage,
            &dir.join("partition.metadata"),
            format!("version: 0\ntopic_id: {encoded}\n").as_bytes(),
        )
    }

    /// Checks everything [`Broker::create_topic`] checks, without creating anything
    /// (CreateTopics with `validate_only`).
    pub fn validate_new_topic(&self, new: &NewTopic) -> Result<()> {
        self.validate_topic(new, true)
    }

    fn validate_topic(&self, new: &NewTopic, single_node: bool) -> Result<()> {
        self.check_open()?;
        validate_topic_name(&new.name).map_err(BrokerError::InvalidTopic)?;
        if new.partitions == 0 {
            return Err(BrokerError::InvalidPartitions(
                "a topic needs at least one partition".into(),
            ));
        }
        if new.partitions > 100_000 {
            return Err(BrokerError::InvalidPartitions(format!(
                "{} partitions is more than this broker supports (100000)",
                new.partitions
            )));
        }
        let rf = if new.replication_factor == -1 {
            1
        } else {
            new.replication_factor
        };
        if single_node && rf != 1 {
            return Err(BrokerError::InvalidReplicationFactor {
                requested: i32::from(new.replication_factor),
                available: 1,
            });
        }
        self.inner.config.log_defaults.resolve(&new.configs)?;
        let topics = self.inner.topics.read();
        if topics.contains_key(&new.name) {
            return Err(BrokerError::TopicAlreadyExists(new.name.clone()));
        }
        let norm = new.name.replace('.', "_");
        if let Some(other) = topics.keys().find(|t| t.replace('.', "_") == norm) {
            return Err(BrokerError::InvalidTopic(format!(
                "topic `{}` collides with existing topic `{other}` ('.' and '_' are interchangeable in metric names)",
                new.name
            )));
        }
        Ok(())
    }

    /// Creates a topic. Errors: illegal name, a name that exists (or collides with one after
    /// Kafka's `.`/`_` normalisation), zero partitions, a replication factor above the number
    /// of brokers, unknown or ill-typed configs.
    pub fn create_topic(&self, new: NewTopic) -> Result<Uuid> {
        self.validate_new_topic(&new)?;
        self.create_topic_locked(new, Uuid::new_v4())
    }

    /// Creates the local replica of a topic the cluster's controller created: its id,
    /// partitions, replication factor and configs are the controller's (the replication factor
    /// is not checked against this node). Everything else is checked as by
    /// [`Broker::create_topic`].
    pub fn create_topic_replica(&self, new: NewTopic, id: Uuid) -> Result<()> {
        self.validate_topic(&new, false)?;
        self.create_topic_locked(new, id).map(|_| ())
    }

    fn create_topic_locked(&self, new: NewTopic, id: Uuid) -> Result<Uuid> {
        let rf = if new.replication_factor == -1 {
            1
        } else {
            new.replication_factor
        };
        let log_config = Arc::new(self.inner.config.log_defaults.resolve(&new.configs)?);
        let _guard = self.inner.meta_lock.lock();
        {
            let topics = self.inner.topics.read();
            if topics.contains_key(&new.name) {
                return Err(BrokerError::TopicAlreadyExists(new.name));
            }
            let norm = new.name.replace('.', "_");
            if let Some(other) = topics.keys().find(|t| t.replace('.', "_") == norm) {
                return Err(BrokerError::InvalidTopic(format!(
                    "topic `{}` collides with existing topic `{other}` ('.' and '_' are interchangeable in metric names)",
                    new.name
                )));
            }
        }
        let mut logs = Vec::with_capacity(new.partitions as usize);
        for p in 0..new.partitions as i32 {
            let log = self.create_partition_log(&new.name, p, &log_config, id)?;
            logs.push(Arc::new(log));
        }
        sync_dir(&*self.inner.storage, &self.inner.config.data_dir)?;
        let record = TopicRecord {
            name: new.name.clone(),
            id,
            partitions: new.partitions,
            replication_factor: rf,
            configs: new.configs,
        };
        self.inner.topics.write().insert(
            new.name.clone(),
            Arc::new(Topic {
                record: RwLock::new(record),
                logs: RwLock::new(logs),
            }),
        );
        self.persist_metadata()?;
        // A re-created topic must not inherit an old recovery point for its partitions.
        self.write_recovery_checkpoint()?;
        info!(topic = %new.name, partitions = new.partitions, %id, "created topic");
        Ok(id)
    }

    /// Deletes a topic and its data.
    pub fn delete_topic(&self, name: &str) -> Result<()> {
        self.check_open()?;
        let _guard = self.inner.meta_lock.lock();
        let topic = self.inner.topics.write().remove(name).ok_or_else(|| {
            BrokerError::UnknownTopicOrPartition {
                topic: name.to_string(),
                partition: -1,
            }
        })?;
        self.persist_metadata()?;
        let id = topic.record.read().id;
        for log in topic.logs.read().iter() {
            log.mark_deleted();
            let doomed = self.inner.config.data_dir.join(format!(
                "{}.{}-delete",
                partition_dir_name(name, log.partition()),
                id.simple()
            ));
            let storage = &self.inner.storage;
            storage
                .rename(log.dir(), &doomed)
                .map_err(|e| BrokerError::io(log.dir(), e))?;
            storage
                .remove_dir_all(&doomed)
                .map_err(|e| BrokerError::io(&doomed, e))?;
        }
        self.write_recovery_checkpoint()?;
        info!(topic = name, "deleted topic");
        Ok(())
    }

    /// Grows a topic to `total` partitions (Kafka's CreatePartitions; shrinking is an error).
    pub fn create_partitions(&self, name: &str, total: u32) -> Result<()> {
        let topic = self.topic(name)?;
        let _guard = self.inner.meta_lock.lock();
        let current = topic.record.read().partitions;
        if total > 100_000 {
            return Err(BrokerError::InvalidPartitions(format!(
                "{total} partitions is more than this broker supports (100000)"
            )));
        }
        if total <= current {
            return Err(BrokerError::InvalidPartitions(format!(
                "topic `{name}` has {current} partitions; the new count must be larger, not {total}"
            )));
        }
        let (id, configs) = {
            let r = topic.record.read();
            (r.id, r.configs.clone())
        };
        let log_config = Arc::new(self.inner.config.log_defaults.resolve(&configs)?);
        let mut new_logs = Vec::new();
        for p in current as i32..total as i32 {
            let log = self.create_partition_log(name, p, &log_config, id)?;
            new_logs.push(Arc::new(log));
        }
        topic.logs.write().extend(new_logs);
        topic.record.write().partitions = total;
        self.persist_metadata()
    }

    /// Topic names, sorted (internal topics included).
    pub fn list_topics(&self) -> Vec<String> {
        self.inner.topics.read().keys().cloned().collect()
    }

    /// Whether a topic exists.
    pub fn topic_exists(&self, name: &str) -> bool {
        self.inner.topics.read().contains_key(name)
    }

    /// Number of partitions of a topic.
    pub fn partition_count(&self, name: &str) -> Result<u32> {
        Ok(self.topic(name)?.record.read().partitions)
    }

    /// Describes a topic: id, partitions with offsets, and every config with its source.
    pub fn describe_topic(&self, name: &str) -> Result<TopicDescription> {
        let topic = self.topic(name)?;
        let record = topic.record.read().clone();
        let resolved = self.inner.config.log_defaults.resolve(&record.configs)?;
        let node = self.inner.config.node_id;
        let partitions = topic
            .logs
            .read()
            .iter()
            .map(|l| PartitionDescription {
                partition: l.partition(),
                leader: node,
                replicas: vec![node],
                isr: vec![node],
                offsets: l.offsets(),
            })
            .collect();
        let configs = crate::config::TOPIC_CONFIG_KEYS
            .iter()
            .map(|k| ConfigEntry {
                name: (*k).to_string(),
                value: resolved.get(k).unwrap_or_default(),
                source: if record.configs.contains_key(*k) {
                    ConfigSource::TopicOverride
                } else {
                    ConfigSource::Default
                },
            })
            .collect();
        Ok(TopicDescription {
            name: record.name.clone(),
            topic_id: record.id,
            internal: record.name.starts_with("__"),
            replication_factor: record.replication_factor,
            partitions,
            configs,
        })
    }

    /// The config overrides of a topic, as set (Kafka's `DYNAMIC_TOPIC_CONFIG` entries).
    pub fn topic_configs(&self, name: &str) -> Result<BTreeMap<String, String>> {
        Ok(self.topic(name)?.record.read().configs.clone())
    }

    /// Applies incremental config changes to a topic (all validated before any is applied).
    pub fn alter_topic_configs(&self, name: &str, ops: &[AlterConfigOp]) -> Result<()> {
        let topic = self.topic(name)?;
        let _guard = self.inner.meta_lock.lock();
        let mut configs = topic.record.read().configs.clone();
        for op in ops {
            match op {
                AlterConfigOp::Set(k, v) => {
                    configs.insert(k.clone(), v.clone());
                }
                AlterConfigOp::Delete(k) => {
                    if !crate::config::TOPIC_CONFIG_KEYS.contains(&k.as_str()) {
                        return Err(crate::config::ConfigError::UnknownKey(k.clone()).into());
                    }
                    configs.remove(k);
                }
            }
        }
        self.replace_configs_locked(&topic, configs)
    }

    /// Replaces all of a topic's overrides (Kafka's legacy AlterConfigs semantics).
    pub fn set_topic_configs(&self, name: &str, configs: BTreeMap<String, String>) -> Result<()> {
        let topic = self.topic(name)?;
        let _guard = self.inner.meta_lock.lock();
        self.replace_configs_locked(&topic, configs)
    }

    fn replace_configs_locked(
        &self,
        topic: &Topic,
        configs: BTreeMap<String, String>,
    ) -> Result<()> {
        let resolved: LogConfig = self.inner.config.log_defaults.resolve(&configs)?;
        let resolved = Arc::new(resolved);
        topic.record.write().configs = configs;
        for log in topic.logs.read().iter() {
            log.set_config(Arc::clone(&resolved));
        }
        self.persist_metadata()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BrokerConfig;

    #[test]
    fn a_replica_topic_keeps_the_controllers_id_and_replication_factor() {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::open(BrokerConfig::new(dir.path())).unwrap();
        let id = Uuid::new_v4();
        let mut new = NewTopic::new("replicated", 2);
        new.replication_factor = 3;
        // A single node refuses replication factor 3 ...
        assert!(matches!(
            broker.create_topic(new.clone()),
            Err(BrokerError::InvalidReplicationFactor { .. })
        ));
        // ... but hosts a replica of a topic the controller created with it.
        broker.create_topic_replica(new.clone(), id).unwrap();
        assert_eq!(broker.topic_id("replicated").unwrap(), id);
        assert_eq!(broker.partition_count("replicated").unwrap(), 2);
        assert!(matches!(
            broker.create_topic_replica(new, Uuid::new_v4()),
            Err(BrokerError::TopicAlreadyExists(_))
        ));
        broker.shutdown().unwrap();
        drop(broker);
        let broker = Broker::open(BrokerConfig::new(dir.path())).unwrap();
        assert_eq!(
            broker.topic_id("replicated").unwrap(),
            id,
            "the id survives a restart"
        );
        broker.shutdown().unwrap();
    }
}
