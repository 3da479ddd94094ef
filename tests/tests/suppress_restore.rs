#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `suppress(untilWindowCloses(unbounded()))` on the real runtime and the embedded broker:
//! the buffer's changelog (`<app>-<name>-store-changelog`, compacted) holds Kafka's
//! version-3 buffer records (header `v` = 3); an application closed with windows still in
//! its suppression buffer, restarted without its local state, restores the buffer from
//! the changelog and emits their final results when a later record closes them: nothing
//! lost, and (after a clean close) exactly one final result per window over both runs.
//! Killed (SIGKILL, a child process) part way with uncommitted work, the restarted
//! application still emits every window's final result, none below its true count
//! (at-least-once). A buffer that shuts down when full stops the application in ERROR
//! with `StreamsError::SuppressionBufferFull`.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use broker_embedded::{record::Record, Broker, BrokerConfig, NewTopic, ProduceRecord};
use common::{
    counts_per_window, kill, open_broker, spawn_child_test, timed, topic_configs, wait_for, Env,
    WAIT,
};
use streams_core::{I64Serde, Serde, StreamsApp, StreamsState, StringSerde, TimeWindowedSerde};
use streams_dsl::{
    BufferConfig, Consumed, Grouped, Materialized, Produced, StreamsBuilder, Suppressed,
    TimeWindows,
};

const APP: &str = "suppress-app";
const INPUT: &str = "clicks";
const OUTPUT: &str = "final-clicks-per-minute";
const MINUTE: i64 = 60_000;
/// Grace: 10 s, so the window [m, m + 1 min) closes at stream time m + 70 s.
const GRACE: i64 = 10_000;
const BUFFER_CHANGELOG: &str = "suppress-app-final-store-changelog";

fn window_serde() -> TimeWindowedSerde<String> {
    TimeWindowedSerde::new(StringSerde, Duration::from_millis(MINUTE as u64))
}

fn topology() -> streams_core::Topology {
    let builder = StreamsBuilder::new();
    builder
        .stream(INPUT, Consumed::with(StringSerde, StringSerde))
        .group_by_key(Grouped::with(StringSerde, StringSerde))
        .windowed_by(
            TimeWindows::of_size_and_grace(
                Duration::from_millis(MINUTE as u64),
                Duration::from_millis(GRACE as u64),
            )
            .unwrap(),
        )
        .count(Materialized::as_store("per-minute"))
        .suppress(Suppressed::until_window_closes(BufferConfig::unbounded()).with_name("final"))
        .to_stream()
        .flat_map_values(|n: Option<i64>| n)
        .to(OUTPUT, Produced::with(window_serde(), I64Serde));
    builder.build().unwrap()
}

fn start(broker: &Broker, state_dir: &Path) -> StreamsApp {
    let config = common::config(APP, state_dir)
        // A killed member's session must expire before its task moves on.
        .session_timeout(Duration::from_secs(6));
    common::start_running(topology(), config, broker)
}

fn produce(broker: &Broker, clicks: &[(String, i64)]) {
    common::produce_events(broker, INPUT, 1, "click", clicks);
}

/// Every record of the (single) partition of `topic`.
fn read_all(broker: &Broker, topic: &str) -> Vec<Record> {
    common::read_partition(broker, topic, 0, 0)
}

/// Every final result on the output topic, in order: (key, window start, count).
fn finals(broker: &Broker) -> Vec<(String, i64, i64)> {
    let serde = window_serde();
    read_all(broker, OUTPUT)
        .into_iter()
        .map(|r| {
            let key = serde.deserialize(OUTPUT, r.key.as_deref()).unwrap();
            let value = I64Serde.deserialize(OUTPUT, r.value.as_deref()).unwrap();
            (key.key, key.window.start, value)
        })
        .collect()
}

/// The count per (key, window start) of `clicks`.
fn counts(clicks: &[(String, i64)]) -> BTreeMap<(String, i64), i64> {
    counts_per_window(clicks, MINUTE)
}

/// `n` clicks of 5 users within minute `m` (in order of time).
fn clicks_in_minute(m: i64, n: i64) -> Vec<(String, i64)> {
    (0..n)
        .map(|i| (format!("user-{}", i % 5), m * MINUTE + i * (MINUTE / n)))
        .collect()
}

