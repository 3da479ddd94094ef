//! Committed consumer-group offsets on the [`Broker`]: durable commits and deletions as
//! records in the compacted `__consumer_offsets` topic (one partition per group, chosen as
//! Kafka does), an in-memory cache of the latest offsets, and its rebuild on open; the group
//! coordinator's metadata records go to the same partitions and are reloaded with them.

use std::collections::{BTreeMap, HashMap};

use tracing::{debug, warn};

use super::coordination::CoordinatorKind;
use super::produce_fetch::encode_produce_batch;
use super::transactions::{control_type, PendingTxnOffsets};
use super::types::{NewTopic, ProduceRecord};
use super::{now_ms, Broker};
use crate::error::{BrokerError, Result};
use crate::group::record::{self as group_record, StoredGroup};
use crate::group::{CommitMember, GroupError};
use crate::log::PartitionLog;
use crate::offsets::{self, OffsetAndMetadata, TopicPartition, OFFSETS_TOPIC};
use crate::partitioner::{java_abs, java_string_hash};
use crate::record::{decode_records, BatchIter};

impl Broker {
    pub(crate) fn offsets_partition_for(&self, group: &str) -> i32 {
        let n = self.inner.config.offsets_topic_num_partitions.max(1) as i32;
        java_abs(java_string_hash(group)) % n
    }

