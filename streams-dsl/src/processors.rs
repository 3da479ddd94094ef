//! The processors the DSL operations compile into.

use std::marker::PhantomData;
use std::sync::Arc;

use streams_core::{
    Change, Processor, ProcessorContext, Record, Result, SharedSerde, ValueAndTimestamp,
};

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

/// Aggregates records per key into a timestamped key-value store and forwards each change (at once
/// without a cache; with one, the cache's flushes are forwarded as they happen, Kafka's
/// `TimestampedTupleForwarder`). The store's serdes are the ones materialized with it (or
/// the application's defaults), applied by the store handle.
///
/// A record whose key or value is null (its serde's [`Serde::is_null`](streams_core::Serde::is_null),
/// e.g. `None` under [`Nullable`](streams_core::Nullable)) is skipped with a warning and
/// counted as dropped, as Kafka's `KStreamAggregate` / `KStreamReduce` do ("Skipping record
/// due to null key or value"): a tombstone is not an update of an aggregate.
pub(crate) struct AggregateProcessor<K, V, VA> {
    pub(crate) store: String,
    pub(crate) combine: Combine<K, V, VA>,
    /// The store is cached: changes reach downstream through its flushes.
    pub(crate) cached: bool,
    /// The grouped stream's serdes (the application's defaults when not given), to tell
    /// null keys and values.
    pub(crate) key_serde: Option<SharedSerde<K>>,
    pub(crate) value_serde: Option<SharedSerde<V>>,
}

