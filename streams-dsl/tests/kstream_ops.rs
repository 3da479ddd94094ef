#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `split`, `merge`, `repartition`, `to_table` and `to_dynamic`: the names `describe()`
//! gives match what Kafka Streams gives the same program (derived from `KStreamImpl`,
//! `BranchedKStreamImpl` and `InternalTopologyBuilder`'s `NodeComparator`), and the
//! records go where Kafka sends them.

use streams_core::{I64Serde, Nullable, StreamsConfig, StringSerde, TopologyTestDriver, VoidSerde};
use streams_dsl::{
    Branched, Consumed, Grouped, Materialized, Named, Produced, Repartitioned, StreamsBuilder,
};

fn describe(builder: &StreamsBuilder) -> String {
    builder.build().unwrap().describe().unwrap().to_string()
}

fn check(text: &str, expected: &[&str]) {
    assert_eq!(text.trim_end(), expected.join("\n").trim_end(), "\n{text}");
}

/// `BranchedKStreamImpl`: the splitter is `KSTREAM-BRANCH-<n>`; each branch is named
/// splitter + branch name or index ("0" for the default), and `createBranch` burns one
/// counter value per branch (`newProcessorName(branchChildName)`). Nodes and successors in
/// `NodeComparator` order (larger sub-graph first, then name).
#[test]
fn split_is_described_as_kafka_describes_it() {
    let builder = StreamsBuilder::new();
    let mut branches = builder
        .stream("in", Consumed::with(StringSerde, I64Serde))
        .split()
        .branch(
            |_k: &String, v: &i64| *v < 0,
            Branched::with_consumer(|s| s.to("a", Produced::default())),
        )
        .branch(|_k: &String, v: &i64| *v == 0, Branched::as_name("two"))
        .default_branch(Branched::new());
    assert_eq!(
        branches.keys().collect::<Vec<_>>(),
        ["KSTREAM-BRANCH-00000000010", "KSTREAM-BRANCH-0000000001two"]
    );
    branches
        .remove("KSTREAM-BRANCH-0000000001two")
        .unwrap()
        .to("b", Produced::default());
    branches
        .remove("KSTREAM-BRANCH-00000000010")
        .unwrap()
        .to("c", Produced::default());
    check(
        &describe(&builder),
        &[
            "Topologies:",
            "   Sub-topology: 0",
            "    Source: KSTREAM-SOURCE-0000000000 (topics: [in])",
            "      --> KSTREAM-BRANCH-0000000001",
            "    Processor: KSTREAM-BRANCH-0000000001 (stores: [])",
            "      --> KSTREAM-BRANCH-00000000010, KSTREAM-BRANCH-00000000011, KSTREAM-BRANCH-0000000001two",
            "      <-- KSTREAM-SOURCE-0000000000",
            "    Processor: KSTREAM-BRANCH-00000000010 (stores: [])",
            "      --> KSTREAM-SINK-0000000007",
            "      <-- KSTREAM-BRANCH-0000000001",
            "    Processor: KSTREAM-BRANCH-00000000011 (stores: [])",
            "      --> KSTREAM-SINK-0000000003",
            "      <-- KSTREAM-BRANCH-0000000001",
            "    Processor: KSTREAM-BRANCH-0000000001two (stores: [])",
            "      --> KSTREAM-SINK-0000000006",
            "      <-- KSTREAM-BRANCH-0000000001",
            "    Sink: KSTREAM-SINK-0000000003 (topic: a)",
            "      <-- KSTREAM-BRANCH-00000000011",
            "    Sink: KSTREAM-SINK-0000000006 (topic: b)",
            "      <-- KSTREAM-BRANCH-0000000001two",
            "    Sink: KSTREAM-SINK-0000000007 (topic: c)",
            "      <-- KSTREAM-BRANCH-00000000010",
        ],
    );
}

