#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Generated node, store and repartition-topic names match Kafka Streams' for the same
//! DSL program (they decide changelog and repartition topic names, so they must).

use streams_core::{I64Serde, Nullable, StringSerde};
use streams_dsl::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};

/// Kafka's word-count tutorial (`Materialized.as("counts-store")`): its
/// `topology.describe()` output, as printed in Kafka's documentation.
#[test]
fn word_count_with_a_named_store_is_described_as_kafka_describes_it() {
    let builder = StreamsBuilder::new();
    builder
        .stream(
            "streams-plaintext-input",
            Consumed::with(StringSerde, StringSerde),
        )
        .flat_map_values(|line: String| {
            line.to_lowercase()
                .split(' ')
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .group_by(
            |_k: &String, word: &String| word.clone(),
            Grouped::with(StringSerde, StringSerde),
        )
        .count(Materialized::as_store("counts-store"))
        .to_stream()
        .to(
            "streams-wordcount-output",
            Produced::with(StringSerde, Nullable(I64Serde)),
        );
    let text = builder.build().unwrap().describe().unwrap().to_string();
    let expected = [
        "Topologies:",
        "   Sub-topology: 0",
        "    Source: KSTREAM-SOURCE-0000000000 (topics: [streams-plaintext-input])",
        "      --> KSTREAM-FLATMAPVALUES-0000000001",
        "    Processor: KSTREAM-FLATMAPVALUES-0000000001 (stores: [])",
        "      --> KSTREAM-KEY-SELECT-0000000002",
        "      <-- KSTREAM-SOURCE-0000000000",
        "    Processor: KSTREAM-KEY-SELECT-0000000002 (stores: [])",
        "      --> counts-store-repartition-filter",
        "      <-- KSTREAM-FLATMAPVALUES-0000000001",
        "    Processor: counts-store-repartition-filter (stores: [])",
        "      --> counts-store-repartition-sink",
        "      <-- KSTREAM-KEY-SELECT-0000000002",
        "    Sink: counts-store-repartition-sink (topic: counts-store-repartition)",
        "      <-- counts-store-repartition-filter",
        "",
        "   Sub-topology: 1",
        "    Source: counts-store-repartition-source (topics: [counts-store-repartition])",
        "      --> KSTREAM-AGGREGATE-0000000003",
        "    Processor: KSTREAM-AGGREGATE-0000000003 (stores: [counts-store])",
        "      --> KTABLE-TOSTREAM-0000000007",
        "      <-- counts-store-repartition-source",
        "    Processor: KTABLE-TOSTREAM-0000000007 (stores: [])",
        "      --> KSTREAM-SINK-0000000008",
        "      <-- KSTREAM-AGGREGATE-0000000003",
        "    Sink: KSTREAM-SINK-0000000008 (topic: streams-wordcount-output)",
        "      <-- KTABLE-TOSTREAM-0000000007",
        "",
    ]
    .join("\n");
    assert_eq!(text.trim_end(), expected.trim_end(), "\n{text}");
}

/// Unnamed stores take generated names, and so do the repartition nodes made for them:
/// store, processor, then sink, filter and source, from one counter.
#[test]
fn generated_store_names_give_generated_repartition_nodes() {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Consumed::with(StringSerde, StringSerde))
        .group_by(
            |_k: &String, v: &String| v.clone(),
            Grouped::with(StringSerde, StringSerde),
        )
        .reduce(|a: String, b: String| a + &b, Materialized::default())
        .to_stream()
        .to("out", Produced::with(StringSerde, Nullable(StringSerde)));
    let text = builder.build().unwrap().describe().unwrap().to_string();
    for line in [
        "Processor: KSTREAM-KEY-SELECT-0000000001 (stores: [])",
        "      --> KSTREAM-FILTER-0000000005",
        "Processor: KSTREAM-FILTER-0000000005 (stores: [])",
        "Sink: KSTREAM-SINK-0000000004 (topic: KSTREAM-REDUCE-STATE-STORE-0000000002-repartition)",
        "Source: KSTREAM-SOURCE-0000000006 (topics: [KSTREAM-REDUCE-STATE-STORE-0000000002-repartition])",
        "Processor: KSTREAM-REDUCE-0000000003 (stores: [KSTREAM-REDUCE-STATE-STORE-0000000002])",
        "      --> KTABLE-TOSTREAM-0000000007",
    ] {
        assert!(text.contains(line), "missing `{line}` in\n{text}");
    }
    assert!(
        !text.contains("MAPVALUES"),
        "reduce has no extra node:\n{text}"
    );
}
