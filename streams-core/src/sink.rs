//! Sink nodes: serializing records and handing them to the record collector.

use std::any::Any;

use crate::collector::OutgoingRecord;
use crate::error::{Result, StreamsError};
use crate::record::InFlight;
use crate::serde::SharedSerde;
use crate::task::TaskContext;
use crate::topology::{StreamPartitioner, TopicNameExtractor};

pub(crate) trait ErasedSink: Send {
    fn send(&mut self, task: &mut TaskContext, node: usize, record: InFlight<'_>) -> Result<()>;
}

pub(crate) struct TypedSink<K, V> {
    pub(crate) topic: Option<String>,
    pub(crate) extractor: Option<TopicNameExtractor<K, V>>,
    pub(crate) key_serde: SharedSerde<K>,
    pub(crate) value_serde: SharedSerde<V>,
    pub(crate) partitioner: Option<StreamPartitioner<K, V>>,
    /// Drop records whose key serializes to null (repartition sinks).
    pub(crate) skip_null_keys: bool,
    /// The fixed topic's name in the cluster, once resolved.
    pub(crate) physical: Option<String>,
}

impl<K, V> ErasedSink for TypedSink<K, V>
where
    K: Any + Send + Sync + Clone,
    V: Any + Send + Sync + Clone,
{
    fn send(&mut self, task: &mut TaskContext, node: usize, record: InFlight<'_>) -> Result<()> {
        let record = record
            .take::<K, V>()
            .map_err(|m| StreamsError::Processing {
                task: task.task_id.to_string(),
                node: task.node_name(node).to_owned(),
                message: format!("sink got {} where {} was expected", m.actual, m.expected),
            })?;
        let topic = match (&self.topic, &self.extractor) {
            (Some(t), _) => match &self.physical {
                Some(p) => p.clone(),
                None => {
                    let p = task.physical_topic(t);
                    self.physical = Some(p.clone());
                    p
                }
            },
            (None, Some(f)) => task.physical_topic(&f(&record.key, &record.value)),
            (None, None) => {
                return Err(StreamsError::IllegalState(format!(
                    "sink `{}` has neither a topic nor a topic extractor",
                    task.node_name(node)
                )))
            }
        };
        let key = self
            .key_serde
            .serialize(&topic, &record.key)
            .map_err(|source| StreamsError::Serde {
                what: format!("key at sink `{}`", task.node_name(node)),
                topic: topic.clone(),
                source,
            })?;
        if key.is_none() && self.skip_null_keys {
            // Kafka drops null keys before a repartition topic (its filter node); it is a
            // drop all the same, so it is logged and counted rather than silent.
            let (topic_in, partition, offset) =
                task.metadata.as_ref().map_or((None, -1, -1), |m| {
                    (Some(m.topic.as_str()), m.partition, m.offset)
                });
            tracing::warn!(
                task = %task.task_id,
                node = task.node_name(node),
                repartition_topic = %topic,
                topic = topic_in,
                partition,
                offset,
                "Skipping record due to null key: it cannot be repartitioned"
            );
            task.record_dropped();
            return Ok(());
        }
        let value = self
            .value_serde
            .serialize(&topic, &record.value)
            .map_err(|source| StreamsError::Serde {
                what: format!("value at sink `{}`", task.node_name(node)),
                topic: topic.clone(),
                source,
            })?;
        let partition = match &self.partitioner {
            Some(p) => {
                let n = task.collector.lock().partition_count(&topic)?;
                match p(&topic, &record.key, &record.value, n) {
                    Some(x) if (0..n).contains(&x) => Some(x),
                    Some(x) => {
                        return Err(StreamsError::Processing {
                            task: task.task_id.to_string(),
                            node: task.node_name(node).to_owned(),
                            message: format!(
                                "partitioner chose partition {x} of topic `{topic}`, which has {n}"
                            ),
                        })
                    }
                    None => None,
                }
            }
            None => None,
        };
        task.collector.lock().send(OutgoingRecord {
            topic,
            partition,
            key,
            value,
            timestamp: record.timestamp,
            headers: record.headers,
        })
    }
}
