//! Windowed counts end to end on the embedded broker (report-only; see BENCHMARKS.md).
//!
//! ```text
//! cargo bench -p examples --bench windowed_count -- [--events N] [--keys K] [--dir DIR]
//!     [--only plain|tumbling|hopping|session]
//! ```
//!
//! A pre-loaded input topic (8 partitions, keys placed with the Java client's murmur2
//! partitioner) holds N events (10 M by default) over K keys (100 k) drawn pseudo-randomly,
//! with event time advancing 0.3 ms per event (10 M events span 50 minutes, so a key is seen
//! about every 30 s). The same `group_by_key` is counted four ways: un-windowed (the
//! baseline), tumbling 1-minute windows, hopping 5-minute windows advancing by 1 minute, and
//! 5-minute-gap sessions; each with the record cache on (Kafka's default 10 MiB) and off,
//! RocksDB stores with changelogs, 2 stream threads, commit.interval.ms 100 ms, the counts
//! written to an output topic. Each run reports events/s from `start()` until every event is
//! processed, and the state directory's size after a clean close against the number of
//! (key, window) entries that the store's retention allows to be live at the end (computed
//! from the generated input).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, missing_docs)]

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use broker_embedded::{
    partition_for_key, Broker, BrokerConfig, NewTopic, OffsetSpec, ProduceRecord,
};
use bytes::Bytes;
use streams_core::{
    EmbeddedCluster, I64Serde, Nullable, SessionWindowedSerde, StreamsApp, StreamsConfig,
    StreamsState, StringSerde, TimeWindowedSerde, Topology,
};
use streams_dsl::{
    Consumed, Grouped, KGroupedStream, Materialized, Produced, SessionWindows, StreamsBuilder,
    TimeWindows,
};

const PARTITIONS: u32 = 8;
const INPUT: &str = "events";
const OUTPUT: &str = "counts";
/// Event time between two consecutive events, in microseconds.
const STEP_US: i64 = 300;
const MINUTE: Duration = Duration::from_secs(60);

struct Args {
    events: usize,
    keys: usize,
    dir: Option<PathBuf>,
    only: Option<String>,
}

fn parse_args() -> Args {
    let mut a = Args {
        events: 10_000_000,
        keys: 100_000,
        dir: None,
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--events" => a.events = it.next().and_then(|v| v.parse().ok()).unwrap_or(a.events),
            "--keys" => a.keys = it.next().and_then(|v| v.parse().ok()).unwrap_or(a.keys),
            "--dir" => a.dir = it.next().map(PathBuf::from),
            "--only" => a.only = it.next(),
            _ => {} // cargo bench passes --bench
        }
    }
    a
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Plain,
    Tumbling,
    Hopping,
    Session,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Plain => "plain",
            Kind::Tumbling => "tumbling 1 min",
            Kind::Hopping => "hopping 5 min / 1 min",
            Kind::Session => "session 5 min gap",
        }
    }

    fn flag(self) -> &'static str {
        match self {
            Kind::Plain => "plain",
            Kind::Tumbling => "tumbling",
            Kind::Hopping => "hopping",
            Kind::Session => "session",
        }
    }
}

/// One event: its key index and event time (ms).
#[derive(Clone, Copy)]
struct Event {
    key: u32,
    ts: i64,
}

fn events(n: usize, keys: usize) -> Vec<Event> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            Event {
                key: (x % keys as u64) as u32,
                ts: 1_700_000_000_000 + (i as i64 * STEP_US) / 1000,
            }
        })
        .collect()
}

fn key_name(k: u32) -> String {
    format!("key-{k:06}")
}

fn open_broker(dir: &Path) -> Broker {
    let mut config = BrokerConfig::new(dir.join("broker"));
    config.group_initial_rebalance_delay = Duration::ZERO;
    let broker = Broker::open(config).expect("open broker");
    for t in [INPUT, OUTPUT] {
        broker
            .create_topic(NewTopic::new(t, PARTITIONS))
            .expect("create topic");
    }
    broker
}

