#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `KStream::repartition` and `KStream::to_dynamic` on the real runtime and the embedded
//! broker: a repartition topic is created with the partition count `Repartitioned` gives
//! (Kafka's `InternalTopicProperties`), else with that of the sub-topology writing it
//! (Kafka's `RepartitionTopics` sizes it after its source topics); records go through it;
//! a dynamic sink writes to the topic each record names, and an unknown topic stops the
//! application with an error naming it.

mod common;

use std::time::Duration;

use broker_embedded::Broker;
use common::{read_partition, read_topic, record, wait_running, Env, Patience, WAIT};
use streams_core::{StreamsApp, StreamsState, StringSerde};
use streams_dsl::{Consumed, Produced, Repartitioned, StreamsBuilder};

/// Waits of these tests: [`WAIT`], looking every 20 ms.
const PATIENCE: Patience = Patience::new(WAIT, Duration::from_millis(20));

fn start(env: &Env, builder: &StreamsBuilder, app: &str) -> StreamsApp {
    let config = common::config(app, &env.state_dir());
    common::start_app(builder.build().unwrap(), config, &env.broker)
}

fn count(broker: &Broker, topic: &str) -> usize {
    read_topic(broker, topic).len()
}

fn produce(broker: &Broker, topic: &str, keys: &[&str]) {
    for (i, k) in keys.iter().enumerate() {
        let r = record(k, Some(&format!("v{i}")));
        broker.produce(topic, (i % 2) as i32, &[r]).unwrap();
    }
}

#[test]
fn repartition_topics_get_the_given_or_the_upstream_partition_count() {
    let env = Env::new(&[("in", 2), ("out", 3)]);
    let broker = &env.broker;
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Consumed::with(StringSerde, StringSerde))
        .repartition(Repartitioned::new())
        .repartition(Repartitioned::as_name("by-key").with_number_of_partitions(5))
        .to("out", Produced::default());
    let mut app = start(&env, &builder, "rep");
    wait_running(&app, WAIT);
    let partitions = |t: &str| broker.describe_topic(t).unwrap().partitions.len();
    assert_eq!(
        partitions("rep-KSTREAM-REPARTITION-0000000001-repartition"),
        2
    );
    assert_eq!(partitions("rep-by-key-repartition"), 5);
    let keys: Vec<String> = (0..40).map(|i| format!("k{i}")).collect();
    produce(
        broker,
        "in",
        &keys.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    PATIENCE.wait_for("every record through both repartition topics", || {
        count(broker, "out") == 40
    });
    // Partitioned by key: the 40 keys spread over the 5 partitions.
    let used = (0..5)
        .filter(|&p| !read_partition(broker, "rep-by-key-repartition", p, 0).is_empty())
        .count();
    assert!(used > 1, "{used}");
    app.close();
    assert!(app.errors().is_empty(), "{:?}", app.errors());
}

#[test]
fn dynamic_sinks_write_to_existing_topics_and_fail_on_unknown_ones() {
    let env = Env::new(&[("events", 2), ("events-a", 1), ("events-b", 1)]);
    let broker = &env.broker;
    let builder = StreamsBuilder::new();
    builder
        .stream("events", Consumed::with(StringSerde, StringSerde))
        .to_dynamic(
            |k: &String, _v: &String| format!("events-{k}"),
            Produced::default(),
        );
    let mut app = start(&env, &builder, "dyn");
    wait_running(&app, WAIT);
    produce(broker, "events", &["a", "b", "a"]);
    PATIENCE.wait_for("both topics", || {
        count(broker, "events-a") == 2 && count(broker, "events-b") == 1
    });
    // A record naming a topic that does not exist stops the application, naming it.
    produce(broker, "events", &["zzz"]);
    PATIENCE.wait_for("the application to stop in ERROR", || {
        app.state() == StreamsState::Error
    });
    let errors = app.errors().join("; ");
    assert!(errors.contains("events-zzz"), "{errors}");
    app.close();
}