/// `KStreamBranch`: a record goes to the first branch whose predicate passes (never two),
/// else to the default branch; with `noDefaultBranch` it is dropped.
#[test]
fn split_routes_each_record_to_the_first_matching_branch() {
    let builder = StreamsBuilder::new();
    let branches = builder
        .stream("in", Consumed::with(StringSerde, I64Serde))
        .named(Named::as_name("s-"))
        .split()
        .branch(
            |_k: &String, v: &i64| *v % 2 == 0,
            Branched::as_name("even"),
        )
        .branch(
            |_k: &String, v: &i64| *v % 3 == 0,
            Branched::as_name("three"),
        )
        .no_default_branch();
    for (name, stream) in branches {
        stream.to(&format!("out-{name}"), Produced::default());
    }
    let driver =
        TopologyTestDriver::new(builder.build().unwrap(), StreamsConfig::new("app")).unwrap();
    let input = driver
        .create_input_topic("in", StringSerde, I64Serde)
        .unwrap();
    for v in 1..=9 {
        input.pipe_input("k".into(), v).unwrap();
    }
    let read = |t: &str| {
        driver
            .create_output_topic(t, StringSerde, I64Serde)
            .read_values_to_vec()
            .unwrap()
    };
    assert_eq!(read("out-s-even"), [2, 4, 6, 8]);
    assert_eq!(read("out-s-three"), [3, 9]); // 6 went to the first branch only
}

/// `KStreamImpl#merge`: `KSTREAM-MERGE-<n>` with both parents; the merged stream needs
/// repartitioning if either input did, so the grouping reads through `c-repartition`.
fn merge_program() -> StreamsBuilder {
    let builder = StreamsBuilder::new();
    let a = builder
        .stream("a", Consumed::with(StringSerde, StringSerde))
        .select_key(|_k: &String, v: &String| v.clone());
    let b = builder.stream("b", Consumed::with(StringSerde, StringSerde));
    a.merge(b)
        .group_by_key(Grouped::with(StringSerde, StringSerde))
        .count(Materialized::as_store("c"))
        .to_stream()
        .to("out", Produced::with(StringSerde, Nullable(I64Serde)));
    builder
}

#[test]
fn merge_keeps_the_repartition_flag_of_a_key_changed_input() {
    check(
        &describe(&merge_program()),
        &[
            "Topologies:",
            "   Sub-topology: 0",
            "    Source: KSTREAM-SOURCE-0000000000 (topics: [a])",
            "      --> KSTREAM-KEY-SELECT-0000000001",
            "    Processor: KSTREAM-KEY-SELECT-0000000001 (stores: [])",
            "      --> KSTREAM-MERGE-0000000003",
            "      <-- KSTREAM-SOURCE-0000000000",
            "    Source: KSTREAM-SOURCE-0000000002 (topics: [b])",
            "      --> KSTREAM-MERGE-0000000003",
            "    Processor: KSTREAM-MERGE-0000000003 (stores: [])",
            "      --> c-repartition-filter",
            "      <-- KSTREAM-KEY-SELECT-0000000001, KSTREAM-SOURCE-0000000002",
            "    Processor: c-repartition-filter (stores: [])",
            "      --> c-repartition-sink",
            "      <-- KSTREAM-MERGE-0000000003",
            "    Sink: c-repartition-sink (topic: c-repartition)",
            "      <-- c-repartition-filter",
            "",
            "   Sub-topology: 1",
            "    Source: c-repartition-source (topics: [c-repartition])",
            "      --> KSTREAM-AGGREGATE-0000000004",
            "    Processor: KSTREAM-AGGREGATE-0000000004 (stores: [c])",
            "      --> KTABLE-TOSTREAM-0000000008",
            "      <-- c-repartition-source",
            "    Processor: KTABLE-TOSTREAM-0000000008 (stores: [])",
            "      --> KSTREAM-SINK-0000000009",
            "      <-- KSTREAM-AGGREGATE-0000000004",
            "    Sink: KSTREAM-SINK-0000000009 (topic: out)",
            "      <-- KTABLE-TOSTREAM-0000000008",
        ],
    );
}

/// Records of both inputs reach the count, the re-keyed ones by their new key.
#[test]
fn merge_forwards_both_inputs() {
    let builder = merge_program();
    let driver =
        TopologyTestDriver::new(builder.build().unwrap(), StreamsConfig::new("app")).unwrap();
    let a = driver
        .create_input_topic("a", StringSerde, StringSerde)
        .unwrap();
    let b = driver
        .create_input_topic("b", StringSerde, StringSerde)
        .unwrap();
    a.pipe_input("ignored".into(), "x".into()).unwrap();
    b.pipe_input("x".into(), "whatever".into()).unwrap();
    b.pipe_input("y".into(), "whatever".into()).unwrap();
    let counts = driver
        .create_output_topic("out", StringSerde, I64Serde)
        .read_key_values_to_map()
        .unwrap();
    assert_eq!((counts["x"], counts["y"]), (2, 1));
    assert!(!counts.contains_key("ignored"));
}

