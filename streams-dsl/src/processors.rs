//! The processors the DSL operations compile into.

use std::marker::PhantomData;
use std::sync::Arc;

use streams_core::{
    CacheFlushEntry, Processor, ProcessorContext, Record, Result, SharedSerde, StreamsError,
};

use crate::ktable::Change;

/// A processor made of a closure: `f(ctx, record)`.
pub(crate) struct FnProcessor<F, K, V, K2, V2> {
    f: F,
    _t: PhantomData<fn(K, V, K2, V2)>,
}

pub(crate) fn stateless<K, V, K2, V2, F>(f: F) -> FnProcessor<F, K, V, K2, V2>
where
    F: for<'a, 'b> FnMut(&'b mut ProcessorContext<'a, K2, V2>, Record<K, V>) -> Result<()>
        + Send
        + 'static,
{
    FnProcessor { f, _t: PhantomData }
}

impl<K, V, K2, V2, F> Processor<K, V, K2, V2> for FnProcessor<F, K, V, K2, V2>
where
    F: for<'a, 'b> FnMut(&'b mut ProcessorContext<'a, K2, V2>, Record<K, V>) -> Result<()>
        + Send
        + 'static,
    K: 'static,
    V: 'static,
    K2: 'static,
    V2: 'static,
{
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, K2, V2>,
        record: Record<K, V>,
    ) -> Result<()> {
        (self.f)(ctx, record)
    }
}

pub(crate) type Initializer<VA> = Arc<dyn Fn() -> VA + Send + Sync>;
pub(crate) type Aggregator<K, V, VA> = Arc<dyn Fn(&K, V, VA) -> VA + Send + Sync>;

/// Aggregates records per key into a key-value store and forwards each change (at once
/// without a cache, at cache flushes with one).
pub(crate) struct AggregateProcessor<K, V, VA> {
    pub(crate) store: String,
    pub(crate) init: Initializer<VA>,
    pub(crate) adder: Aggregator<K, V, VA>,
    pub(crate) key_serde: Option<SharedSerde<K>>,
    pub(crate) value_serde: Option<SharedSerde<VA>>,
    pub(crate) resolved: Option<(SharedSerde<K>, SharedSerde<VA>, String)>,
}

fn serde_error(what: &str, topic: &str, source: streams_core::SerdeError) -> StreamsError {
    StreamsError::Serde {
        what: what.to_owned(),
        topic: topic.to_owned(),
        source,
    }
}

fn not_initialized() -> StreamsError {
    StreamsError::IllegalState("aggregate processor used before init".into())
}

impl<K, V, VA> Processor<K, V, K, Change<VA>> for AggregateProcessor<K, V, VA>
where
    K: Clone + Send + 'static,
    V: Send + 'static,
    VA: Clone + Send + 'static,
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, K, Change<VA>>) -> Result<()> {
        let node = ctx.node_name().to_owned();
        let ks = match &self.key_serde {
            Some(s) => Arc::clone(s),
            None => ctx
                .serdes()
                .get::<K>()
                .ok_or_else(|| StreamsError::MissingSerde {
                    what: "key",
                    type_name: std::any::type_name::<K>(),
                    node: node.clone(),
                })?,
        };
        let vs = match &self.value_serde {
            Some(s) => Arc::clone(s),
            None => ctx
                .serdes()
                .get::<VA>()
                .ok_or_else(|| StreamsError::MissingSerde {
                    what: "value",
                    type_name: std::any::type_name::<VA>(),
                    node,
                })?,
        };
        let topic = format!("{}-{}-changelog", ctx.application_id(), self.store);
        self.resolved = Some((ks, vs, topic));
        Ok(())
    }

    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, K, Change<VA>>,
        record: Record<K, V>,
    ) -> Result<()> {
        let (ks, vs, topic) = self.resolved.as_ref().ok_or_else(not_initialized)?;
        let Some(key_bytes) = ks
            .serialize(topic, &record.key)
            .map_err(|e| serde_error("aggregation key", topic, e))?
        else {
            tracing::warn!(store = %self.store, "skipping a record whose key serializes to null");
            return Ok(());
        };
        let store = ctx.key_value_store(&self.store)?;
        let old = match store.get(&key_bytes)? {
            Some(b) => Some(
                vs.deserialize(topic, Some(&b))
                    .map_err(|e| serde_error("aggregate", topic, e))?,
            ),
            None => None,
        };
        let base = old.clone().unwrap_or_else(|| (self.init)());
        let new = (self.adder)(&record.key, record.value, base);
        match vs
            .serialize(topic, &new)
            .map_err(|e| serde_error("aggregate", topic, e))?
        {
            Some(b) => store.put(&key_bytes, &b)?,
            None => {
                store.delete(&key_bytes)?;
            }
        }
        if !ctx.is_store_cached(&self.store) {
            ctx.forward(Record {
                key: record.key,
                value: Change {
                    new: Some(new),
                    old,
                },
                timestamp: record.timestamp,
                headers: record.headers,
            })?;
        }
        Ok(())
    }

    fn on_cache_flush(
        &mut self,
        ctx: &mut ProcessorContext<'_, K, Change<VA>>,
        store: &str,
        entry: &CacheFlushEntry,
    ) -> Result<()> {
        if store != self.store {
            return Ok(());
        }
        let (ks, vs, topic) = self.resolved.as_ref().ok_or_else(not_initialized)?;
        let key = ks
            .deserialize(topic, Some(&entry.key))
            .map_err(|e| serde_error("aggregation key", topic, e))?;
        let de = |b: &Option<Vec<u8>>| -> Result<Option<VA>> {
            match b {
                Some(b) => vs
                    .deserialize(topic, Some(b))
                    .map(Some)
                    .map_err(|e| serde_error("aggregate", topic, e)),
                None => Ok(None),
            }
        };
        let change = Change {
            new: de(&entry.new_value)?,
            old: de(&entry.old_value)?,
        };
        ctx.forward(Record::new(key, change, entry.timestamp))
    }
}