#[test]
fn a_restart_in_the_middle_of_a_suppression_buffer_loses_nothing() {
    let env = Env::new(&[(INPUT, 1), (OUTPUT, 1)]);
    let broker = &env.broker;
    let state = env.state_dir();

    // Run 1: minutes 0 and 1; stream time reaches 1 min + 59 s, which closes minute 0
    // only (end 60 s + grace 10 s <= 119 s); minute 1 stays in the buffer.
    let minute0 = clicks_in_minute(0, 20);
    let minute1 = clicks_in_minute(1, 30);
    let mut app = start(broker, &state);
    produce(broker, &minute0);
    produce(broker, &minute1);
    let first = counts(&minute0);
    wait_for("minute 0's final results", || {
        finals(broker).len() == first.len()
    });
    // Let the last records of minute 1 be processed and their buffer entries committed.
    wait_for("minute 1 in the buffer's changelog", || {
        let buffered: std::collections::BTreeSet<Vec<u8>> = read_all(broker, BUFFER_CHANGELOG)
            .into_iter()
            .filter(|r| r.value.is_some())
            .filter_map(|r| r.key.map(|k| k.to_vec()))
            .collect();
        let serde = window_serde();
        counts(&minute1).keys().all(|(k, start)| {
            let key = streams_core::Windowed {
                key: k.clone(),
                window: streams_core::Window {
                    start: *start,
                    end: start + MINUTE,
                },
            };
            buffered.contains(&serde.serialize(OUTPUT, &key).unwrap().unwrap())
        })
    });
    app.close();
    let got: BTreeMap<(String, i64), i64> = finals(broker)
        .into_iter()
        .map(|(k, s, n)| ((k, s), n))
        .collect();
    assert_eq!(got, first);

    // The buffer's changelog: compacted, Kafka's version-3 records.
    let config = topic_configs(broker, BUFFER_CHANGELOG);
    assert_eq!(config["cleanup.policy"], "compact");
    let log = read_all(broker, BUFFER_CHANGELOG);
    assert!(
        log.iter().any(|r| r.value.is_none()),
        "evictions are tombstones"
    );
    for r in log.iter().filter(|r| r.value.is_some()) {
        assert_eq!(r.headers.len(), 1);
        assert_eq!(r.headers[0].key, "v");
        assert_eq!(r.headers[0].value.as_deref(), Some(&[3u8][..]));
        // Kafka's BufferValue: record context (timestamp, offset, topic, ...) first, the
        // buffer time (here a window end) last.
        let v = r.value.as_deref().unwrap();
        let topic_len = usize::try_from(i32::from_be_bytes(v[16..20].try_into().unwrap())).unwrap();
        assert_eq!(&v[20..20 + topic_len], INPUT.as_bytes());
        let time = i64::from_be_bytes(v[v.len() - 8..].try_into().unwrap());
        assert_eq!(time % MINUTE, 0, "the buffer time is a window end");
    }

    // Lose the local state; run 2 gets one record from another key, at 2 min + 10 s:
    // minute 1 closes, and its final results can only come from the restored buffer.
    std::fs::remove_dir_all(&state).unwrap();
    let mut app = start(broker, &state);
    let closer = vec![("closer".to_owned(), 2 * MINUTE + GRACE)];
    produce(broker, &closer);
    let mut both = first.clone();
    both.extend(counts(&minute1));
    wait_for("minute 1's final results after the restart", || {
        finals(broker).len() >= both.len()
    });
    // One more closing record; once the closer's own window is out, nothing else came.
    produce(broker, &[("closer".to_owned(), 3 * MINUTE + GRACE)]);
    let mut all = both.clone();
    all.insert(("closer".to_owned(), 2 * MINUTE), 1);
    wait_for("the closer's final result", || {
        finals(broker).len() >= all.len()
    });
    app.close();
    let results = finals(broker);
    let got: BTreeMap<(String, i64), i64> = results
        .iter()
        .map(|(k, s, n)| ((k.clone(), *s), *n))
        .collect();
    assert_eq!(got, all);
    assert_eq!(
        results.len(),
        all.len(),
        "one final result per window: {results:?}"
    );
}

/// `BufferConfig::max_records(n).shut_down_when_full()`: the record that overfills the
/// buffer stops the application (Kafka's default uncaught-exception response,
/// SHUTDOWN_CLIENT) in state ERROR with the typed error, not a panic.
#[test]
fn a_full_shut_down_buffer_stops_the_application_with_a_typed_error() {
    let env = Env::new(&[(INPUT, 1), ("held", 1)]);
    let broker = &env.broker;

    let builder = StreamsBuilder::new();
    builder
        .stream(INPUT, Consumed::with(StringSerde, StringSerde))
        .group_by_key(Grouped::with(StringSerde, StringSerde))
        .count(Materialized::as_store("counts"))
        .suppress(
            Suppressed::until_time_limit(
                Duration::from_secs(3600),
                BufferConfig::max_records(3).shut_down_when_full(),
            )
            .with_name("hold"),
        )
        .to_stream()
        .to(
            "held",
            Produced::with(StringSerde, streams_core::Nullable(I64Serde)),
        );
    let config = common::config("suppress-full-app", &env.state_dir());
    let mut app = common::start_app(builder.build().unwrap(), config, broker);
    let users: Vec<(String, i64)> = (0..4).map(|i| (format!("user-{i}"), i)).collect();
    produce(broker, &users);
    assert!(
        app.wait_for_state(StreamsState::Error, WAIT),
        "state {:?}",
        app.state()
    );
    let errors = app.thread_errors();
    assert!(
        errors.iter().any(|e| matches!(
            e.as_ref(),
            streams_core::StreamsError::SuppressionBufferFull {
                node,
                records: 4,
                max_records: 3,
                ..
            } if node == "hold"
        )),
        "{:?}",
        app.errors()
    );
    assert!(read_all(broker, "held").is_empty());
    app.close();
}