/// `KStreamImpl#toTable` after a key change: processor name first, then (unnamed) the
/// store `KSTREAM-TOTABLE-STATE-STORE-<n>`, then the repartition step named after the
/// processor (a generated name, so generated sink/filter/source names).
#[test]
fn to_table_after_a_key_change_repartitions_first() {
    let builder = StreamsBuilder::new();
    let table = builder
        .stream("in", Consumed::with(StringSerde, StringSerde))
        .select_key(|_k: &String, v: &String| v.clone())
        .to_table(Materialized::new());
    assert_eq!(
        table.store_name(),
        Some("KSTREAM-TOTABLE-STATE-STORE-0000000003")
    );
    table
        .to_stream()
        .to("out", Produced::with(StringSerde, Nullable(StringSerde)));
    check(
        &describe(&builder),
        &[
            "Topologies:",
            "   Sub-topology: 0",
            "    Source: KSTREAM-SOURCE-0000000000 (topics: [in])",
            "      --> KSTREAM-KEY-SELECT-0000000001",
            "    Processor: KSTREAM-KEY-SELECT-0000000001 (stores: [])",
            "      --> KSTREAM-FILTER-0000000005",
            "      <-- KSTREAM-SOURCE-0000000000",
            "    Processor: KSTREAM-FILTER-0000000005 (stores: [])",
            "      --> KSTREAM-SINK-0000000004",
            "      <-- KSTREAM-KEY-SELECT-0000000001",
            "    Sink: KSTREAM-SINK-0000000004 (topic: KSTREAM-TOTABLE-0000000002-repartition)",
            "      <-- KSTREAM-FILTER-0000000005",
            "",
            "   Sub-topology: 1",
            "    Source: KSTREAM-SOURCE-0000000006 (topics: [KSTREAM-TOTABLE-0000000002-repartition])",
            "      --> KSTREAM-TOTABLE-0000000002",
            "    Processor: KSTREAM-TOTABLE-0000000002 (stores: [KSTREAM-TOTABLE-STATE-STORE-0000000003])",
            "      --> KTABLE-TOSTREAM-0000000007",
            "      <-- KSTREAM-SOURCE-0000000006",
            "    Processor: KTABLE-TOSTREAM-0000000007 (stores: [])",
            "      --> KSTREAM-SINK-0000000008",
            "      <-- KSTREAM-TOTABLE-0000000002",
            "    Sink: KSTREAM-SINK-0000000008 (topic: out)",
            "      <-- KTABLE-TOSTREAM-0000000007",
        ],
    );
}

/// `KTableSource` semantics through `toTable`: upserts, a null value deletes, a null key
/// is skipped and counted.
#[test]
fn to_table_upserts_deletes_on_null_and_skips_null_keys() {
    let builder = StreamsBuilder::new();
    builder
        .stream(
            "in",
            Consumed::with(Nullable(StringSerde), Nullable(StringSerde)),
        )
        .to_table(Materialized::as_store("t").with_caching_disabled())
        .to_stream()
        .to(
            "out",
            Produced::with(Nullable(StringSerde), Nullable(Nullable(StringSerde))),
        );
    let driver =
        TopologyTestDriver::new(builder.build().unwrap(), StreamsConfig::new("app")).unwrap();
    let input = driver
        .create_input_topic("in", Nullable(StringSerde), Nullable(StringSerde))
        .unwrap();
    let s = |x: &str| Some(x.to_owned());
    input.pipe_input(s("a"), s("1")).unwrap();
    input.pipe_input(s("b"), s("2")).unwrap();
    input.pipe_input(None, s("3")).unwrap();
    input.pipe_input(s("a"), None).unwrap();
    input.pipe_input(s("b"), s("4")).unwrap();
    let out = driver.create_output_topic("out", Nullable(StringSerde), Nullable(StringSerde));
    assert_eq!(
        out.read_key_values_to_vec().unwrap(),
        [
            (s("a"), s("1")),
            (s("b"), s("2")),
            (s("a"), None),
            (s("b"), s("4"))
        ]
    );
    assert_eq!(
        driver
            .read_key_value_store::<Option<String>, Option<String>>("t")
            .unwrap(),
        [(s("b"), s("4"))]
    );
    assert_eq!(driver.dropped_records(), 1);
}

