#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `max.task.idle.ms` in a task with two input partitions (a processor fed by two sources,
//! as a join or a merge is): with the default (0) a record is processed as soon as the other
//! partition is known to be caught up; with a longer idle time the task waits for the other
//! partition up to that long (wall clock), so records of both are processed in timestamp
//! order; with -1 it never waits.

use std::time::Duration;

use streams_core::*;

struct Pass;
impl Processor<String, String> for Pass {
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, String>,
        r: Record<String, String>,
    ) -> Result<()> {
        ctx.forward(r)
    }
}

/// The driver, the `left` and `right` input topics and the output topic.
type Merged = (
    TopologyTestDriver,
    TestInputTopic<String, String>,
    TestInputTopic<String, String>,
    TestOutputTopic<String, String>,
);

fn merged(idle: Option<Duration>) -> Merged {
    let mut t = Topology::new();
    t.add_source(Source::<String, String>::new("left", ["left"]))
        .unwrap();
    t.add_source(Source::<String, String>::new("right", ["right"]))
        .unwrap();
    t.add_processor("merge", || Pass, &["left", "right"])
        .unwrap();
    t.add_sink(Sink::<String, String>::new("out", "out"), &["merge"])
        .unwrap();
    let config = StreamsConfig::new("idle").max_task_idle(idle);
    let d = TopologyTestDriver::with_wall_clock(t, config, 1_000_000).unwrap();
    let left = d
        .create_input_topic("left", StringSerde, StringSerde)
        .unwrap();
    let right = d
        .create_input_topic("right", StringSerde, StringSerde)
        .unwrap();
    let out = d.create_output_topic("out", StringSerde, StringSerde);
    (d, left, right, out)
}

fn values(out: &TestOutputTopic<String, String>) -> Vec<String> {
    out.read_key_values_to_vec()
        .unwrap()
        .into_iter()
        .map(|(_, v)| v)
        .collect()
}

#[test]
fn default_idle_processes_at_once_when_the_other_partition_is_caught_up() {
    let (_d, left, right, out) = merged(Some(Duration::ZERO));
    left.pipe_input_with_timestamp("k".into(), "l10".into(), 10)
        .unwrap();
    right
        .pipe_input_with_timestamp("k".into(), "r5".into(), 5)
        .unwrap();
    assert_eq!(values(&out), vec!["l10", "r5"]);
}

#[test]
fn a_longer_idle_time_waits_for_the_other_partition_and_orders_by_timestamp() {
    let (d, left, right, out) = merged(Some(Duration::from_millis(100)));
    left.pipe_input_with_timestamp("k".into(), "l10".into(), 10)
        .unwrap();
    assert!(out.is_empty(), "the task waits for `right`");
    right
        .pipe_input_with_timestamp("k".into(), "r5".into(), 5)
        .unwrap();
    // Both partitions buffered: lowest timestamp first, then `right` is empty again and
    // holds `l10` back until the idle time passes.
    assert_eq!(values(&out), vec!["r5"]);
    d.advance_wall_clock_time(Duration::from_millis(99))
        .unwrap();
    assert!(out.is_empty(), "not yet: 99 of 100 ms");
    d.advance_wall_clock_time(Duration::from_millis(1)).unwrap();
    assert_eq!(values(&out), vec!["l10"]);
}

#[test]
fn disabled_idle_never_waits() {
    let (_d, left, _right, out) = merged(None);
    left.pipe_input_with_timestamp("k".into(), "l10".into(), 10)
        .unwrap();
    assert_eq!(values(&out), vec!["l10"]);
}

#[test]
fn max_task_idle_ms_is_read_from_properties() {
    let c = StreamsConfig::from_properties([("application.id", "x"), ("max.task.idle.ms", "-1")])
        .unwrap();
    assert!(format!("{c:?}").contains("max_task_idle_ms: -1"));
    assert!(
        StreamsConfig::from_properties([("application.id", "x"), ("max.task.idle.ms", "-2")])
            .is_err()
    );
}
