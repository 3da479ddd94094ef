#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Interactive queries (`StreamsApp::store`, `query_metadata_for_key`, `all_metadata`) on the
//! real runtime and the embedded broker: a word count with a windowed count and a session
//! count of the same words, queried by key, by range and whole while the stream threads
//! run and after they processed everything, compared with counts computed directly from
//! the input; the typed errors (not started, unknown store, wrong type, partition not
//! local, not running); and two instances of the application, where each instance's
//! stores answer for its own keys only, the union is the truth, and
//! `query_metadata_for_key` on either instance names the instance that holds each key
//! (and, with `num.standby.replicas=1`, the other one as its standby host, whose stale
//! store then answers for every key too): a count keyed by word, one sub-topology, so
//! that both instances hold tasks of the store.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use broker_embedded::Broker;
use common::{partition_of, timed, wait_for, Env, WAIT};
use streams_core::{
    HostInfo, QueryableStoreTypes, ReadOnlyKeyValueStore, Result, StoreQueryParameters, StreamsApp,
    StreamsError, StreamsState, StringSerde, TopicPartition, Topology, Window, Windowed,
};
use streams_dsl::{Consumed, Grouped, Materialized, SessionWindows, StreamsBuilder, TimeWindows};

const INPUT: &str = "lines";
const PARTITIONS: u32 = 4;
const COUNTS: &str = "counts";
const WINDOWED: &str = "windowed";
const SESSIONS: &str = "sessions";
const MINUTE: i64 = 60_000;
const GAP: i64 = 5 * MINUTE;
/// An hour of grace: no record of these tests is late.
const GRACE: i64 = 60 * MINUTE;
/// A minute-aligned base time.
const T0: i64 = 28_000_000 * MINUTE;

/// Words of each line, counted three ways: in total (`counts`), per one-minute tumbling
/// window (`windowed`), per session with a 5-minute gap (`sessions`).
fn topology() -> Topology {
    let builder = StreamsBuilder::new();
    let words = builder
        .stream(INPUT, Consumed::with(StringSerde, StringSerde))
        .flat_map_values(|line: String| {
            line.split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        });
    let by_word = |name: &str| {
        words.clone().group_by(
            |_: &String, w: &String| w.clone(),
            Grouped::with(StringSerde, StringSerde).with_name(name),
        )
    };
    by_word("total").count(Materialized::as_store(COUNTS));
    by_word("per-minute")
        .windowed_by(
            TimeWindows::of_size_and_grace(
                Duration::from_millis(MINUTE as u64),
                Duration::from_millis(GRACE as u64),
            )
            .unwrap(),
        )
        .count(Materialized::as_store(WINDOWED));
    by_word("per-session")
        .windowed_by(
            SessionWindows::of_inactivity_gap_and_grace(
                Duration::from_millis(GAP as u64),
                Duration::from_millis(GRACE as u64),
            )
            .unwrap(),
        )
        .count(Materialized::as_store(SESSIONS));
    builder.build().unwrap()
}

/// `n` lines (user key, text, timestamp) of words from a small vocabulary, over about 20
/// minutes from `T0 + offset`.
fn lines(seed: u64, n: usize, offset: i64) -> Vec<(String, String, i64)> {
    const VOCABULARY: [&str; 12] = [
        "kafka", "streams", "rust", "state", "store", "query", "window", "session", "table",
        "topic", "broker", "task",
    ];
    let mut rng = common::XorShift::new(seed);
    (0..n)
        .map(|i| {
            let words: Vec<&str> = (0..1 + rng.next() % 4)
                .map(|_| VOCABULARY[(rng.next() % VOCABULARY.len() as u64) as usize])
                .collect();
            let ts = T0 + offset + (i as i64) * 1_000 * 13 % (20 * MINUTE);
            (format!("user-{}", rng.next() % 7), words.join(" "), ts)
        })
        .collect()
}

fn produce(broker: &Broker, lines: &[(String, String, i64)]) {
    let records: Vec<_> = lines.iter().map(|(k, v, ts)| timed(k, v, *ts)).collect();
    common::produce_keyed(broker, INPUT, PARTITIONS, &records);
}