    pub(crate) fn ensure_offsets_topic(&self) -> Result<()> {
        if self.topic_exists(OFFSETS_TOPIC) {
            return Ok(());
        }
        if self.inner.config.elected_coordinators {
            // A cluster's controller creates the topic; until then there is no coordinator.
            return Err(BrokerError::NotCoordinator(
                kafka_protocol::ResponseError::CoordinatorNotAvailable,
            ));
        }
        let new = NewTopic::new(
            OFFSETS_TOPIC,
            self.inner.config.offsets_topic_num_partitions.max(1),
        )
        .config("cleanup.policy", "compact")
        .config(
            "segment.bytes",
            self.inner.config.offsets_topic_segment_bytes.to_string(),
        );
        match self.create_topic(new) {
            Ok(_) | Err(BrokerError::TopicAlreadyExists(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Durably commits offsets for a consumer group (one atomic batch in the group's
    /// `__consumer_offsets` partition), then updates the cache.
    pub fn commit_offsets(
        &self,
        group: &str,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
    ) -> Result<()> {
        self.check_open()?;
        if offsets.is_empty() {
            return Ok(());
        }
        self.ensure_offsets_topic()?;
        let mut records = Vec::with_capacity(offsets.len());
        for (tp, om) in offsets {
            let key = offsets::encode_key(group, tp).ok_or_else(|| {
                BrokerError::InvalidRecord("group id or topic name longer than 32767 bytes".into())
            })?;
            let value = offsets::encode_value(om).ok_or_else(|| {
                BrokerError::InvalidRecord("offset metadata longer than 32767 bytes".into())
            })?;
            records.push(ProduceRecord {
                key: Some(key),
                value: Some(value),
                headers: Vec::new(),
                timestamp: Some(om.commit_timestamp),
            });
        }
        let partition = self.offsets_partition_for(group);
        let _guard = self.inner.offsets_lock.lock();
        let mut batch = encode_produce_batch(&records)?;
        self.append_coordinator_batch(CoordinatorKind::Group, partition, &mut batch)?;
        let mut committed = self.inner.committed.write();
        let entry = committed.entry(group.to_string()).or_default();
        for (tp, om) in offsets {
            entry.insert(tp.clone(), om.clone());
        }
        Ok(())
    }

    /// Commits offsets as a member of `group` (Kafka's OffsetCommit): the coordinator checks
    /// the member and its generation first (UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION,
    /// REBALANCE_IN_PROGRESS between JoinGroup and SyncGroup, FENCED_INSTANCE_ID), and no
    /// rebalance completes between the check and the durable write. A
    /// [`CommitMember::simple`] commit is allowed only while the group has no members. With
    /// no offsets, only the check runs.
    pub fn commit_group_offsets(
        &self,
        group: &str,
        member: &CommitMember,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
    ) -> std::result::Result<(), GroupError> {
        self.inner
            .groups
            .commit_checked(group, member, || self.commit_offsets(group, offsets))?
            .map_err(GroupError::Storage)
    }

    /// Writes a group's metadata (a `GroupMetadataValue`), or its tombstone, to the group's
    /// `__consumer_offsets` partition.
    pub(crate) fn store_group_metadata(
        &self,
        group: &str,
        metadata: Option<&StoredGroup>,
    ) -> Result<()> {
        self.check_open()?;
        self.ensure_offsets_topic()?;
        let key = group_record::encode_key(group)
            .ok_or_else(|| BrokerError::InvalidRecord("group id longer than 32767 bytes".into()))?;
        let value = match metadata {
            Some(m) => Some(group_record::encode_value(m).ok_or_else(|| {
                BrokerError::InvalidRecord("group metadata field too long".into())
            })?),
            None => None,
        };
        let record = ProduceRecord {
            key: Some(key),
            value,
            headers: Vec::new(),
            timestamp: Some(now_ms()),
        };
        let partition = self.offsets_partition_for(group);
        let _guard = self.inner.offsets_lock.lock();
        let mut batch = encode_produce_batch(&[record])?;
        self.append_coordinator_batch(CoordinatorKind::Group, partition, &mut batch)?;
        Ok(())
    }

    /// The committed offset of one partition for a group.
    pub fn committed_offset(&self, group: &str, tp: &TopicPartition) -> Option<OffsetAndMetadata> {
        self.inner
            .committed
            .read()
            .get(group)
            .and_then(|m| m.get(tp))
            .cloned()
    }

    /// Every committed offset of a group.
    pub fn committed_offsets(&self, group: &str) -> BTreeMap<TopicPartition, OffsetAndMetadata> {
        self.inner
            .committed
            .read()
            .get(group)
            .cloned()
            .unwrap_or_default()
    }

    /// Groups that have committed offsets.
    pub fn groups_with_offsets(&self) -> Vec<String> {
        let mut g: Vec<_> = self.inner.committed.read().keys().cloned().collect();
        g.sort();
        g
    }

    /// Deletes all of a group's committed offsets (tombstones in `__consumer_offsets`).
    pub fn delete_group_offsets(&self, group: &str) -> Result<usize> {
        let tps: Vec<TopicPartition> = self.committed_offsets(group).into_keys().collect();
        self.delete_offsets(group, &tps)
    }

    /// Deletes a group's committed offsets of the given partitions (one batch of tombstones
    /// in `__consumer_offsets`; Kafka's OffsetDelete). Partitions without a committed offset
    /// are ignored. Returns how many offsets were deleted.
    pub fn delete_offsets(&self, group: &str, partitions: &[TopicPartition]) -> Result<usize> {
        self.check_open()?;
        let committed = self.committed_offsets(group);
        let tps: Vec<&TopicPartition> = partitions
            .iter()
            .filter(|tp| committed.contains_key(*tp))
            .collect();
        if tps.is_empty() {
            return Ok(0);
        }
        let mut records = Vec::with_capacity(tps.len());
        for tp in &tps {
            if let Some(key) = offsets::encode_key(group, tp) {
                records.push(ProduceRecord {
                    key: Some(key),
                    ..ProduceRecord::default()
                });
            }
        }
        let partition = self.offsets_partition_for(group);
        let _guard = self.inner.offsets_lock.lock();
        let mut batch = encode_produce_batch(&records)?;
        self.append_coordinator_batch(CoordinatorKind::Group, partition, &mut batch)?;
        let mut all = self.inner.committed.write();
        if let Some(m) = all.get_mut(group) {
            for tp in &tps {
                m.remove(*tp);
            }
            if m.is_empty() {
                all.remove(group);
            }
        }
        Ok(tps.len())
    }

    /// Reads every partition of `__consumer_offsets` back (the single-node broker, at open).
    pub(super) fn load_committed_offsets(&self) -> Result<()> {
        let Ok(topic) = self.topic(OFFSETS_TOPIC) else {
            return Ok(());
        };
        let logs: Vec<_> = topic.logs.read().clone();
        let mut all = OffsetsPartitionState::default();
        for log in logs {
            let state = scan_offsets_log(&log)?;
            all.committed.extend(state.committed);
            all.groups.extend(state.groups);
            for (producer_id, groups) in state.pending {
                let entry = all.pending.entry(producer_id).or_default();
                for (group, offsets) in groups {
                    entry.entry(group).or_default().extend(offsets);
                }
            }
        }
        debug!(groups = all.committed.len(), "loaded committed offsets");
        *self.inner.committed.write() = all.committed;
        // Transactions still open (or prepared: the coordinator completes them next).
        *self.inner.pending_txn_offsets.lock() = all.pending;
        self.inner.groups.restore(
            all.groups
                .into_iter()
                .filter_map(|(n, g)| g.map(|g| (n, g))),
        );
        Ok(())
    }

    /// Installs the state read from `__consumer_offsets` partition `partition` (a cluster
    /// broker elected its leader): its groups' committed offsets, group metadata and pending
    /// transactional offsets replace whatever was cached for them.
    pub(super) fn install_offsets_partition(&self, partition: i32, state: OffsetsPartitionState) {
        self.unload_offsets_partition(partition);
        let groups = state.committed.len();
        self.inner.committed.write().extend(state.committed);
        {
            let mut pending = self.inner.pending_txn_offsets.lock();
            for (producer_id, groups) in state.pending {
                let entry = pending.entry(producer_id).or_default();
                for (group, offsets) in groups {
                    entry.entry(group).or_default().extend(offsets);
                }
            }
        }
        self.inner.groups.restore(
            state
                .groups
                .into_iter()
                .filter_map(|(n, g)| g.map(|g| (n, g))),
        );
        debug!(partition, groups, "loaded a partition of {OFFSETS_TOPIC}");
    }

    /// Forgets the groups of `__consumer_offsets` partition `partition` (its leadership moved
    /// to another broker): their members, offsets and pending transactional offsets.
    pub(super) fn unload_offsets_partition(&self, partition: i32) {
        let mine = |g: &str| self.offsets_partition_for(g) == partition;
        self.inner.committed.write().retain(|g, _| !mine(g));
        {
            let mut pending = self.inner.pending_txn_offsets.lock();
            for groups in pending.values_mut() {
                groups.retain(|g, _| !mine(g));
            }
            pending.retain(|_, groups| !groups.is_empty());
        }
        self.inner.groups.unload(|g| mine(g));
    }
}

/// What one partition of `__consumer_offsets` holds: committed offsets, group metadata (the
/// last record per group; `None`: deleted) and offsets committed in transactions without a
/// marker yet.
#[derive(Default)]
pub(super) struct OffsetsPartitionState {
    pub(super) committed: HashMap<String, BTreeMap<TopicPartition, OffsetAndMetadata>>,
    pub(super) groups: HashMap<String, Option<StoredGroup>>,
    pub(super) pending: PendingTxnOffsets,
}

/// Reads one partition of `__consumer_offsets` from its start to its log end.
pub(super) fn scan_offsets_log(log: &PartitionLog) -> Result<OffsetsPartitionState> {
    let mut committed: HashMap<String, BTreeMap<TopicPartition, OffsetAndMetadata>> =
        HashMap::new();
    let mut groups: HashMap<String, Option<StoredGroup>> = HashMap::new();
    let mut skipped = 0usize;
    // Transactional offset commits (TxnOffsetCommit), per producer, until their marker.
    let mut pending: PendingTxnOffsets = HashMap::new();
    let mut offset = log.offsets().log_start_offset;
    loop {
        let data = log.read_for_replica(offset, 4 << 20)?;
        if data.records.is_empty() {
            break;
        }
        for item in BatchIter::new(&data.records) {
            let b = item.map_err(|(pos, source)| BrokerError::Corrupt {
                path: log.dir().to_path_buf(),
                position: pos as u64,
                source,
            })?;
            offset = offset.max(b.header.next_offset());
            let records = decode_records(b.bytes).map_err(|source| BrokerError::Corrupt {
                path: log.dir().to_path_buf(),
                position: 0,
                source,
            })?;
            let producer_id = b.header.producer_id;
            if b.header.is_control() {
                // A transaction marker: the producer's offsets in this partition become
                // committed, or are dropped.
                let commit = records
                    .first()
                    .and_then(|r| r.key.as_deref())
                    .and_then(control_type);
                if let (Some(commit), Some(groups)) = (commit, pending.remove(&producer_id)) {
                    if commit {
                        for (group, offsets) in groups {
                            committed.entry(group).or_default().extend(offsets);
                        }
                    }
                }
                continue;
            }
            if b.header.is_transactional() {
                for r in records {
                    let decoded = r
                        .key
                        .as_deref()
                        .and_then(offsets::decode_key)
                        .zip(r.value.as_deref().and_then(offsets::decode_value));
                    match decoded {
                        Some(((group, tp), om)) => {
                            pending
                                .entry(producer_id)
                                .or_default()
                                .entry(group)
                                .or_default()
                                .insert(tp, om);
                        }
                        None => skipped += 1,
                    }
                }
                continue;
            }
            for r in records {
                if let Some(group) = r.key.as_deref().and_then(group_record::decode_key) {
                    let value = r.value.as_deref().map(group_record::decode_value);
                    match value {
                        None => {
                            groups.insert(group, None);
                        }
                        Some(Some(g)) => {
                            groups.insert(group, Some(g));
                        }
                        Some(None) => skipped += 1,
                    }
                    continue;
                }
                let Some((group, tp)) = r.key.as_deref().and_then(offsets::decode_key) else {
                    skipped += 1;
                    continue;
                };
                match r.value.as_deref() {
                    None => {
                        if let Some(m) = committed.get_mut(&group) {
                            m.remove(&tp);
                        }
                    }
                    Some(v) => match offsets::decode_value(v) {
                        Some(om) => {
                            committed.entry(group).or_default().insert(tp, om);
                        }
                        None => skipped += 1,
                    },
                }
            }
        }
    }
    committed.retain(|_, m| !m.is_empty());
    if skipped > 0 {
        warn!(
            skipped,
            partition = log.partition(),
            "skipped undecodable records in {OFFSETS_TOPIC}"
        );
    }
    Ok(OffsetsPartitionState {
        committed,
        groups,
        pending,
    })
}
