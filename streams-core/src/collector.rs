//! The record collector: where sinks and change-logging stores send records, and what
//! remembers the offsets they were written at.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;
use state_store::{ChangelogSink, StoreError, TopicPartition};

use crate::client::ConsumerGroupMetadata;
use crate::error::{Result, StreamsError};
use crate::record::Header;
use crate::task_manager::OffsetsWithMetadata;

/// A record on its way to a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OutgoingRecord {
    /// Physical topic name.
    pub(crate) topic: String,
    /// Partition, or `None` for the default partitioner.
    pub(crate) partition: Option<i32>,
    pub(crate) key: Option<Vec<u8>>,
    pub(crate) value: Option<Vec<u8>>,
    pub(crate) timestamp: i64,
    pub(crate) headers: Vec<Header>,
}

/// Sends records for the tasks of one stream thread (or of the test driver).
pub(crate) trait RecordCollector: Send {
    /// Partitions of `topic` (fails if it does not exist).
    fn partition_count(&mut self, topic: &str) -> Result<i32>;
    /// Queues a record (may send right away).
    fn send(&mut self, record: OutgoingRecord) -> Result<()>;
    /// Sends what is queued without waiting for acknowledgements (so downstream
    /// sub-topologies see it soon).
    fn send_pending(&mut self) -> Result<()>;
    /// Sends everything queued and waits for the acknowledgements.
    fn flush(&mut self) -> Result<()>;
    /// Offset of the last acknowledged record per partition written so far.
    fn produced_offsets(&self) -> &BTreeMap<TopicPartition, i64>;
    /// Under exactly-once: sends what is queued, adds `offsets` to the open transaction as
    /// the member `group` describes, and commits the transaction (one is begun for the
    /// offsets if nothing was sent since the last commit). Collectors without transactions
    /// refuse.
    fn commit_transaction(
        &mut self,
        offsets: &OffsetsWithMetadata,
        group: &ConsumerGroupMetadata,
    ) -> Result<()> {
        let _ = (offsets, group);
        Err(StreamsError::IllegalState(
            "commit_transaction on a collector without transactions".into(),
        ))
    }
    /// Under exactly-once: drops what is queued and aborts the open transaction. A
    /// `fenced` producer (or one that cannot abort) is replaced by a new one with the same
    /// transactional id, whose initialization aborts the transaction on the coordinator.
    /// Collectors without transactions refuse.
    fn abort_transaction(&mut self, fenced: bool) -> Result<()> {
        let _ = fenced;
        Err(StreamsError::IllegalState(
            "abort_transaction on a collector without transactions".into(),
        ))
    }
}

pub(crate) type SharedCollector = Arc<Mutex<Box<dyn RecordCollector>>>;

/// The Java client's default partitioner for keyed records: murmur2 of the key bytes.
pub(crate) fn default_partition(key: &[u8], partitions: i32) -> i32 {
    (broker_embedded::murmur2(key) & 0x7fff_ffff) % partitions.max(1)
}

/// A change-logging store's sink: writes to `<application.id>-<store>-changelog`, in the
/// partition of the task that owns the store.
pub(crate) struct CollectorChangelog {
    pub(crate) collector: SharedCollector,
    pub(crate) partition: TopicPartition,
}

impl ChangelogSink for CollectorChangelog {
    fn send(
        &mut self,
        key: &[u8],
        value: Option<&[u8]>,
        timestamp: i64,
    ) -> state_store::Result<()> {
        self.collector
            .lock()
            .send(OutgoingRecord {
                topic: self.partition.topic.clone(),
                partition: Some(self.partition.partition),
                key: Some(key.to_vec()),
                value: value.map(<[u8]>::to_vec),
                timestamp,
                headers: Vec::new(),
            })
            .map_err(|e| StoreError::InvalidArgument(format!("changelog write failed: {e}")))
    }

    fn send_with_headers(
        &mut self,
        key: &[u8],
        value: Option<&[u8]>,
        timestamp: i64,
        headers: &[(&str, &[u8])],
    ) -> state_store::Result<()> {
        self.collector
            .lock()
            .send(OutgoingRecord {
                topic: self.partition.topic.clone(),
                partition: Some(self.partition.partition),
                key: Some(key.to_vec()),
                value: value.map(<[u8]>::to_vec),
                timestamp,
                headers: headers
                    .iter()
                    .map(|(k, v)| Header {
                        key: (*k).to_owned(),
                        value: Some(bytes::Bytes::copy_from_slice(v)),
                    })
                    .collect(),
            })
            .map_err(|e| StoreError::InvalidArgument(format!("changelog write failed: {e}")))
    }
}
