//! The processors the DSL operations compile into.

use std::marker::PhantomData;
use std::sync::Arc;

use streams_core::{Change, Processor, ProcessorContext, Record, Result};

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

/// How an aggregation folds a record into the aggregate of its key: `(key, value, old)`,
/// with `old` absent for a new key (`count` and `aggregate` start from their initializer,
/// `reduce` from the first value, as Kafka's `KStreamAggregate` and `KStreamReduce`).
pub(crate) type Combine<K, V, VA> = Arc<dyn Fn(&K, V, Option<VA>) -> VA + Send + Sync>;

/// Aggregates records per key into a key-value store and forwards each change (at once
/// without a cache; with one, the cache's flushes are forwarded as they happen, Kafka's
/// `TimestampedTupleForwarder`). The store's serdes are the ones materialized with it (or
/// the application's defaults), applied by the store handle.
pub(crate) struct AggregateProcessor<K, V, VA> {
    pub(crate) store: String,
    pub(crate) combine: Combine<K, V, VA>,
    /// The store is cached: changes reach downstream through its flushes.
    pub(crate) cached: bool,
}

impl<K, V, VA> Processor<K, V, K, Change<VA>> for AggregateProcessor<K, V, VA>
where
    K: Clone + Send + 'static,
    V: Send + 'static,
    VA: Clone + Send + 'static,
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, K, Change<VA>>) -> Result<()> {
        self.cached = ctx.forward_cache_flushes(&self.store)?;
        Ok(())
    }

    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, K, Change<VA>>,
        record: Record<K, V>,
    ) -> Result<()> {
        let mut store = ctx.key_value_store::<K, VA>(&self.store)?;
        let old = store.get(&record.key)?;
        let new = (self.combine)(&record.key, record.value, old.clone());
        store.put(&record.key, &new)?;
        if !self.cached {
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
}
