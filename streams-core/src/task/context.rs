//! What processors reach through their context: forwarding between nodes, stores,
//! punctuation schedules, and the cache flushes handed to the processors of a store.

use super::*;

impl TaskContext {
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
            self.drain_cache_flushes()?;
        }
        Ok(fired)
    }

    /// Hands the entries caches pushed down to the processors connected to their stores.
    pub(crate) fn drain_cache_flushes(&mut self) -> Result<()> {
        let names: Vec<String> = self
            .stores
            .iter()
            .filter(|(_, s)| s.flushed.as_ref().is_some_and(|q| !q.lock().is_empty()))
            .map(|(n, _)| n.clone())
            .collect();
        for name in names {
            let entries = match self.stores.get(&name).and_then(|s| s.flushed.clone()) {
                Some(q) => std::mem::take(&mut *q.lock()),
                None => continue,
            };
            let info = Arc::clone(&self.info);
            let owners: Vec<usize> = (0..info.len())
                .filter(|&i| self.nodes[i].is_some() && info[i].stores.contains(&name))
                .collect();
            for entry in &entries {
                for &node in &owners {
                    self.with_processor(node, |p, ctx| p.on_cache_flush(ctx, node, &name, entry))?;
                }
            }
        }
        Ok(())
    }
}
