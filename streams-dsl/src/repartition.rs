//! The repartition step, as Kafka Streams builds it: a null-key filter, a sink writing to
//! `<prefix>-repartition` and a source reading it back, so that records with the same key
//! meet in the same task. Aggregations and `KStream::to_table` use it after a key change,
//! `KStream::repartition` always, and joins repartition both sides with it.

use streams_core::{Record, SharedSerde, Sink, Source, StreamPartitioner, repartition_topic};

use crate::builder::Shared;
use crate::processors::stateless;

/// Kafka's test for a generated name (`KSTREAM-...-0000000003`): repartition nodes made
/// for it take generated names too; for a user-given name they are named after the topic
/// (Java's `name.matches("KSTREAM.*-[0-9]{10}")`).
fn is_generated(name: &str) -> bool {
    let bytes = name.as_bytes();
    name.starts_with("KSTREAM")
        && bytes.len() >= "KSTREAM".len() + 11
        && bytes[bytes.len() - 11] == b'-'
        && bytes[bytes.len() - 10..].iter().all(u8::is_ascii_digit)
}

/// Adds a repartition step after node `parent` for the repartition topic named after
/// `prefix` (a store name, or the name given by `Grouped`). Returns the name of the source
/// node reading the topic back: the parent of what follows.
///
/// Node names follow Kafka's `createRepartitionedSource`: the sink, filter and source
/// names are always drawn from the counter (in that order); they are used when `prefix`
/// is generated, otherwise the nodes are `<topic>-sink`, `<topic>-filter`, `<topic>-source`.
pub(crate) fn repartition<K, V>(
    state: &Shared,
    parent: &str,
    prefix: &str,
    key_serde: Option<SharedSerde<K>>,
    value_serde: Option<SharedSerde<V>>,
) -> String
where
    K: Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    repartition_with(
        state,
        parent,
        prefix,
        key_serde,
        value_serde,
        RepartitionTopic::default(),
    )
}

/// What `KStream::repartition` (Kafka's `Repartitioned`) adds to the repartition step: a
/// fixed partition count for the topic (else it has the partition count of the
/// sub-topology writing to it) and a partitioner for its sink.
pub(crate) struct RepartitionTopic<K, V> {
    pub(crate) partitions: Option<i32>,
    pub(crate) partitioner: Option<StreamPartitioner<K, V>>,
}

impl<K, V> Default for RepartitionTopic<K, V> {
    fn default() -> Self {
        RepartitionTopic {
            partitions: None,
            partitioner: None,
        }
    }
}

/// [`repartition`] with a fixed partition count and/or a partitioner.
pub(crate) fn repartition_with<K, V>(
    state: &Shared,
    parent: &str,
    prefix: &str,
    key_serde: Option<SharedSerde<K>>,
    value_serde: Option<SharedSerde<V>>,
    options: RepartitionTopic<K, V>,
) -> String
where
    K: Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    let topic = repartition_topic(prefix);
    let mut s = state.borrow_mut();
    let generated = (
        s.next_name("KSTREAM-SINK-"),
        s.next_name("KSTREAM-FILTER-"),
        s.next_name("KSTREAM-SOURCE-"),
    );
    let (sink_name, filter_name, source_name) = if is_generated(prefix) {
        generated
    } else {
        (
            format!("{topic}-sink"),
            format!("{topic}-filter"),
            format!("{topic}-source"),
        )
    };
    // The filter node drops null keys in Kafka; here a key is null when its serde makes it
    // null, which the sink sees when it serializes it (`skip_null_keys`), so the filter
    // node forwards as is and no key is serialized twice.
    let filter = || stateless(|ctx, r: Record<K, V>| ctx.forward(r));
    let mut sink = Sink::<K, V>::new(sink_name.clone(), topic.clone())
        .serdes(key_serde.clone(), value_serde.clone())
        .skip_null_keys();
    if let Some(p) = options.partitioner {
        sink = sink.partitioner(p);
    }
    let source =
        Source::<K, V>::new(source_name.clone(), [topic.clone()]).serdes(key_serde, value_serde);
    let from = parent.to_owned();
    s.apply(|t| {
        t.add_repartition_topic(&topic, options.partitions)?;
        t.add_processor(&filter_name, filter, &[&from])?;
        t.add_sink(sink, &[&filter_name])?;
        t.add_source(source)?;
        Ok(())
    });
    source_name
}

/// The repartition step of a join (Kafka's `KStreamImpl#repartitionForJoin`): as
/// [`repartition`], except that a stream repartitioned under its own node name is
/// repartitioned once, however many joins read it: a later join draws the three names
/// again (Kafka burns them for compatibility) and reads the first repartition topic.
pub(crate) fn repartition_for_join<K, V>(
    state: &Shared,
    parent: &str,
    prefix: &str,
    key_serde: Option<SharedSerde<K>>,
    value_serde: Option<SharedSerde<V>>,
) -> String
where
    K: Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    if prefix == parent {
        let mut s = state.borrow_mut();
        if let Some(source) = s.join_repartitions.get(parent).cloned() {
            for p in ["KSTREAM-SINK-", "KSTREAM-FILTER-", "KSTREAM-SOURCE-"] {
                s.next_name(p);
            }
            return source;
        }
    }
    let source = repartition(state, parent, prefix, key_serde, value_serde);
    if prefix == parent {
        state
            .borrow_mut()
            .join_repartitions
            .insert(parent.to_owned(), source.clone());
    }
    source
}

#[cfg(test)]
mod tests {
    use super::is_generated;

    #[test]
    fn generated_names_as_kafka_tells_them() {
        assert!(is_generated("KSTREAM-AGGREGATE-STATE-STORE-0000000003"));
        assert!(is_generated("KSTREAM-0000000003"));
        assert!(!is_generated("counts-store"));
        assert!(!is_generated("KSTREAM-AGGREGATE-STATE-STORE-000000003"));
        assert!(!is_generated("KSTREAM-AGGREGATE-STATE-STORE-00000000x3"));
        assert!(!is_generated("my-KSTREAM-0000000003"));
    }
}