impl<K, V, VA> Processor<K, V, K, Change<VA>> for AggregateProcessor<K, V, VA>
where
    K: Clone + Send + 'static,
    V: Send + 'static,
    VA: Clone + Send + 'static,
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, K, Change<VA>>) -> Result<()> {
        self.cached = ctx
            .set_timestamped_cache_flush_listener::<K, VA, _>(&self.store, |ctx, r| {
                ctx.forward(r)
            })?;
        if self.key_serde.is_none() {
            self.key_serde = ctx.serdes().get::<K>();
        }
        if self.value_serde.is_none() {
            self.value_serde = ctx.serdes().get::<V>();
        }
        Ok(())
    }

    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, K, Change<VA>>,
        record: Record<K, V>,
    ) -> Result<()> {
        let null_key = self
            .key_serde
            .as_ref()
            .is_some_and(|s| s.is_null(&record.key));
        if null_key
            || self
                .value_serde
                .as_ref()
                .is_some_and(|s| s.is_null(&record.value))
        {
            let (topic, partition, offset) =
                ctx.record_metadata().map_or((String::new(), -1, -1), |m| {
                    (m.topic.clone(), m.partition, m.offset)
                });
            tracing::warn!(
                node = ctx.node_name(),
                topic,
                partition,
                offset,
                null_key,
                "Skipping record due to null key or value"
            );
            ctx.record_dropped();
            return Ok(());
        }
        let mut store = ctx.timestamped_key_value_store::<K, VA>(&self.store)?;
        let stored = store.get(&record.key)?;
        // Kafka's `KStreamAggregate` / `KStreamReduce`: a new aggregate takes the record's
        // timestamp, an updated one the larger of the record's and the stored aggregate's.
        let timestamp = stored
            .as_ref()
            .map_or(record.timestamp, |s| s.timestamp.max(record.timestamp));
        let old = stored.map(|s| s.value);
        let new = (self.combine)(&record.key, record.value, old.clone());
        store.put(&record.key, &ValueAndTimestamp::new(new.clone(), timestamp))?;
        if !self.cached {
            ctx.forward(Record {
                key: record.key,
                value: Change {
                    new: Some(new),
                    old,
                },
                timestamp,
                headers: record.headers,
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use streams_core::{I64Serde, Nullable, StreamsConfig, StringSerde, TopologyTestDriver};

    use crate::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};

    /// As Kafka's `KStreamAggregate`: a null value (tombstone) or a null key reaching an
    /// aggregation is skipped, counted as dropped, and changes no aggregate.
    #[test]
    fn aggregations_skip_null_keys_and_values_and_count_them() {
        let builder = StreamsBuilder::new();
        builder
            .stream(
                "in",
                Consumed::with(Nullable(StringSerde), Nullable(StringSerde)),
            )
            .group_by_key(Grouped::default())
            .count(Materialized::as_store("counts").in_memory())
            .to_stream()
            .to(
                "out",
                Produced::with(Nullable(StringSerde), Nullable(I64Serde)),
            );
        let driver =
            TopologyTestDriver::new(builder.build().unwrap(), StreamsConfig::new("app")).unwrap();
        let input = driver
            .create_input_topic("in", Nullable(StringSerde), Nullable(StringSerde))
            .unwrap();
        let k = || Some("k".to_owned());
        input.pipe_input(k(), Some("a".into())).unwrap();
        input.pipe_input(k(), None).unwrap();
        input.pipe_input(None, Some("b".into())).unwrap();
        input.pipe_input(k(), Some("c".into())).unwrap();
        let out = driver.create_output_topic("out", Nullable(StringSerde), Nullable(I64Serde));
        assert_eq!(
            out.read_key_values_to_vec().unwrap(),
            vec![(k(), Some(1)), (k(), Some(2))]
        );
        assert_eq!(driver.dropped_records(), 2);
    }

    /// Kafka's `KStreamAggregate`: an aggregate's timestamp is the largest timestamp of the
    /// records that made it (a new aggregate takes the record's, an update the larger of the
    /// record's and the stored one's), with the cache off and on (the driver flushes after
    /// every record).
    #[test]
    fn aggregate_timestamps_are_the_largest_of_their_records() {
        for caching in [false, true] {
            let builder = StreamsBuilder::new();
            let mut materialized = Materialized::as_store("counts");
            if !caching {
                materialized = materialized.with_caching_disabled();
            }
            builder
                .stream("in", Consumed::with(StringSerde, StringSerde))
                .group_by_key(Grouped::default())
                .count(materialized)
                .to_stream()
                .to("out", Produced::with(StringSerde, Nullable(I64Serde)));
            let driver =
                TopologyTestDriver::new(builder.build().unwrap(), StreamsConfig::new("app"))
                    .unwrap();
            let input = driver
                .create_input_topic("in", StringSerde, StringSerde)
                .unwrap();
            for (k, ts) in [("a", 10), ("a", 5), ("b", 7), ("a", 20), ("a", 15)] {
                input
                    .pipe_input_with_timestamp(k.into(), "v".into(), ts)
                    .unwrap();
            }
            let out = driver.create_output_topic("out", StringSerde, Nullable(I64Serde));
            let got: Vec<(String, Option<i64>, i64)> = out
                .read_records_to_vec()
                .unwrap()
                .into_iter()
                .map(|r| (r.key, r.value, r.timestamp))
                .collect();
            let want = [
                ("a", 1, 10),
                ("a", 2, 10),
                ("b", 1, 7),
                ("a", 3, 20),
                ("a", 4, 20),
            ];
            let want: Vec<(String, Option<i64>, i64)> = want
                .iter()
                .map(|&(k, v, ts)| (k.to_owned(), Some(v), ts))
                .collect();
            assert_eq!(got, want, "caching {caching}");
        }
    }

    /// The measured case: `groupByKey().count()` over a stream typed `String` (not
    /// `Option`) with one null-valued record. Kafka's `StringDeserializer` reads null bytes
    /// as null and `KStreamAggregate` skips the record; here a `String` cannot hold the null,
    /// so the source skips it — either way the others are counted, it is counted as dropped,
    /// and the application does not stop (the deserialization handler, `fail` by default, is
    /// not involved). A null key is skipped the same way.
    #[test]
    fn a_null_a_non_option_type_cannot_hold_is_skipped_not_a_failure() {
        let builder = StreamsBuilder::new();
        builder
            .stream("in", Consumed::with(StringSerde, StringSerde))
            .group_by_key(Grouped::default())
            .count(Materialized::as_store("counts"))
            .to_stream()
            .to("out", Produced::with(StringSerde, Nullable(I64Serde)));
        let driver =
            TopologyTestDriver::new(builder.build().unwrap(), StreamsConfig::new("app")).unwrap();
        let input = driver
            .create_input_topic("in", StringSerde, StringSerde)
            .unwrap();
        input.pipe_input("k".into(), "a".into()).unwrap();
        input
            .pipe_raw(Some(b"k".to_vec()), None, 1, Vec::new())
            .unwrap();
        input
            .pipe_raw(None, Some(b"b".to_vec()), 2, Vec::new())
            .unwrap();
        input.pipe_input("k".into(), "c".into()).unwrap();
        let out = driver.create_output_topic("out", StringSerde, Nullable(I64Serde));
        assert_eq!(
            out.read_key_values_to_vec().unwrap(),
            vec![("k".to_owned(), Some(1)), ("k".to_owned(), Some(2))]
        );
        assert_eq!(driver.dropped_records(), 2);
        assert_eq!(driver.skipped_records(), 0, "not deserialization errors");
    }
}
