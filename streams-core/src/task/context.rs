//! What processors reach through their context: forwarding between nodes, stores,
//! punctuation schedules, and the cache flushes handed to the processors of a store.

use super::*;

impl TaskContext {
    /// Counts a record dropped by this task (Kafka's `dropped-records` sensor).
    pub(crate) fn record_dropped(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn node_name(&self, node: usize) -> &str {
        self.info.get(node).map_or("?", |n| n.name.as_str())
    }

    pub(crate) fn physical_topic(&self, topic: &str) -> String {
        self.topics.physical(topic)
    }

    pub(crate) fn child_index(&self, node: usize, child: &str) -> Result<usize> {
        let info = &self.info[node];
        info.children
            .iter()
            .copied()
            .find(|&c| self.info[c].name == child)
            .ok_or_else(|| StreamsError::Processing {
                task: self.task_id.to_string(),
                node: info.name.clone(),
                message: format!("`{child}` is not a child of this node"),
            })
    }

    /// Hands `record` to the children of `node` (or only to `only`), depth first. The
    /// record moves to the last child; only a fan-out to several children clones it.
    pub(crate) fn forward<K, V>(
        &mut self,
        node: usize,
        record: Record<K, V>,
        only: Option<usize>,
    ) -> Result<()>
    where
        K: Any + Clone,
        V: Any + Clone,
    {
        // Kafka's `ProcessorContextImpl#forward`: the children run in a record context
        // with the forwarded record's timestamp (what their store writes are change-logged
        // and cached with), the previous one restored afterwards.
        let ts = record.timestamp;
        let previous = self
            .stores
            .values()
            .next()
            .map(|s| s.timestamp.get())
            .filter(|&p| p != ts);
        if previous.is_some() {
            self.set_write_timestamp(ts);
        }
        let result = self.forward_in_context(node, record, only);
        if let Some(p) = previous {
            self.set_write_timestamp(p);
        }
        result
    }

    /// The timestamp the task's store writes carry (Kafka's record context timestamp).
    fn set_write_timestamp(&self, ts: i64) {
        for s in self.stores.values() {
            s.timestamp.set(ts);
        }
    }

    fn forward_in_context<K, V>(
        &mut self,
        node: usize,
        record: Record<K, V>,
        only: Option<usize>,
    ) -> Result<()>
    where
        K: Any + Clone,
        V: Any + Clone,
    {
        if let Some(c) = only {
            return self.deliver(c, InFlight::new(&mut Some(record)));
        }
        let count = self.info.get(node).map_or(0, |n| n.children.len());
        if count == 0 {
            return Ok(());
        }
        for i in 0..count - 1 {
            let child = self.info[node].children[i];
            self.deliver(child, InFlight::new(&mut Some(record.clone())))?;
        }
        let last = self.info[node].children[count - 1];
        self.deliver(last, InFlight::new(&mut Some(record)))
    }

    fn deliver(&mut self, node: usize, record: InFlight<'_>) -> Result<()> {
        let mut instance = self
            .nodes
            .get_mut(node)
            .and_then(Option::take)
            .ok_or_else(|| {
                StreamsError::IllegalState(format!(
                    "node `{}` is not available in task {} (cycle?)",
                    self.node_name(node),
                    self.task_id
                ))
            })?;
        let result = match &mut instance {
            NodeInstance::Source => Err(StreamsError::IllegalState(format!(
                "source node `{}` cannot receive records from another node",
                self.node_name(node)
            ))),
            NodeInstance::Processor(p) => p.process(self, node, record),
            NodeInstance::Sink(s) => s.send(self, node, record),
        };
        self.nodes[node] = Some(instance);
        result.map_err(|e| self.wrap(node, e))
    }

    fn wrap(&self, node: usize, e: StreamsError) -> StreamsError {
        match e {
            StreamsError::User(message) => StreamsError::Processing {
                task: self.task_id.to_string(),
                node: self.node_name(node).to_owned(),
                message,
            },
            StreamsError::Store(s) => StreamsError::Processing {
                task: self.task_id.to_string(),
                node: self.node_name(node).to_owned(),
                message: format!("state store error: {s}"),
            },
            other => other,
        }
    }

    /// Runs `f` on the processor instance of `node`.
    pub(super) fn with_processor(
        &mut self,
        node: usize,
        f: impl FnOnce(&mut dyn ErasedProcessor, &mut TaskContext) -> Result<()>,
    ) -> Result<()> {
        let mut instance = match self.nodes.get_mut(node).and_then(Option::take) {
            Some(i) => i,
            None => return Ok(()),
        };
        let result = match &mut instance {
            NodeInstance::Processor(p) => f(p.as_mut(), self),
            _ => Ok(()),
        };
        self.nodes[node] = Some(instance);
        result.map_err(|e| self.wrap(node, e))
    }

    /// Store `name`, which must be connected to processor `node`, with the application's
    /// serdes and the node's name (for typed access from a processor).
    pub(crate) fn connected_store(
        &mut self,
        node: usize,
        name: &str,
    ) -> Result<(&mut OpenStore, &SerdeRegistry, &str)> {
        let node_name = self.info.get(node).map_or("?", |n| n.name.as_str());
        let error = |reason: &str| StreamsError::StoreAccess {
            node: node_name.to_owned(),
            store: name.to_owned(),
            reason: reason.to_owned(),
        };
        if !self
            .info
            .get(node)
            .is_some_and(|n| n.stores.iter().any(|s| s == name))
        {
            return Err(error("the store is not connected to this processor"));
        }
        match self.stores.get_mut(name) {
            Some(s) => Ok((s, &self.serdes, node_name)),
            None => Err(error("the store is not open in this task")),
        }
    }

    pub(crate) fn schedule(
        &mut self,
        node: usize,
        interval: Duration,
        kind: PunctuationType,
    ) -> Result<ScheduleId> {
        let interval = i64::try_from(interval.as_millis()).unwrap_or(i64::MAX);
        if interval < 1 {
            return Err(StreamsError::IllegalState(
                "punctuation interval must be at least 1 ms".into(),
            ));
        }
        self.next_schedule += 1;
        let id = ScheduleId(self.next_schedule);
        let next = match kind {
            PunctuationType::StreamTime => None,
            PunctuationType::WallClockTime => Some(self.clock.now_ms().saturating_add(interval)),
        };
        self.schedules.push(Schedule {
            id,
            node,
            interval,
            kind,
            next,
        });
        Ok(id)
    }

    pub(crate) fn cancel(&mut self, id: ScheduleId) {
        self.schedules.retain(|s| s.id != id);
    }

    /// Fires due punctuations of `kind` at time `now`. Returns how many fired.
    pub(super) fn punctuate(&mut self, kind: PunctuationType, now: i64) -> Result<usize> {
        let mut fired = 0;
        let mut i = 0;
        while i < self.schedules.len() {
            let s = &mut self.schedules[i];
            i += 1;
            if s.kind != kind || now < 0 {
                continue;
            }
            let due = match s.next {
                None => true, // stream time: the first record triggers the first punctuation
                Some(t) => now >= t,
            };
            if !due {
                continue;
            }
            let mut next = s.next.unwrap_or(now);
            while next <= now {
                next = next.saturating_add(s.interval);
            }
            s.next = Some(next);
            let (id, node) = (s.id, s.node);
            let saved = self.metadata.take();
            let r = self.with_processor(node, |p, ctx| p.punctuate(ctx, node, id, now));
            self.metadata = saved;
            r?;
            fired += 1;
        }
        Ok(fired)
    }

    /// Makes processor `node` the owner of store `store`'s cache flushes. `Ok(false)` if
    /// the store is not cached (the listener would never run).
    pub(crate) fn set_flush_listener(
        &mut self,
        node: usize,
        store: &str,
        listener: Box<dyn ErasedFlushListener>,
    ) -> Result<bool> {
        if self.stores.get(store).is_none_or(|s| s.cache.is_none()) {
            return Ok(false);
        }
        if let Some(owner) = self.flush_listeners.get(store) {
            if owner.node != node {
                return Err(StreamsError::StoreAccess {
                    node: self.node_name(node).to_owned(),
                    store: store.to_owned(),
                    reason: format!(
                        "its cache flushes are already forwarded by `{}`",
                        self.node_name(owner.node)
                    ),
                });
            }
        }
        self.flush_listeners.insert(
            store.to_owned(),
            FlushListener {
                node,
                listener: Some(listener),
            },
        );
        Ok(true)
    }

    /// Hands what the store call that just returned pushed out of `store`'s cache to the
    /// listener of the processor owning its flushes (Kafka's cache flush listener, called
    /// synchronously), in push order. Without a listener the entries are dropped, as Kafka
    /// does for a cached store nobody listens to.
    ///
    /// Re-entrancy: the listener is taken out of the task while it runs (the store is no
    /// longer borrowed, so processors downstream may use it). If one of them writes to the
    /// same store and that write pushes entries out, they wait in the store's batch and
    /// are handed over, in order, as soon as the running listener returns, within the
    /// same outer call.
    pub(crate) fn forward_cache_flushes(&mut self, store: &str) -> Result<()> {
        loop {
            let mut entries = match self.stores.get(store).and_then(|s| s.cache.as_ref()) {
                Some(batch) => std::mem::take(&mut *batch.lock()),
                None => return Ok(()),
            };
            if entries.is_empty() {
                return Ok(());
            }
            let Some(owner) = self.flush_listeners.get_mut(store) else {
                return Ok(());
            };
            let node = owner.node;
            let Some(mut listener) = owner.listener.take() else {
                // The listener is running further up the stack: keep the entries, in
                // front of anything pushed since, for it to pick up when it returns.
                if let Some(batch) = self.stores.get(store).and_then(|s| s.cache.as_ref()) {
                    let mut batch = batch.lock();
                    entries.append(&mut batch);
                    *batch = entries;
                }
                return Ok(());
            };
            let mut result = Ok(());
            for entry in entries {
                result = listener.on_flush(self, node, entry);
                if result.is_err() {
                    break;
                }
            }
            if let Some(owner) = self.flush_listeners.get_mut(store) {
                owner.listener = Some(listener);
            }
            result.map_err(|e| self.wrap(node, e))?;
        }
    }
}

impl StoreHost for TaskContext {
    fn store(&self, name: &str) -> Option<&OpenStore> {
        self.stores.get(name)
    }

    fn store_mut(&mut self, name: &str) -> Option<&mut OpenStore> {
        self.stores.get_mut(name)
    }

    fn forward_cache_flushes(&mut self, name: &str) -> Result<()> {
        TaskContext::forward_cache_flushes(self, name)
    }
}
