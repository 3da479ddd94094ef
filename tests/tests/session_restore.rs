#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! A session-windowed count (`windowed_by(SessionWindows)`) on the real runtime and the
//! embedded broker, with 2 stream threads: its changelog is created as Kafka creates a
//! session store's (`cleanup.policy=compact,delete`, `retention.ms` = gap + grace + 1 day);
//! after a clean close and the loss of the local state, the restarted application restores
//! its sessions from the changelog and keeps merging into them (a record of the second run
//! bridges sessions of the first). The live sessions on the output topic (the latest update
//! per session, a tombstone for a merged-away one) are compared with sessions computed
//! directly from every click (Kafka's session rule: records of a key at most `gap` apart
//! belong to one session).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use broker_embedded::Broker;
use common::{read_topic, topic_configs, wait_for, Env, XorShift};
use streams_core::{I64Serde, Nullable, Serde, SessionWindowedSerde, StreamsApp, StringSerde};
use streams_dsl::{Consumed, Grouped, Materialized, Produced, SessionWindows, StreamsBuilder};

const APP: &str = "session-app";
const INPUT: &str = "visits";
const OUTPUT: &str = "visits-per-session";
const STORE: &str = "sessions";
const PARTITIONS: u32 = 4;
const MINUTE: i64 = 60_000;
const GAP: i64 = 5 * MINUTE;
/// Grace: an hour, so that no record of the test is late.
const GRACE: i64 = 60 * MINUTE;

fn topology() -> streams_core::Topology {
    let builder = StreamsBuilder::new();
    builder
        .stream(INPUT, Consumed::with(StringSerde, StringSerde))
        .group_by_key(Grouped::default())
        .windowed_by(
            SessionWindows::of_inactivity_gap_and_grace(
                Duration::from_millis(GAP as u64),
                Duration::from_millis(GRACE as u64),
            )
            .unwrap(),
        )
        .count(Materialized::as_store(STORE))
        .to_stream()
        .to(
            OUTPUT,
            Produced::with(SessionWindowedSerde::new(StringSerde), Nullable(I64Serde)),
        );
    builder.build().unwrap()
}

fn start(broker: &Broker, state_dir: &Path) -> StreamsApp {
    let config = common::config(APP, state_dir).num_stream_threads(2);
    common::start_running(topology(), config, broker)
}

fn produce(broker: &Broker, visits: &[(String, i64)]) {
    common::produce_events(broker, INPUT, PARTITIONS, "visit", visits);
}

/// Live sessions on the output topic: the latest update per (key, start, end), without
/// the ones whose latest update is a tombstone.
fn live(broker: &Broker) -> BTreeMap<(String, i64, i64), i64> {
    let serde = SessionWindowedSerde::new(StringSerde);
    common::latest_by_key(&read_topic(broker, OUTPUT), |r| {
        let key = serde.deserialize(OUTPUT, r.key.as_deref()).unwrap();
        let value = r.value.as_deref().map(common::be_i64);
        ((key.key, key.window.start, key.window.end), value)
    })
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k, v)))
    .collect()
}

/// Sessions computed directly: per key, timestamps sorted; a new session starts after a
/// gap larger than `GAP` (Kafka's `SessionWindows`: records at most the inactivity gap
/// apart are in one session, whose window is [first, last]).
fn expected(visits: &[(String, i64)]) -> BTreeMap<(String, i64, i64), i64> {
    let mut by_key: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for (k, ts) in visits {
        by_key.entry(k).or_default().push(*ts);
    }
    let mut out = BTreeMap::new();
    for (k, mut ts) in by_key {
        ts.sort_unstable();
        let (mut start, mut end, mut n) = (ts[0], ts[0], 0);
        for t in ts {
            if t - end > GAP {
                out.insert((k.to_owned(), start, end), n);
                (start, n) = (t, 0);
            }
            end = t;
            n += 1;
        }
        out.insert((k.to_owned(), start, end), n);
    }
    out
}

/// Visits of 12 users at pseudo-random times in the first 40 minutes (seeded; printed).
fn visits(seed: u64, n: usize) -> Vec<(String, i64)> {
    let mut rng = XorShift::new(seed);
    (0..n)
        .map(|_| {
            let x = rng.next();
            (
                format!("user-{:02}", x % 12),
                ((x >> 8) % (40 * MINUTE as u64)) as i64,
            )
        })
        .collect()
}

#[test]
fn session_counts_are_restored_from_the_changelog_after_a_restart() {
    let seed = std::env::var("SESSION_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_261_202_u64);
    eprintln!("SESSION_SEED={seed}");
    let env = Env::new(&[(INPUT, PARTITIONS), (OUTPUT, PARTITIONS)]);
    let broker = &env.broker;
    let state = env.state_dir();

    // 60 visits per run over 12 users and 40 minutes: sessions of a few visits each, some
    // of the first run's separated by less than two gaps, so that the second run's visits
    // bridge and merge them.
    let first = visits(seed, 60);
    let mut app = start(broker, &state);
    produce(broker, &first);
    wait_for("the first sessions", || live(broker) == expected(&first));
    app.close();

    let config = topic_configs(broker, &format!("{APP}-{STORE}-changelog"));
    assert_eq!(config["cleanup.policy"], "compact,delete");
    assert_eq!(
        config["retention.ms"],
        (GAP + GRACE + 86_400_000).to_string()
    );

    // Lose the local state: the sessions come back from the changelog and the second
    // run's visits merge with them.
    std::fs::remove_dir_all(&state).unwrap();
    let mut app = start(broker, &state);
    let second = visits(seed.wrapping_add(1), 60);
    produce(broker, &second);
    let all: Vec<_> = first.iter().chain(&second).cloned().collect();
    let want = expected(&all);
    // The case this test exists for: some session of the end result spans visits of both
    // runs that were in different sessions after the first.
    let first_sessions = expected(&first);
    assert!(
        want.iter().any(|((k, s, e), _)| first_sessions
            .keys()
            .filter(|(fk, fs, fe)| fk == k && fs >= s && fe <= e)
            .count()
            >= 2),
        "no second-run visit merges two first-run sessions; pick another seed"
    );
    wait_for("the sessions over both runs", || live(broker) == want);
    assert_eq!(app.dropped_records(), 0);
    app.close();
    assert!(app.errors().is_empty(), "{:?}", app.errors());
}
