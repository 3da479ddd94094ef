//! A task's part of the commit: flushing caches in topology order, the offsets to
//! commit, and checkpoints (started as a background flush, written once it is durable).

use super::*;

impl Task {
    /// First half of a commit: flush caches (forwarding what they emit) and stores, in
    /// topology order so downstream caches see upstream emissions.
    pub(crate) fn prepare_commit(&mut self) -> Result<()> {
        let order: Vec<String> = self.store_order();
        for name in order {
            if let Some(s) = self.ctx.stores.get_mut(&name) {
                let flushed = s.store.get_mut().state().flush_cache();
                // Forward what was pushed down even if the flush failed part way.
                let forwarded = self.ctx.forward_cache_flushes(&name);
                flushed?;
                forwarded?;
            }
        }
        Ok(())
    }

    fn store_order(&self) -> Vec<String> {
        let mut order = Vec::new();
        for info in self.ctx.info.iter() {
            for s in &info.stores {
                if self.ctx.stores.contains_key(s) && !order.contains(s) {
                    order.push(s.clone());
                }
            }
        }
        order
    }

    /// Input offsets to commit (next offset to read per partition) that changed since the
    /// last commit, each with Kafka's commit metadata (`TopicPartitionMetadata`: the
    /// partition time and the task's processor metadata). As Kafka's
    /// `StreamTask#committableOffsetsAndMetadata`: a partition whose buffer is empty commits
    /// the consumer's `position` when it is ahead of the last record processed, so offsets
    /// move past transaction markers and aborted records (under exactly-once the committed
    /// offset then reaches the end of the partition).
    pub(crate) fn offsets_to_commit(
        &self,
        position: &dyn Fn(&TopicPartition) -> Option<i64>,
    ) -> BTreeMap<TopicPartition, (i64, String)> {
        self.consumed
            .iter()
            .map(|(tp, &o)| {
                let drained = self
                    .queues
                    .iter()
                    .find(|q| &q.partition == tp)
                    .is_none_or(|q| q.raw.is_empty() && q.head_offset.is_none());
                let o = match position(tp) {
                    Some(p) if drained && p > o => p,
                    _ => o,
                };
                (tp, o)
            })
            .filter(|(tp, o)| self.committed.get(*tp) != Some(o))
            .map(|(tp, o)| {
                let partition_time = self
                    .queues
                    .iter()
                    .find(|q| &q.partition == tp)
                    .map_or(-1, |q| q.partition_time);
                let metadata =
                    offset_metadata::encode(partition_time, &self.ctx.processor_metadata);
                (tp.clone(), (o, metadata))
            })
            .collect()
    }

    /// Sets the processor metadata read from the committed offsets' metadata (before the
    /// processors are initialized).
    pub(crate) fn set_processor_metadata(&mut self, metadata: BTreeMap<String, i64>) {
        self.ctx.processor_metadata = metadata;
    }

    /// Last half of a commit, after the produced records are acknowledged and the offsets
    /// committed: record the committed offsets and write the checkpoint.
    pub(crate) fn post_commit(&mut self, committed: &BTreeMap<TopicPartition, i64>) -> Result<()> {
        for (tp, o) in committed {
            if self.consumed.contains_key(tp) {
                self.committed.insert(tp.clone(), *o);
            }
        }
        self.ctx.commit_requested = false;
        // As Kafka Streams: flush the stores and write a checkpoint only once the changelogs
        // moved by more than CHECKPOINT_DELTA records (a RocksDB flush on every 100 ms
        // commit would pile up tiny files); a crash then restores a little more. Unlike
        // Kafka Streams, the flush runs in the background and the checkpoint is written at
        // the first commit after it is durable, so the stream thread never waits for it.
        self.update_store_offsets();
        if self.settings.exactly_once {
            // Under exactly-once a checkpoint while running would be worthless: the
            // in-progress marker makes the next start after a crash wipe the state anyway.
            return Ok(());
        }
        if self.pending_checkpoint.is_some() {
            return self.complete_checkpoint();
        }
        let delta: i64 = self
            .store_offsets
            .iter()
            .map(|(tp, o)| o - self.checkpointed.get(tp).copied().unwrap_or(-1))
            .sum();
        if delta > CHECKPOINT_DELTA {
            self.start_checkpoint()?;
        }
        Ok(())
    }

    /// The stores a checkpoint covers: persistent and logged.
    fn checkpointed_stores(&mut self) -> impl Iterator<Item = &mut OpenStore> {
        let changelogs = &self.changelogs;
        self.ctx
            .stores
            .iter_mut()
            .filter(move |(name, s)| s.spec.is_persistent() && changelogs.contains_key(*name))
            .map(|(_, s)| s)
    }

    /// Starts a background flush of the checkpointed stores and remembers the offsets
    /// they reflect now: the checkpoint that will claim them once the flush is durable.
    fn start_checkpoint(&mut self) -> Result<()> {
        let offsets = self.checkpoint_offsets();
        self.checkpointed.clone_from(&self.store_offsets);
        if self.dir.is_none() {
            return Ok(());
        }
        for s in self.checkpointed_stores() {
            s.store.get_mut().state().flush_async()?;
        }
        self.pending_checkpoint = Some(offsets);
        self.complete_checkpoint()
    }

    /// Writes the pending checkpoint if every store's background flush is done.
    fn complete_checkpoint(&mut self) -> Result<()> {
        for s in self.checkpointed_stores() {
            if !s.store.get_mut().state().flush_done()? {
                return Ok(());
            }
        }
        if let (Some(offsets), Some(dir)) = (self.pending_checkpoint.take(), &self.dir) {
            dir.checkpoint().write(&offsets)?;
            self.counters.checkpoints += 1;
        }
        Ok(())
    }

    pub(super) fn update_store_offsets(&mut self) {
        if self.standby {
            // A standby's stores reflect what it applied (`store_offsets`), not what this
            // thread's producer wrote to the changelogs while it ran the task as active.
            return;
        }
        let produced = self.ctx.collector.lock().produced_offsets().clone();
        for tp in self.changelogs.values() {
            if self.source_changelogs.contains(tp) {
                // The store reflects the source records processed and committed.
                if let Some(&next) = self.committed.get(tp) {
                    let e = self.store_offsets.entry(tp.clone()).or_insert(next - 1);
                    *e = (*e).max(next - 1);
                }
                continue;
            }
            if let Some(&o) = produced.get(tp) {
                let e = self.store_offsets.entry(tp.clone()).or_insert(o);
                *e = (*e).max(o);
            }
        }
    }

    /// Offsets a checkpoint may claim: those of persistent, logged stores (an in-memory
    /// store is empty after a restart, so it always restores from the start).
    pub(super) fn checkpoint_offsets(&self) -> BTreeMap<TopicPartition, i64> {
        self.store_offsets
            .iter()
            .filter(|(tp, _)| {
                self.changelogs.iter().any(|(name, c)| {
                    c == *tp
                        && self
                            .ctx
                            .stores
                            .get(name)
                            .is_some_and(|s| s.spec.is_persistent())
                })
            })
            .map(|(tp, o)| (tp.clone(), *o))
            .collect()
    }
}
