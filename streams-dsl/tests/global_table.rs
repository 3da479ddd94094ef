#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `StreamsBuilder::global_table` on the `TopologyTestDriver`: the description Kafka gives
//! (`InternalTopologyBuilder#describe`: global stores numbered with the sub-topologies by
//! first node, printed as "Sub-topology: <n> for global store (will not generate tasks)"),
//! and the store's updates (Kafka's `KTableSource` rules; its driver's
//! `processGlobalRecord` for records piped or written to a global topic).

use std::sync::{Arc, Mutex};

use streams_core::{
    Nullable, Processor, ProcessorContext, Record, Result, StreamsConfig, StringSerde,
    TopologyTestDriver,
};
use streams_dsl::{Consumed, Materialized, Produced, StreamsBuilder};

/// `InternalTopologyBuilder#makeNodeGroups`: node groups take ids in the order of their
/// first node, the global one included, so the second stream is sub-topology 2 (tasks
/// `2_<p>`); `TopologyDescription#toString` prints a global store without a blank line
/// after it.
#[test]
fn global_store_is_numbered_and_described_as_kafka_does() {
    let builder = StreamsBuilder::new();
    builder
        .stream("a", Consumed::with(StringSerde, StringSerde))
        .to("b", Produced::default());
    let table = builder.global_table(
        "g",
        Consumed::with(StringSerde, StringSerde).with_name("gt"),
        Materialized::new(),
    );
    assert_eq!(table.store_name(), "g-STATE-STORE-0000000002");
    builder
        .stream("c", Consumed::with(StringSerde, StringSerde))
        .to("d", Produced::default());
    let topology = builder.build().unwrap();
    let text = topology.describe().unwrap().to_string();
    let expected = [
        "Topologies:",
        "   Sub-topology: 0",
        "    Source: KSTREAM-SOURCE-0000000000 (topics: [a])",
        "      --> KSTREAM-SINK-0000000001",
        "    Sink: KSTREAM-SINK-0000000001 (topic: b)",
        "      <-- KSTREAM-SOURCE-0000000000",
        "",
        "   Sub-topology: 1 for global store (will not generate tasks)",
        "    Source: gt-source (topics: [g])",
        "      --> gt",
        "    Processor: gt (stores: [g-STATE-STORE-0000000002])",
        "      --> none",
        "      <-- gt-source",
        "   Sub-topology: 2",
        "    Source: KSTREAM-SOURCE-0000000003 (topics: [c])",
        "      --> KSTREAM-SINK-0000000004",
        "    Sink: KSTREAM-SINK-0000000004 (topic: d)",
        "      <-- KSTREAM-SOURCE-0000000003",
    ]
    .join("\n");
    assert_eq!(text.trim_end(), expected, "\n{text}");

    let driver = TopologyTestDriver::new(topology, StreamsConfig::new("app")).unwrap();
    driver
        .create_input_topic("c", StringSerde, StringSerde)
        .unwrap()
        .pipe_input_with_timestamp("k".into(), "v".into(), 42)
        .unwrap();
    assert_eq!(driver.stream_time(2), Some(42));
    assert_eq!(driver.stream_time(1), None);
}

/// Reads every key it is asked for from the global store and records what it saw.
struct Probe(Arc<Mutex<Vec<Option<String>>>>);

impl Processor<String, String, String, String> for Probe {
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, String>,
        r: Record<String, String>,
    ) -> Result<()> {
        // The store's serdes are the global table's `Consumed` serdes.
        let store = ctx.global_store::<Option<String>, Option<String>>("rates")?;
        let key = Some(r.key);
        self.0.lock().unwrap().push(store.get(&key)?.flatten());
        if key.as_deref() == Some("eur") {
            // The timestamp of the record that wrote it.
            assert_eq!(store.get_with_timestamp(&key)?.unwrap().timestamp, 5);
        }
        Ok(())
    }
}

/// `KTableSource` on a global store: upsert, a null value deletes, a null key is skipped
/// and counted; records the topology itself writes to the global topic update the store
/// too (Kafka's driver feeds them to the global state).
#[test]
fn global_store_follows_its_topic() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let builder = StreamsBuilder::new();
    builder.global_table(
        "rates",
        Consumed::with(Nullable(StringSerde), Nullable(StringSerde)),
        Materialized::as_store("rates").in_memory(),
    );
    let s = Arc::clone(&seen);
    builder
        .stream("lookups", Consumed::with(StringSerde, StringSerde))
        .process(move || Probe(Arc::clone(&s)), &[]);
    builder
        .stream("rate-feed", Consumed::with(StringSerde, StringSerde))
        .map(|k: String, v: String| (Some(k), Some(v)))
        .to(
            "rates",
            Produced::with(Nullable(StringSerde), Nullable(StringSerde)),
        );
    let driver =
        TopologyTestDriver::new(builder.build().unwrap(), StreamsConfig::new("app")).unwrap();
    let rates = driver
        .create_input_topic("rates", Nullable(StringSerde), Nullable(StringSerde))
        .unwrap();
    let lookups = driver
        .create_input_topic("lookups", StringSerde, StringSerde)
        .unwrap();
    let feed = driver
        .create_input_topic("rate-feed", StringSerde, StringSerde)
        .unwrap();
    let some = |x: &str| Some(x.to_owned());
    let look = |k: &str| lookups.pipe_input(k.into(), String::new()).unwrap();

    rates
        .pipe_input_with_timestamp(some("eur"), some("1.0"), 5)
        .unwrap();
    rates.pipe_input(some("usd"), some("1.1")).unwrap();
    look("eur");
    look("usd");
    rates.pipe_input(some("usd"), None).unwrap(); // a tombstone deletes usd
    rates.pipe_input(None, some("9.9")).unwrap(); // a null key is skipped
    look("usd");
    feed.pipe_input("gbp".into(), "0.8".into()).unwrap();
    look("gbp");
    assert_eq!(
        *seen.lock().unwrap(),
        [some("1.0"), some("1.1"), None, some("0.8")]
    );
    assert_eq!(driver.dropped_records(), 1);
    assert_eq!(
        driver
            .read_key_value_store::<Option<String>, Option<String>>("rates")
            .unwrap(),
        [(some("eur"), some("1.0")), (some("gbp"), some("0.8"))]
    );
}

/// A processor asking for a global store that does not exist gets a typed error naming
/// the store.
#[test]
fn an_unknown_global_store_is_an_error() {
    struct Bad;
    impl Processor<String, String, String, String> for Bad {
        fn process(
            &mut self,
            ctx: &mut ProcessorContext<'_, String, String>,
            _r: Record<String, String>,
        ) -> Result<()> {
            ctx.global_store::<String, String>("nope")?;
            Ok(())
        }
    }
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Consumed::with(StringSerde, StringSerde))
        .process(|| Bad, &[]);
    let driver =
        TopologyTestDriver::new(builder.build().unwrap(), StreamsConfig::new("app")).unwrap();
    let err = driver
        .create_input_topic("in", StringSerde, StringSerde)
        .unwrap()
        .pipe_input("k".into(), "v".into())
        .unwrap_err()
        .to_string();
    assert!(err.contains("nope"), "{err}");
}