// ---------------------------------------------------------------------------------------------
// SIGKILL: at least once, nothing lost

const CHILD_ENV: &str = "SUPPRESS_CRASH_CHILD";
const CRASH_RECORDS: i64 = 20_000;

/// 20,000 clicks of 7 users, 30 ms apart: minutes 0 to 9, in timestamp order.
fn crash_clicks() -> Vec<(String, i64)> {
    (0..CRASH_RECORDS)
        .map(|i| (format!("user-{}", i % 7), i * 30))
        .collect()
}

/// Child mode: run the application on the data dir, produce the clicks in small paced
/// batches, and report `progress <records processed> <input offset committed>` until
/// killed.
#[test]
#[ignore = "child-process entry of sigkill_in_the_middle_of_a_suppression_buffer_loses_nothing"]
fn suppress_crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let dir = Path::new(&dir);
    let broker = &open_broker(dir);
    let app = start(broker, &dir.join("state"));
    let producer = broker.clone();
    std::thread::spawn(move || {
        let records: Vec<ProduceRecord> = crash_clicks()
            .iter()
            .map(|(k, ts)| timed(k, "click", *ts))
            .collect();
        for chunk in records.chunks(100) {
            producer.produce(INPUT, 0, chunk).unwrap();
            std::thread::sleep(Duration::from_millis(3));
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let errors = app.errors();
        if !errors.is_empty() {
            println!("error {}", errors.join("; "));
        }
        let committed: i64 = broker
            .committed_offsets(APP)
            .values()
            .map(|o| o.offset)
            .sum();
        println!("progress {} {committed}", app.processed_records());
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The application is killed (SIGKILL) after a commit, part way through 20,000 clicks,
/// with windows in its suppression buffer and uncommitted work; restarted, it emits a
/// final result for every window, none below the window's true count (at-least-once:
/// re-processed input may count twice, and may emit a window twice, but loses nothing).
#[test]
fn sigkill_in_the_middle_of_a_suppression_buffer_loses_nothing() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    {
        let broker = Broker::open(BrokerConfig::new(dir.path().join("broker"))).unwrap();
        broker.create_topic(NewTopic::new(INPUT, 1)).unwrap();
        broker.create_topic(NewTopic::new(OUTPUT, 1)).unwrap();
        broker.shutdown().unwrap();
    }

    let (child, rx) = spawn_child_test(
        "suppress_crash_child",
        &[(CHILD_ENV, dir.path().as_os_str())],
    );
    // Kill once 40% of the clicks are processed and some input offset is committed.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (processed, committed) = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("the child made no progress: {e}"));
        if let Some(e) = line.strip_prefix("error ") {
            panic!("the child's application failed: {e}");
        }
        if let Some((n, c)) = line
            .strip_prefix("progress ")
            .and_then(|p| p.split_once(' '))
        {
            let (n, c): (i64, i64) = (n.parse().unwrap(), c.parse().unwrap());
            if n >= CRASH_RECORDS * 2 / 5 && c > 0 {
                break (n, c);
            }
        }
    };
    kill(child); // SIGKILL

    // Restart on the same broker and state directories; a click far ahead closes every
    // window of the run.
    let broker = &open_broker(dir.path());
    let before = finals(broker).len();
    // The clicks the child produced before it was killed (a prefix of crash_clicks()).
    let clicks: Vec<(String, i64)> = read_all(broker, INPUT)
        .into_iter()
        .map(|r| {
            let key = String::from_utf8(r.key.unwrap().to_vec()).unwrap();
            (key, r.timestamp)
        })
        .collect();
    assert!(clicks.len() as i64 >= CRASH_RECORDS * 2 / 5);
    let mut app = start(broker, &dir.path().join("state"));
    produce(broker, &[("closer".to_owned(), 20 * MINUTE)]);
    let truth = counts(&clicks);
    let latest = |broker: &Broker| -> BTreeMap<(String, i64), Vec<i64>> {
        let mut m: BTreeMap<(String, i64), Vec<i64>> = BTreeMap::new();
        for (k, s, n) in finals(broker) {
            m.entry((k, s)).or_default().push(n);
        }
        m
    };
    wait_for("a final result for every window", || {
        let got = latest(broker);
        truth.keys().all(|w| got.contains_key(w))
    });
    app.close();
    let got = latest(broker);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        truth.keys().collect::<Vec<_>>(),
        "killed after {processed} records (input committed up to {committed}; {before} \
         final results before the restart)"
    );
    let repeated = got.values().filter(|r| r.len() > 1).count();
    let over = got
        .iter()
        .filter(|(w, r)| r.iter().any(|n| *n > truth[*w]))
        .count();
    println!(
        "killed after {processed} of {} records (input committed up to {committed}), {before} \
         final results before the restart; windows emitted twice: {repeated}, over-counted: \
         {over}",
        clicks.len()
    );
    for (window, results) in &got {
        for n in results {
            assert!(
                *n >= truth[window],
                "window {window:?}: final result {n} below its {} clicks",
                truth[window]
            );
        }
    }
}