/// (word, timestamp) of every word of every line.
fn words(lines: &[(String, String, i64)]) -> Vec<(String, i64)> {
    lines
        .iter()
        .flat_map(|(_, line, ts)| line.split_whitespace().map(|w| (w.to_owned(), *ts)))
        .collect()
}

fn total_counts(lines: &[(String, String, i64)]) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for (w, _) in words(lines) {
        *out.entry(w).or_insert(0) += 1;
    }
    out
}

/// (word, window start) → count.
fn window_counts(lines: &[(String, String, i64)]) -> BTreeMap<(String, i64), i64> {
    let mut out = BTreeMap::new();
    for (w, ts) in words(lines) {
        *out.entry((w, ts - ts.rem_euclid(MINUTE))).or_insert(0) += 1;
    }
    out
}

/// (word, session start, session end) → count: per word, timestamps sorted, a new session
/// after a gap larger than `GAP`.
fn session_counts(lines: &[(String, String, i64)]) -> BTreeMap<(String, i64, i64), i64> {
    let mut by_word: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (w, ts) in words(lines) {
        by_word.entry(w).or_default().push(ts);
    }
    let mut out = BTreeMap::new();
    for (w, mut times) in by_word {
        times.sort_unstable();
        let (mut start, mut end, mut n) = (times[0], times[0], 0);
        for t in times {
            if t - end > GAP {
                out.insert((w.clone(), start, end), n);
                (start, n) = (t, 0);
            }
            end = t;
            n += 1;
        }
        out.insert((w, start, end), n);
    }
    out
}

fn counts_store(app: &StreamsApp) -> ReadOnlyKeyValueStore<String, i64> {
    app.store(StoreQueryParameters::from_name_and_type(
        COUNTS,
        QueryableStoreTypes::key_value::<String, i64>(),
    ))
    .unwrap()
}

fn collect<T>(iter: Result<impl Iterator<Item = Result<T>>>) -> Result<Vec<T>> {
    iter?.collect()
}