fn preload(broker: &Broker, events: &[Event]) {
    let mut per_p: Vec<Vec<ProduceRecord>> = vec![Vec::new(); PARTITIONS as usize];
    let flush = |p: usize, recs: &mut Vec<ProduceRecord>| {
        broker.produce(INPUT, p as i32, recs).expect("produce");
        recs.clear();
    };
    for e in events {
        let key = key_name(e.key);
        let p = partition_for_key(key.as_bytes(), PARTITIONS).expect("partitions") as usize;
        per_p[p].push(
            ProduceRecord::new(Bytes::from(key.into_bytes()), Bytes::from_static(b"v"))
                .with_timestamp(e.ts),
        );
        if per_p[p].len() == 1000 {
            flush(p, &mut per_p[p]);
        }
    }
    for (p, recs) in per_p.iter_mut().enumerate() {
        if !recs.is_empty() {
            flush(p, recs);
        }
    }
}

fn materialized<K: 'static>(caching: bool) -> Materialized<K, i64> {
    let m = Materialized::as_store("counts-store");
    if caching {
        m
    } else {
        m.with_caching_disabled()
    }
}

fn topology(kind: Kind, caching: bool) -> Topology {
    let builder = StreamsBuilder::new();
    let grouped: KGroupedStream<String, String> = builder
        .stream(INPUT, Consumed::with(StringSerde, StringSerde))
        .group_by_key(Grouped::with(StringSerde, StringSerde));
    match kind {
        Kind::Plain => grouped
            .count(materialized(caching))
            .to_stream()
            .to(OUTPUT, Produced::with(StringSerde, Nullable(I64Serde))),
        Kind::Tumbling => grouped
            .windowed_by(TimeWindows::of_size_with_no_grace(MINUTE).expect("windows"))
            .count(materialized(caching))
            .to_stream()
            .to(
                OUTPUT,
                Produced::with(
                    TimeWindowedSerde::new(StringSerde, MINUTE),
                    Nullable(I64Serde),
                ),
            ),
        Kind::Hopping => grouped
            .windowed_by(
                TimeWindows::of_size_with_no_grace(5 * MINUTE)
                    .and_then(|w| w.advance_by(MINUTE))
                    .expect("windows"),
            )
            .count(materialized(caching))
            .to_stream()
            .to(
                OUTPUT,
                Produced::with(
                    TimeWindowedSerde::new(StringSerde, 5 * MINUTE),
                    Nullable(I64Serde),
                ),
            ),
        Kind::Session => grouped
            .windowed_by(
                SessionWindows::of_inactivity_gap_with_no_grace(5 * MINUTE).expect("windows"),
            )
            .count(materialized(caching))
            .to_stream()
            .to(
                OUTPUT,
                Produced::with(SessionWindowedSerde::new(StringSerde), Nullable(I64Serde)),
            ),
    }
    builder.build().expect("topology")
}

/// (key, window) entries the store may hold at the end: those within its retention (the
/// default: size + grace for time windows, gap + grace for sessions) of the stream time.
/// For the un-windowed count, every key.
fn retained_entries(kind: Kind, events: &[Event]) -> usize {
    let end = events.iter().map(|e| e.ts).max().unwrap_or(0);
    let minute = MINUTE.as_millis() as i64;
    match kind {
        Kind::Plain => events.iter().map(|e| e.key).collect::<HashSet<_>>().len(),
        Kind::Tumbling | Kind::Hopping => {
            let (size, advance) = if kind == Kind::Tumbling {
                (minute, minute)
            } else {
                (5 * minute, minute)
            };
            let retention = size;
            let mut live = HashSet::new();
            for e in events {
                // Every window [start, start + size) containing e.ts whose end is within
                // retention of the end: end > stream time - retention.
                let last_start = e.ts - e.ts.rem_euclid(advance);
                let mut start = last_start;
                while start > e.ts - size {
                    if start + size > end - retention {
                        live.insert((e.key, start));
                    }
                    start -= advance;
                }
            }
            live.len()
        }
        Kind::Session => {
            let gap = 5 * minute;
            // Sessions per key (events of a key are in time order), live if their end is
            // within retention (= gap) of the end.
            let mut last: std::collections::HashMap<u32, (i64, i64)> = Default::default();
            let mut live = 0usize;
            for e in events {
                match last.get_mut(&e.key) {
                    Some((_, session_end)) if e.ts - *session_end <= gap => *session_end = e.ts,
                    Some(s) => {
                        if s.1 > end - gap {
                            live += 1;
                        }
                        *s = (e.ts, e.ts);
                    }
                    None => {
                        last.insert(e.key, (e.ts, e.ts));
                    }
                }
            }
            live + last.values().filter(|s| s.1 > end - gap).count()
        }
    }
}

