//! Standby tasks (Kafka Streams' `StandbyTask`, and `StoreChangelogReader` in its standby
//! updating mode): a task whose stores follow their changelogs, opened in the same task
//! directory as the active task (so a promotion reuses the state), never processing input
//! nor producing. A standby applies what each changelog partition has beyond its position,
//! one read per partition per call so that the stream thread interleaves it with processing;
//! a store whose changelog is its source topic (`reuse.ktable.source.topics`) is applied
//! only up to the source partition's committed offset, as Kafka bounds standbys there.
//! Checkpoints follow the active task's rule (every 10,000 records, at the commit) and are
//! written when the standby closes cleanly.

use super::*;

/// Standby updates are logged at trace level only: they run on every loop of the thread.
struct QuietListener;

impl state_store::RestoreListener for QuietListener {
    fn on_batch_restored(
        &mut self,
        store: &str,
        partition: &TopicPartition,
        p: &state_store::RestoreProgress,
    ) {
        tracing::trace!(store, %partition, records = p.records_restored, "standby update");
    }
}

impl Task {
    /// Turns a task just created (no input partitions, not initialized) into a standby.
    pub(crate) fn make_standby(&mut self) {
        self.standby = true;
    }

    /// The offset of the last changelog record each store reflects, per changelog partition.
    pub(crate) fn changelog_offsets(&self) -> &BTreeMap<TopicPartition, i64> {
        &self.store_offsets
    }

    /// True for a standby task.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn is_standby(&self) -> bool {
        self.standby
    }

    /// Checks the checkpoint of every changelog against the changelog's offsets (see
    /// `check_checkpoint`), before a standby starts following it.
    pub(crate) fn check_local_state(
        &mut self,
        reader: &mut dyn crate::client::ChangelogSource,
    ) -> Result<()> {
        for (store, tp) in &self.changelogs {
            let (log_start, end) = reader.offsets(tp)?;
            let checkpoint = self.store_offsets.get(tp).copied();
            check_checkpoint(self.id, store, tp, checkpoint, log_start, end)?;
            self.standby_next
                .insert(tp.clone(), Restorer::start_offset(checkpoint, log_start));
        }
        Ok(())
    }

    /// Applies what is new in each changelog partition (one read each). Returns how many
    /// records were applied. A position below the changelog's log start (records removed
    /// by retention before the standby read them) is [`StreamsError::TaskCorrupted`].
    pub(crate) fn update_standby(
        &mut self,
        reader: &mut dyn crate::client::ChangelogSource,
    ) -> Result<u64> {
        let restorer = Restorer::default();
        let mut applied = 0;
        for (store, tp) in &self.changelogs {
            let Some(open) = self.ctx.stores.get_mut(store) else {
                continue;
            };
            let Some(&next) = self.standby_next.get(tp) else {
                continue;
            };
            let source_topic = self.source_changelogs.contains(tp);
            let limit = if source_topic {
                self.restore_limits.get(tp).copied().unwrap_or(0)
            } else {
                i64::MAX
            };
            if next >= limit {
                continue;
            }
            let read = match read_changelog(reader, tp, next, source_topic) {
                Ok(r) => r,
                Err(e) => {
                    let (log_start, _) = reader.offsets(tp)?;
                    if next < log_start {
                        return Err(StreamsError::TaskCorrupted {
                            task: self.id.to_string(),
                            reason: format!(
                                "standby of store `{store}` is at offset {next} but {tp} starts at {log_start}"
                            ),
                        });
                    }
                    return Err(e);
                }
            };
            let Some((last, mut records)) = read else {
                continue;
            };
            records.retain(|r| r.offset >= next && r.offset < limit);
            // Past the limit, the same records are read again once it moves.
            let new_next = (last + 1).min(limit);
            if records.is_empty() {
                self.standby_next.insert(tp.clone(), new_next);
                continue;
            }
            open.convert_restored(&mut records);
            let progress = restorer.restore(
                open.store.get_mut().restorable(),
                tp,
                next,
                limit,
                records.into_iter().map(Ok),
                &mut QuietListener,
            )?;
            applied += progress.records_restored;
            if let Some(last) = progress.last_restored_offset {
                self.store_offsets.insert(tp.clone(), last);
            }
            self.standby_next.insert(tp.clone(), new_next);
        }
        self.counters.standby_updates += applied;
        Ok(applied)
    }
}