/// `read` until it succeeds, retrying while the store is migrating (a rebalance).
fn retry<T>(what: &str, mut read: impl FnMut() -> Result<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        match read() {
            Ok(v) => return v,
            Err(StreamsError::StateStoreMigrated { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

fn config(env: &Env, app: &str, state: &str, server: &str) -> streams_core::StreamsConfig {
    common::config(app, &env.path().join(state))
        .application_server(server)
        .unwrap()
}

#[test]
fn key_value_window_and_session_stores_answer_while_running_and_after() {
    const APP: &str = "iq-app";
    let env = Env::new(&[(INPUT, PARTITIONS)]);
    let mut app = StreamsApp::new(
        topology(),
        config(&env, APP, "state", "localhost:7001").num_stream_threads(2),
        streams_core::EmbeddedCluster::new(env.broker.clone()),
    )
    .unwrap();

    // Before start: typed errors, no handle.
    let params = || {
        StoreQueryParameters::from_name_and_type(
            COUNTS,
            QueryableStoreTypes::key_value::<String, i64>(),
        )
    };
    assert!(matches!(
        app.store(params()),
        Err(StreamsError::StreamsNotStarted)
    ));
    assert!(matches!(
        app.query_metadata_for_key(COUNTS, &"kafka".to_owned(), &StringSerde),
        Err(StreamsError::StreamsNotStarted)
    ));

    app.start().unwrap();
    common::wait_running(&app, WAIT);
    let counts = counts_store(&app);

    // Queried while the threads process: every count read is at most the final one, and
    // the reads converge to it.
    let first = lines(1, 300, 0);
    produce(&env.broker, &first);
    let truth = total_counts(&first);
    wait_for("counts of the first batch through queries", || {
        retry("all", || collect(counts.all()))
            .into_iter()
            .collect::<BTreeMap<_, _>>()
            == truth
    });
    let second = lines(2, 300, 10 * MINUTE);
    let all_lines: Vec<_> = first.iter().chain(&second).cloned().collect();
    let truth = total_counts(&all_lines);
    produce(&env.broker, &second);
    wait_for("counts of both batches through point queries", || {
        let mut done = true;
        for (word, n) in &truth {
            let got = retry("get", || counts.get(word)).unwrap();
            assert!(got <= *n, "{word}: {got} > {n}");
            done &= got == *n;
        }
        done
    });
    assert!(app.wait_until_caught_up(WAIT).unwrap());

    // Key-value: point, range, whole, prefix, timestamped view, size.
    assert_eq!(counts.get(&"no-such-word".to_owned()).unwrap(), None);
    let mut ranged = collect(counts.range(&"s".to_owned(), &"t".to_owned())).unwrap();
    ranged.sort();
    let expected: Vec<_> = truth
        .iter()
        .filter(|(w, _)| w.as_str() >= "s" && w.as_str() <= "t")
        .map(|(w, n)| (w.clone(), *n))
        .collect();
    assert_eq!(ranged, expected);
    assert!(!expected.is_empty());
    let mut reversed = collect(counts.reverse_all()).unwrap();
    reversed.sort();
    assert_eq!(reversed, truth.clone().into_iter().collect::<Vec<_>>());
    let mut prefixed = collect(counts.prefix_scan(&"st".to_owned())).unwrap();
    prefixed.sort();
    assert_eq!(
        prefixed,
        truth
            .iter()
            .filter(|(w, _)| w.starts_with("st"))
            .map(|(w, n)| (w.clone(), *n))
            .collect::<Vec<_>>()
    );
    assert!(counts.approximate_num_entries().unwrap() > 0);
    let timestamped = app
        .store(StoreQueryParameters::from_name_and_type(
            COUNTS,
            QueryableStoreTypes::timestamped_key_value::<String, i64>(),
        ))
        .unwrap();
    let word_times = words(&all_lines);
    for (word, n) in &truth {
        let vt = timestamped.get(word).unwrap().unwrap();
        assert_eq!(vt.value, *n);
        assert!(
            word_times
                .iter()
                .any(|(w, t)| w == word && *t == vt.timestamp),
            "{word}: {} is no timestamp of its records",
            vt.timestamp
        );
    }

    // One partition only.
    for word in truth.keys() {
        let p = partition_of(word.as_bytes(), PARTITIONS);
        let own = app
            .store(params().with_partition(p))
            .unwrap()
            .get(word)
            .unwrap();
        assert_eq!(own, truth.get(word).copied());
        let other = app
            .store(params().with_partition((p + 1) % PARTITIONS as i32))
            .unwrap()
            .get(word)
            .unwrap();
        assert_eq!(other, None, "{word} is only on partition {p}");
    }
    assert!(matches!(
        app.store(params().with_partition(99))
            .unwrap()
            .get(&"kafka".to_owned()),
        Err(StreamsError::InvalidStateStorePartition { partition: 99, .. })
    ));

    // Window store: by key and window start, by key and time range, by time range, whole.
    let windows = window_counts(&all_lines);
    let windowed = app
        .store(StoreQueryParameters::from_name_and_type(
            WINDOWED,
            QueryableStoreTypes::window::<String, i64>(),
        ))
        .unwrap();
    for ((word, start), n) in &windows {
        assert_eq!(
            windowed.fetch(word, *start).unwrap(),
            Some(*n),
            "{word}@{start}"
        );
    }
    for word in truth.keys() {
        let (from, to) = (T0 + 5 * MINUTE, T0 + 15 * MINUTE);
        let got = collect(windowed.fetch_range(word, from, to)).unwrap();
        let expected: Vec<(i64, i64)> = windows
            .iter()
            .filter(|((w, s), _)| w == word && (from..=to).contains(s))
            .map(|((_, s), n)| (*s, *n))
            .collect();
        assert_eq!(got, expected, "{word}");
    }
    let mut got = collect(windowed.fetch_all(T0, T0 + 3 * MINUTE)).unwrap();
    got.sort();
    let expected: Vec<(Windowed<String>, i64)> = windows
        .iter()
        .filter(|((_, s), _)| (T0..=T0 + 3 * MINUTE).contains(s))
        .map(|((w, s), n)| {
            (
                Windowed {
                    key: w.clone(),
                    window: Window {
                        start: *s,
                        end: s + MINUTE,
                    },
                },
                *n,
            )
        })
        .collect();
    assert_eq!(got, expected);
    let mut every = collect(windowed.all()).unwrap();
    every.sort();
    assert_eq!(every.len(), windows.len());
    assert_eq!(
        every.iter().map(|(_, n)| n).sum::<i64>(),
        truth.values().sum::<i64>()
    );

    // Session store: every session of a key, and sessions overlapping a time range.
    let sessions = session_counts(&all_lines);
    let session_store = app
        .store(StoreQueryParameters::from_name_and_type(
            SESSIONS,
            QueryableStoreTypes::session::<String, i64>(),
        ))
        .unwrap();
    for word in truth.keys() {
        let got: BTreeMap<(String, i64, i64), i64> = collect(session_store.fetch(word))
            .unwrap()
            .into_iter()
            .map(|(k, n)| ((k.key, k.window.start, k.window.end), n))
            .collect();
        let expected: BTreeMap<_, _> = sessions
            .iter()
            .filter(|((w, _, _), _)| w == word)
            .map(|(k, n)| (k.clone(), *n))
            .collect();
        assert_eq!(got, expected, "{word}");
        let (earliest_end, latest_start) = (T0 + 12 * MINUTE, T0 + 14 * MINUTE);
        let found: Vec<_> = collect(session_store.find_sessions(word, earliest_end, latest_start))
            .unwrap()
            .into_iter()
            .map(|(k, n)| ((k.key, k.window.start, k.window.end), n))
            .collect();
        let expected: Vec<_> = expected
            .into_iter()
            .filter(|((_, s, e), _)| *e >= earliest_end && *s <= latest_start)
            .collect();
        assert_eq!(found, expected, "{word}");
        for ((_, s, e), n) in &expected {
            assert_eq!(session_store.fetch_session(word, *s, *e).unwrap(), Some(*n));
        }
    }

    // Errors: an unknown store, a store of another type.
    assert!(matches!(
        app.store(StoreQueryParameters::from_name_and_type(
            "nope",
            QueryableStoreTypes::key_value::<String, i64>()
        )),
        Err(StreamsError::UnknownStateStore(name)) if name == "nope"
    ));
    assert!(matches!(
        app.store(StoreQueryParameters::from_name_and_type(
            WINDOWED,
            QueryableStoreTypes::key_value::<String, i64>()
        )),
        Err(StreamsError::InvalidStoreType { .. })
    ));
    assert!(matches!(
        app.store(StoreQueryParameters::from_name_and_type(
            COUNTS,
            QueryableStoreTypes::session::<String, i64>()
        )),
        Err(StreamsError::InvalidStoreType { .. })
    ));

    // Metadata: this instance holds every partition of every store.
    let me = HostInfo::new("localhost", 7001);
    for word in truth.keys() {
        let md = app
            .query_metadata_for_key(COUNTS, word, &StringSerde)
            .unwrap();
        assert_eq!(md.active_host, me);
        assert_eq!(md.partition, partition_of(word.as_bytes(), PARTITIONS));
        assert!(md.standby_hosts.is_empty());
    }
    let all = app.all_metadata().unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].host_info, me);
    assert_eq!(
        all[0].state_store_names,
        BTreeSet::from([COUNTS.into(), WINDOWED.into(), SESSIONS.into()])
    );
    assert_eq!(
        app.streams_metadata_for_store(SESSIONS).unwrap(),
        all.clone()
    );
    assert!(matches!(
        app.streams_metadata_for_store("nope"),
        Err(StreamsError::UnknownStateStore(_))
    ));
    assert!(matches!(
        app.query_metadata_for_key("nope", &"kafka".to_owned(), &StringSerde),
        Err(StreamsError::UnknownStateStore(_))
    ));

    app.close();
    assert_eq!(app.state(), StreamsState::NotRunning);
    assert!(matches!(
        counts.get(&"kafka".to_owned()),
        Err(StreamsError::StreamsNotRunning { .. })
    ));
    assert!(matches!(
        app.store(params()),
        Err(StreamsError::StreamsNotRunning { .. })
    ));
}

/// Every (word, count) an instance's `counts` store returns, after a rebalance settles.
fn local_counts(app: &StreamsApp) -> BTreeMap<String, i64> {
    let store = counts_store(app);
    retry("all", || collect(store.all())).into_iter().collect()
}

const WORDS: &str = "words";

/// A count of records keyed by word: one sub-topology, so that with its 4 tasks over two
/// instances both hold some of the `counts` store.
fn keyed_topology() -> Topology {
    let builder = StreamsBuilder::new();
    builder
        .stream(WORDS, Consumed::with(StringSerde, StringSerde))
        .group_by_key(Grouped::with(StringSerde, StringSerde))
        .count(Materialized::as_store(COUNTS));
    builder.build().unwrap()
}

/// The input partitions of `tasks` (one sub-topology reading `words`).
fn partitions_of(tasks: &BTreeSet<streams_core::TaskId>) -> BTreeSet<TopicPartition> {
    tasks
        .iter()
        .map(|t| TopicPartition::new(WORDS, t.partition))
        .collect()
}

/// Two instances (endpoints `localhost:<port_base + 1>` and `+ 2`) of the keyed count with
/// `standbys` standby replicas: each answers point queries for its own keys only, and
/// `query_metadata_for_key` / `all_metadata` on BOTH name the instance holding each key
/// (from the assignment's partitions-by-host maps) and, with a standby replica, the other
/// instance as the standby host. Returns the two apps (running) and the per-instance local
/// counts.
fn two_instances(
    app_id: &str,
    port_base: u16,
    standbys: usize,
) -> (Env, [HostInfo; 2], Vec<StreamsApp>, BTreeMap<String, i64>) {
    let env = Env::new(&[(WORDS, PARTITIONS)]);
    let hosts = [
        HostInfo::new("localhost", port_base + 1),
        HostInfo::new("localhost", port_base + 2),
    ];
    let apps: Vec<StreamsApp> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| {
            common::start_app(
                keyed_topology(),
                config(&env, app_id, &format!("state-{i}"), &h.to_string())
                    .num_standby_replicas(standbys),
                &env.broker,
            )
        })
        .collect();
    let all_lines = lines(3, 400, 0);
    let records: Vec<_> = words(&all_lines)
        .iter()
        .map(|(w, ts)| timed(w, "seen", *ts))
        .collect();
    common::produce_keyed(&env.broker, WORDS, PARTITIONS, &records);
    let truth = total_counts(&all_lines);

    // Both running with tasks of their own, both knowing the same assignment of both
    // endpoints, and everything processed.
    wait_for(
        "both instances running with tasks of the same assignment",
        || {
            apps.iter()
                .all(|a| a.state() == StreamsState::Running && !a.active_tasks().is_empty())
                && apps[0].partitions_by_host().len() == 2
                && apps[1].partitions_by_host() == apps[0].partitions_by_host()
                && apps[1].standby_partitions_by_host() == apps[0].standby_partitions_by_host()
        },
    );
    for app in &apps {
        assert!(app.wait_until_caught_up(WAIT).unwrap());
    }

    wait_for("the instances' local counts to partition the truth", || {
        // A rebalance in between may move keys: look again until a stable split.
        if apps.iter().any(|a| a.state() != StreamsState::Running) {
            return false;
        }
        let local: Vec<BTreeMap<String, i64>> = apps.iter().map(local_counts).collect();
        let disjoint = local[0].keys().all(|k| !local[1].contains_key(k));
        let mut union = local[0].clone();
        union.extend(local[1].clone());
        disjoint && union == truth && local.iter().all(|l| !l.is_empty())
    });
    (env, hosts, apps, truth)
}

/// Checks, on both instances, that the metadata names the holder of every key (and the
/// other instance as its standby host when `standbys` is 1), that each instance's point
/// query answers for its own keys only, and that `all_metadata` is the same on both and
/// lists each instance with the partitions of its active (and standby) tasks.
fn assert_metadata_names_the_holder(
    hosts: &[HostInfo; 2],
    apps: &[StreamsApp],
    truth: &BTreeMap<String, i64>,
    standbys: usize,
) {
    let local: Vec<BTreeMap<String, i64>> = apps.iter().map(local_counts).collect();
    for word in truth.keys() {
        let holder = usize::from(!local[0].contains_key(word));
        assert_eq!(local[holder].get(word), truth.get(word));
        // The holder's point query answers; the other instance's does not.
        assert_eq!(
            retry("get", || counts_store(&apps[holder]).get(word)),
            truth.get(word).copied()
        );
        assert_eq!(
            retry("get", || counts_store(&apps[1 - holder]).get(word)),
            None
        );
        // Both instances name the holder, and the standby (the other instance) if any.
        let expected_standbys: BTreeSet<HostInfo> = if standbys == 1 {
            BTreeSet::from([hosts[1 - holder].clone()])
        } else {
            BTreeSet::new()
        };
        for (i, app) in apps.iter().enumerate() {
            let md = app
                .query_metadata_for_key(COUNTS, word, &StringSerde)
                .unwrap();
            assert!(md.is_available(), "instance {i}, {word}");
            assert_eq!(md.partition, partition_of(word.as_bytes(), PARTITIONS));
            assert_eq!(md.active_host, hosts[holder], "instance {i}, {word}");
            assert_eq!(md.standby_hosts, expected_standbys, "instance {i}, {word}");
        }
    }
    // Every instance lists both, with the partitions of their tasks.
    let all = apps[0].all_metadata().unwrap();
    assert_eq!(apps[1].all_metadata().unwrap(), all);
    assert_eq!(
        all.iter().map(|m| m.host_info.clone()).collect::<Vec<_>>(),
        hosts.to_vec()
    );
    for (i, app) in apps.iter().enumerate() {
        let md = &all[i];
        assert_eq!(md.topic_partitions, partitions_of(&app.active_tasks()));
        assert_eq!(md.state_store_names, BTreeSet::from([COUNTS.to_owned()]));
        if standbys == 1 {
            // The other instance's partitions, as standbys.
            assert_eq!(md.standby_topic_partitions, all[1 - i].topic_partitions);
            assert_eq!(
                md.standby_state_store_names,
                BTreeSet::from([COUNTS.to_owned()])
            );
        } else {
            assert!(md.standby_topic_partitions.is_empty());
            assert!(md.standby_state_store_names.is_empty());
        }
        assert_eq!(app.local_metadata().unwrap().as_ref(), Some(md));
        assert_eq!(app.streams_metadata_for_store(COUNTS).unwrap(), all);
    }
}

#[test]
fn two_instances_answer_for_their_own_keys_and_metadata_on_both_names_the_holder() {
    let (_env, hosts, apps, truth) = two_instances("iq-two", 7100, 0);
    assert_metadata_names_the_holder(&hosts, &apps, &truth, 0);
    for mut app in apps {
        app.close();
    }
}

#[test]
fn with_a_standby_replica_metadata_on_both_names_the_other_instance_as_standby_host() {
    let (_env, hosts, apps, truth) = two_instances("iq-two-standby", 7200, 1);
    assert_metadata_names_the_holder(&hosts, &apps, &truth, 1);
    // Stale reads (Kafka's `enableStaleStores`) also see the standby copies: once the
    // standbys applied the changelogs, each instance answers for every key.
    let stale = |app: &StreamsApp| {
        app.store(
            StoreQueryParameters::from_name_and_type(
                COUNTS,
                QueryableStoreTypes::key_value::<String, i64>(),
            )
            .enable_stale_stores(),
        )
        .unwrap()
    };
    for app in &apps {
        wait_for("the standby copies to hold every count", || {
            let all: BTreeMap<String, i64> = retry("stale all", || collect(stale(app).all()))
                .into_iter()
                .collect();
            all == truth
        });
    }
    for mut app in apps {
        app.close();
    }
}