fn dir_size(p: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(p) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn run(base: &Path, kind: Kind, caching: bool, events: &[Event], retained: usize) -> f64 {
    let dir = tempfile::tempdir_in(base).expect("tempdir");
    let broker = open_broker(dir.path());
    preload(&broker, events);
    let app_id = format!("windowed-bench-{}", kind.flag());
    let config = StreamsConfig::new(&app_id)
        .state_dir(dir.path().join("state"))
        .num_stream_threads(2)
        .commit_interval(Duration::from_millis(100))
        .cache_max_bytes(if caching { 10 * 1024 * 1024 } else { 0 });
    let t0 = Instant::now();
    let mut app = StreamsApp::new(
        topology(kind, caching),
        config,
        EmbeddedCluster::new(broker.clone()),
    )
    .expect("app");
    app.start().expect("start");
    assert!(
        app.wait_for_state(StreamsState::Running, Duration::from_secs(300)),
        "not running: {:?}",
        app.errors()
    );
    let target = events.len() as u64;
    while app.processed_records() < target {
        assert!(t0.elapsed() < Duration::from_secs(3600), "timed out");
        assert!(app.errors().is_empty(), "{:?}", app.errors());
        std::thread::sleep(Duration::from_millis(5));
    }
    let secs = t0.elapsed().as_secs_f64();
    let dropped = app.dropped_records();
    app.close();
    let state = dir_size(&dir.path().join("state"));
    let rate = events.len() as f64 / secs;
    let output: i64 = (0..PARTITIONS as i32)
        .map(|p| {
            broker
                .list_offsets(OUTPUT, p, OffsetSpec::Latest)
                .expect("list offsets")
                .map_or(0, |o| o.offset)
        })
        .sum();
    println!(
        "[{}, caching {}]: {} events in {:.2} s: {:.0} events/s; {} updates written, {} dropped; state on disk {:.1} MiB for {} live (key, window) entries retention allows ({:.0} B/entry)",
        kind.name(),
        if caching { "on" } else { "off" },
        events.len(),
        secs,
        rate,
        output,
        dropped,
        state as f64 / (1024.0 * 1024.0),
        retained,
        state as f64 / retained.max(1) as f64,
    );
    rate
}

fn main() {
    let args = parse_args();
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    println!(
        "windowed count: {} events over {} keys, event time {} ms per 1000 events, {} partitions, 2 threads",
        args.events,
        args.keys,
        STEP_US,
        PARTITIONS
    );
    let events = events(args.events, args.keys);
    let kinds = [Kind::Plain, Kind::Tumbling, Kind::Hopping, Kind::Session];
    let mut rates = Vec::new();
    for kind in kinds {
        if args.only.as_deref().is_some_and(|o| o != kind.flag()) {
            continue;
        }
        let retained = retained_entries(kind, &events);
        for caching in [true, false] {
            rates.push((kind, caching, run(&base, kind, caching, &events, retained)));
        }
    }
    let rate = |k: Kind, c: bool| rates.iter().find(|r| r.0 == k && r.1 == c).map(|r| r.2);
    for caching in [true, false] {
        if let (Some(plain), Some(tumbling)) =
            (rate(Kind::Plain, caching), rate(Kind::Tumbling, caching))
        {
            println!(
                "caching {}: tumbling / un-windowed throughput = {:.2} (aim >= 0.67, i.e. within 1.5x)",
                if caching { "on" } else { "off" },
                tumbling / plain
            );
        }
    }
}
