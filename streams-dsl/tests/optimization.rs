#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `topology.optimization=reuse.ktable.source.topics` on the test driver: a source table's
//! store writes no changelog (Kafka's `TableSourceNode` disables logging and connects the
//! store to its source topic), while other stores still log; the table behaves the same.

use streams_core::{I64Serde, Nullable, StreamsConfig, StringSerde, TopologyTestDriver};
use streams_dsl::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};

fn run(config: StreamsConfig) -> (usize, usize, Vec<(String, Option<i64>)>) {
    let builder = StreamsBuilder::new();
    builder
        .table(
            "users",
            Consumed::with(StringSerde, StringSerde),
            Materialized::as_store("users-store"),
        )
        .group_by(
            |_u: &String, region: &String| (region.clone(), region.clone()),
            Grouped::with(StringSerde, StringSerde),
        )
        .count(Materialized::as_store("counts"))
        .to_stream()
        .to("out", Produced::with(StringSerde, Nullable(I64Serde)));
    let driver = TopologyTestDriver::new(builder.build().unwrap(), config).unwrap();
    let users = driver
        .create_input_topic("users", StringSerde, Nullable(StringSerde))
        .unwrap();
    users.pipe_input("ann".into(), Some("eu".into())).unwrap();
    users.pipe_input("bob".into(), Some("eu".into())).unwrap();
    users.pipe_input("ann".into(), Some("us".into())).unwrap();
    users.pipe_input("bob".into(), None).unwrap();
    let out = driver
        .create_output_topic("out", StringSerde, Nullable(I64Serde))
        .read_key_values_to_vec()
        .unwrap();
    (
        driver.produced_count("app-users-store-changelog"),
        driver.produced_count("app-counts-changelog"),
        out,
    )
}

#[test]
fn reusing_the_source_topic_writes_no_table_changelog() {
    let (table_log, counts_log, plain) = run(StreamsConfig::new("app"));
    assert_eq!(table_log, 4);
    assert!(counts_log > 0);
    let optimized = StreamsConfig::new("app")
        .topology_optimization("reuse.ktable.source.topics")
        .unwrap();
    let (table_log, counts_log_opt, out) = run(optimized);
    assert_eq!(table_log, 0);
    assert_eq!(counts_log_opt, counts_log);
    assert_eq!(out, plain);
    let all = StreamsConfig::from_properties([
        ("application.id", "app"),
        ("topology.optimization", "all"),
    ])
    .unwrap();
    assert_eq!(run(all).0, 0);
}
