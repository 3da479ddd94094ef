//! A task's input: buffering fetched records per partition, deserializing the head of
//! each queue, and what happens to records that cannot be deserialized or carry an
//! invalid timestamp.

use super::*;

impl Task {
    /// Buffers fetched records of an input partition.
    pub(crate) fn add_records(&mut self, partition: &TopicPartition, records: Vec<RawRecord>) {
        if let Some(q) = self.queues.iter_mut().find(|q| &q.partition == partition) {
            q.raw.extend(records);
        }
    }

    /// Records buffered and not yet processed.
    pub(crate) fn buffered(&self) -> usize {
        self.queues
            .iter()
            .map(|q| q.raw.len() + usize::from(q.head_offset.is_some()))
            .sum()
    }

    /// Input partitions with at least `limit` records buffered.
    pub(crate) fn full_partitions(&self, limit: usize) -> Vec<TopicPartition> {
        self.queues
            .iter()
            .filter(|q| q.raw.len() >= limit)
            .map(|q| q.partition.clone())
            .collect()
    }

    /// Makes sure every queue with records has a deserialized head, handling bad records.
    pub(super) fn fill_heads(&mut self) -> Result<()> {
        for qi in 0..self.queues.len() {
            while self.queues[qi].head_offset.is_none() {
                let q = &mut self.queues[qi];
                let Some(raw) = q.raw.pop_front() else {
                    break;
                };
                match q.head.fill(&q.partition.topic, &raw, q.partition_time) {
                    Ok(Filled::NullNotRepresentable(what)) => {
                        // Kafka passes a null key or value on (its deserializers return
                        // null for null bytes) and the stateful operators skip it; a Rust
                        // type without a null cannot carry it, so it is skipped here, as
                        // those operators do, logged and counted — not a bad record.
                        tracing::warn!(task = %self.id, partition = %q.partition, offset = raw.offset,
                            "Skipping record with a null {what}: the source's {what} type cannot hold a null (read it with a `Nullable` serde to see nulls)");
                        self.counters.skipped_null += 1;
                        self.ctx.record_dropped();
                        self.consumed.insert(q.partition.clone(), raw.offset + 1);
                    }
                    Ok(Filled::Record(ts)) if ts < 0 => match self.settings.invalid_timestamps {
                        InvalidTimestampPolicy::Fail => {
                            return Err(StreamsError::InvalidTimestamp {
                                topic: q.partition.topic.clone(),
                                partition: q.partition.partition,
                                offset: raw.offset,
                                timestamp: ts,
                            })
                        }
                        InvalidTimestampPolicy::LogAndSkip => {
                            tracing::warn!(task = %self.id, partition = %q.partition, offset = raw.offset, timestamp = ts, "skipping record with invalid timestamp");
                            self.counters.skipped_timestamp += 1;
                            self.ctx.record_dropped();
                            self.consumed.insert(q.partition.clone(), raw.offset + 1);
                        }
                        InvalidTimestampPolicy::UsePartitionTime => {
                            if q.partition_time < 0 {
                                tracing::warn!(task = %self.id, partition = %q.partition, offset = raw.offset, "invalid timestamp and no partition time yet; skipping");
                                self.counters.skipped_timestamp += 1;
                                self.ctx.record_dropped();
                                self.consumed.insert(q.partition.clone(), raw.offset + 1);
                            } else {
                                q.head.set_timestamp(q.partition_time);
                                q.head_offset = Some(raw.offset);
                            }
                        }
                    },
                    Ok(Filled::Record(ts)) => {
                        q.partition_time = q.partition_time.max(ts);
                        q.head_offset = Some(raw.offset);
                    }
                    Err(e) => {
                        let partition = q.partition.clone();
                        self.handle_bad_record(&partition, &raw, e)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn handle_bad_record(
        &mut self,
        partition: &TopicPartition,
        raw: &RawRecord,
        error: StreamsError,
    ) -> Result<()> {
        match &self.settings.deserialization {
            DeserializationHandler::Fail => Err(StreamsError::Deserialization {
                task: self.id.to_string(),
                topic: partition.topic.clone(),
                partition: partition.partition,
                offset: raw.offset,
                source: Box::new(error),
            }),
            DeserializationHandler::LogAndContinue { dead_letter_topic } => {
                self.counters.skipped_deserialization += 1;
                self.ctx.record_dropped();
                tracing::warn!(task = %self.id, %partition, offset = raw.offset, error = %error,
                    skipped = self.counters.skipped_deserialization,
                    "skipping a record that cannot be deserialized");
                if let Some(dlq) = dead_letter_topic {
                    let mut headers = raw.headers.clone();
                    let h = |k: &str, v: String| Header {
                        key: k.to_owned(),
                        value: Some(bytes::Bytes::from(v.into_bytes())),
                    };
                    headers.push(h(
                        "__streams.errors.exception",
                        "DeserializationException".into(),
                    ));
                    headers.push(h("__streams.errors.message", error.to_string()));
                    headers.push(h("__streams.errors.topic", partition.topic.clone()));
                    headers.push(h(
                        "__streams.errors.partition",
                        partition.partition.to_string(),
                    ));
                    headers.push(h("__streams.errors.offset", raw.offset.to_string()));
                    self.ctx.collector.lock().send(OutgoingRecord {
                        topic: dlq.clone(),
                        partition: None,
                        key: raw.key.as_ref().map(|b| b.to_vec()),
                        value: raw.value.as_ref().map(|b| b.to_vec()),
                        timestamp: raw.timestamp,
                        headers,
                    })?;
                }
                self.consumed.insert(partition.clone(), raw.offset + 1);
                Ok(())
            }
        }
    }

    /// Kafka's `PartitionGroup.readyToProcess`: with every input partition buffered the task
    /// may process; an empty partition with unfetched (or unknown) records holds it back; an
    /// empty, caught-up partition holds it back until `max.task.idle.ms` after it was first
    /// seen so, then processing is enforced. With `max.task.idle.ms` = -1, never wait.
    /// `fetched_lag` is asked only about empty partitions, when they are checked.
    pub(super) fn ready_to_process(&mut self, now: i64, fetched_lag: &FetchedLag<'_>) -> bool {
        let idle = self.settings.max_task_idle_ms;
        let mut queued = false;
        let mut enforced = false;
        for q in &mut self.queues {
            if q.head_offset.is_some() {
                q.idle_deadline = None;
                queued = true;
                continue;
            }
            if idle < 0 {
                continue;
            }
            match fetched_lag(&q.partition) {
                Some(0) => {
                    let deadline = *q.idle_deadline.get_or_insert(now.saturating_add(idle));
                    if now < deadline {
                        return false;
                    }
                    enforced = true;
                }
                _ => {
                    q.idle_deadline = None;
                    return false;
                }
            }
        }
        if queued && enforced {
            self.counters.enforced_processing += 1;
            tracing::trace!(task = %self.id, "processing with an empty, caught-up partition (max.task.idle.ms passed)");
        }
        queued
    }
}