/// `KStreamImpl#repartition`: the name is drawn before the repartition step
/// (`KSTREAM-REPARTITION-<n>`), which then draws sink, filter and source; a
/// `Repartitioned` name gives `<name>-repartition-{sink,filter,source}`.
#[test]
fn repartition_names_as_kafka() {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Consumed::with(VoidSerde, StringSerde))
        .repartition(Repartitioned::new())
        .repartition(Repartitioned::as_name("again").with_number_of_partitions(3))
        .to("out", Produced::default());
    check(
        &describe(&builder),
        &[
            "Topologies:",
            "   Sub-topology: 0",
            "    Source: KSTREAM-SOURCE-0000000000 (topics: [in])",
            "      --> KSTREAM-FILTER-0000000003",
            "    Processor: KSTREAM-FILTER-0000000003 (stores: [])",
            "      --> KSTREAM-SINK-0000000002",
            "      <-- KSTREAM-SOURCE-0000000000",
            "    Sink: KSTREAM-SINK-0000000002 (topic: KSTREAM-REPARTITION-0000000001-repartition)",
            "      <-- KSTREAM-FILTER-0000000003",
            "",
            "   Sub-topology: 1",
            "    Source: KSTREAM-SOURCE-0000000004 (topics: [KSTREAM-REPARTITION-0000000001-repartition])",
            "      --> again-repartition-filter",
            "    Processor: again-repartition-filter (stores: [])",
            "      --> again-repartition-sink",
            "      <-- KSTREAM-SOURCE-0000000004",
            "    Sink: again-repartition-sink (topic: again-repartition)",
            "      <-- again-repartition-filter",
            "",
            "   Sub-topology: 2",
            "    Source: again-repartition-source (topics: [again-repartition])",
            "      --> KSTREAM-SINK-0000000008",
            "    Sink: KSTREAM-SINK-0000000008 (topic: out)",
            "      <-- again-repartition-source",
        ],
    );
}

/// A partition count below 1 is refused when the topology is built.
#[test]
fn repartition_refuses_zero_partitions() {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Consumed::with(StringSerde, StringSerde))
        .repartition(Repartitioned::number_of_partitions(0))
        .to("out", Produced::default());
    let err = builder.build().unwrap_err().to_string();
    assert!(err.contains("at least 1"), "{err}");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Oracle (Kafka's `KStreamBranch#process`): each record goes to the first branch whose
    /// predicate holds, else to the default branch if there is one; merging the branches
    /// back gives every routed record once, in input order.
    #[test]
    fn split_routes_as_the_first_match_model(
        values in proptest::collection::vec(-50i64..50, 0..40),
        thresholds in proptest::collection::vec(-50i64..50, 1..4),
        with_default in proptest::bool::ANY,
    ) {
        let builder = StreamsBuilder::new();
        let mut split = builder
            .stream("in", Consumed::with(StringSerde, I64Serde))
            .split();
        for (i, t) in thresholds.iter().copied().enumerate() {
            split = split.branch(
                move |_k: &String, v: &i64| *v < t,
                Branched::with_consumer(move |s| s.to(&format!("b{i}"), Produced::default())),
            );
        }
        let branches = if with_default {
            split.default_branch(Branched::as_name("rest"))
        } else {
            split.no_default_branch()
        };
        for (_, s) in branches {
            s.to("rest", Produced::default());
        }
        let driver = TopologyTestDriver::new(builder.build().unwrap(), StreamsConfig::new("app"))
            .unwrap();
        let input = driver.create_input_topic("in", StringSerde, I64Serde).unwrap();
        for v in &values {
            input.pipe_input("k".into(), *v).unwrap();
        }
        let mut expected: Vec<Vec<i64>> = vec![Vec::new(); thresholds.len() + 1];
        for v in &values {
            match thresholds.iter().position(|t| v < t) {
                Some(i) => expected[i].push(*v),
                None if with_default => expected[thresholds.len()].push(*v),
                None => {}
            }
        }
        for (i, want) in expected.iter().enumerate() {
            let topic = if i == thresholds.len() { "rest".to_owned() } else { format!("b{i}") };
            let got = driver
                .create_output_topic(&topic, StringSerde, I64Serde)
                .read_values_to_vec()
                .unwrap();
            proptest::prop_assert_eq!(&got, want, "branch {}", topic);
        }
    }
}
