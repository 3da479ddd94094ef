//! Model tests: random operation sequences against every store kind and both backends,
//! checked against a `BTreeMap` oracle.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use state_store::{
    CachingKeyValueStore, CachingSessionStore, CachingWindowStore, ChangeLoggingKeyValueStore,
    Direction, InMemoryChangelog, InMemoryKeyValueStore, InMemorySessionStore, InMemoryWindowStore,
    KeyValueStore, Metered, RecordTimestamp, RocksDbKeyValueStore, RocksDbSessionStore,
    RocksDbWindowStore, SessionEntry, SessionStore, SessionStoreOptions, StateStore, StoreError,
    StoreMetrics, WindowEntry, WindowStore, WindowStoreOptions,
};

fn cases() -> ProptestConfig {
    ProptestConfig {
        cases: 64,
        ..ProptestConfig::default()
    }
}

/// Keys from a tiny alphabet that includes the awkward bytes 0x00 and 0xff.
fn key() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(vec![0u8, 1, b'a', 0xff]), 0..4)
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..6)
}

fn direction() -> impl Strategy<Value = Direction> {
    prop_oneof![Just(Direction::Forward), Just(Direction::Reverse)]
}

// ---------------------------------------------------------------- key-value

#[derive(Debug, Clone)]
enum KvOp {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    PutIfAbsent(Vec<u8>, Vec<u8>),
    PutAll(Vec<(Vec<u8>, Vec<u8>)>),
    Get(Vec<u8>),
    Range(Vec<u8>, Vec<u8>, Direction),
    Prefix(Vec<u8>, Direction),
    All(Direction),
    Count,
    Flush,
    Reopen,
}

fn kv_op() -> impl Strategy<Value = KvOp> {
    prop_oneof![
        4 => (key(), value()).prop_map(|(k, v)| KvOp::Put(k, v)),
        2 => key().prop_map(KvOp::Delete),
        1 => (key(), value()).prop_map(|(k, v)| KvOp::PutIfAbsent(k, v)),
        1 => prop::collection::vec((key(), value()), 0..4).prop_map(KvOp::PutAll),
        2 => key().prop_map(KvOp::Get),
        2 => (key(), key(), direction()).prop_map(|(a, b, d)| KvOp::Range(a, b, d)),
        2 => (key(), direction()).prop_map(|(p, d)| KvOp::Prefix(p, d)),
        1 => direction().prop_map(KvOp::All),
        1 => Just(KvOp::Count),
        1 => Just(KvOp::Flush),
        1 => Just(KvOp::Reopen),
    ]
}

fn expected_scan(
    oracle: &BTreeMap<Vec<u8>, Vec<u8>>,
    keep: impl Fn(&[u8]) -> bool,
    d: Direction,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut v: Vec<_> = oracle
        .iter()
        .filter(|(k, _)| keep(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if d == Direction::Reverse {
        v.reverse();
    }
    v
}

/// Runs `ops` against the store made by `open` (called again for `Reopen`; `None` means
/// the store is not persistent and `Reopen` is skipped).
fn run_kv_model(
    mut open: impl FnMut() -> Box<dyn KeyValueStore>,
    persistent: bool,
    exact_count: bool,
    ops: &[KvOp],
) -> Result<(), TestCaseError> {
    let mut store = open();
    let mut oracle: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    for op in ops {
        match op {
            KvOp::Put(k, v) => {
                store.put(k, v).map_err(err)?;
                oracle.insert(k.clone(), v.clone());
            }
            KvOp::Delete(k) => {
                let old = store.delete(k).map_err(err)?;
                prop_assert_eq!(old, oracle.remove(k));
            }
            KvOp::PutIfAbsent(k, v) => {
                let existing = store.put_if_absent(k, v).map_err(err)?;
                prop_assert_eq!(existing.as_ref(), oracle.get(k));
                oracle.entry(k.clone()).or_insert_with(|| v.clone());
            }
            KvOp::PutAll(entries) => {
                store.put_all(entries).map_err(err)?;
                for (k, v) in entries {
                    oracle.insert(k.clone(), v.clone());
                }
            }
            KvOp::Get(k) => prop_assert_eq!(store.get(k).map_err(err)?, oracle.get(k).cloned()),
            KvOp::Range(a, b, d) => {
                let got = store
                    .range(a, b, *d)
                    .and_then(|it| it.collect::<Result<Vec<_>, _>>());
                if a > b {
                    prop_assert!(
                        matches!(got, Err(StoreError::InvalidRange { .. })),
                        "unexpected result"
                    );
                } else {
                    let want =
                        expected_scan(&oracle, |k| k >= a.as_slice() && k <= b.as_slice(), *d);
                    prop_assert_eq!(got.map_err(err)?, want);
                }
            }
            KvOp::Prefix(p, d) => {
                let want = expected_scan(&oracle, |k| k.starts_with(p), *d);
                let got = store
                    .prefix_scan(p, *d)
                    .and_then(|it| it.collect::<Result<Vec<_>, _>>());
                prop_assert_eq!(got.map_err(err)?, want);
            }
            KvOp::All(d) => {
                let want = expected_scan(&oracle, |_| true, *d);
                let got = store
                    .all(*d)
                    .and_then(|it| it.collect::<Result<Vec<_>, _>>());
                prop_assert_eq!(got.map_err(err)?, want);
            }
            KvOp::Count => {
                let n = store.approximate_num_entries().map_err(err)?;
                if exact_count {
                    prop_assert_eq!(n, oracle.len() as u64);
                }
            }
            KvOp::Flush => store.flush().map_err(err)?,
            KvOp::Reopen => {
                if persistent {
                    store.close().map_err(err)?;
                    prop_assert!(
                        matches!(store.get(b"x"), Err(StoreError::Closed { .. })),
                        "unexpected result"
                    );
                    drop(store);
                    store = open();
                }
            }
        }
    }
    let want = expected_scan(&oracle, |_| true, Direction::Forward);
    let got = store
        .all(Direction::Forward)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>());
    prop_assert_eq!(got.map_err(err)?, want);
    Ok(())
}

fn err(e: StoreError) -> TestCaseError {
    TestCaseError::fail(format!("store error: {e}"))
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn kv_in_memory_matches_model(ops in prop::collection::vec(kv_op(), 1..60)) {
        let mut store = Some(InMemoryKeyValueStore::new("kv"));
        run_kv_model(move || Box::new(store.take().unwrap_or_else(|| InMemoryKeyValueStore::new("kv"))), false, true, &ops)?;
    }

    #[test]
    fn kv_rocksdb_matches_model(ops in prop::collection::vec(kv_op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv");
        let res = common::small_resources();
        run_kv_model(|| Box::new(RocksDbKeyValueStore::open("kv", &path, &res).unwrap()), true, false, &ops)?;
    }

    #[test]
    fn kv_full_stack_in_memory_matches_model(ops in prop::collection::vec(kv_op(), 1..60), cache_bytes in 0usize..2000) {
        // metered -> caching (small, so it evicts) -> change-logging -> in-memory
        let metrics = Arc::new(StoreMetrics::new());
        let ts = RecordTimestamp::new();
        let logged = ChangeLoggingKeyValueStore::new(InMemoryKeyValueStore::new("kv"), InMemoryChangelog::new(), ts.clone());
        let cached = CachingKeyValueStore::new(logged, cache_bytes, ts);
        let mut store = Some(Metered::new(cached, metrics));
        run_kv_model(move || Box::new(store.take().unwrap()), false, false, &ops)?;
    }

    #[test]
    fn kv_caching_rocksdb_matches_model(ops in prop::collection::vec(kv_op(), 1..60), cache_bytes in 0usize..2000) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv");
        let res = common::small_resources();
        run_kv_model(|| {
            let inner = RocksDbKeyValueStore::open("kv", &path, &res).unwrap();
            Box::new(CachingKeyValueStore::new(inner, cache_bytes, RecordTimestamp::new()))
        }, true, false, &ops)?;
    }
}

// ---------------------------------------------------------------- window

#[derive(Debug, Clone)]
enum WinOp {
    Put(Vec<u8>, Option<Vec<u8>>, i64),
    Fetch(Vec<u8>, i64),
    FetchRange(Vec<u8>, i64, i64),
    FetchKeyRange(Vec<u8>, Vec<u8>, i64, i64),
    FetchAll(i64, i64),
    Reopen,
}

fn time() -> impl Strategy<Value = i64> {
    0i64..200
}

fn win_op() -> impl Strategy<Value = WinOp> {
    prop_oneof![
        6 => (key(), prop::option::weighted(0.85, value()), time()).prop_map(|(k, v, t)| WinOp::Put(k, v, t)),
        2 => (key(), time()).prop_map(|(k, t)| WinOp::Fetch(k, t)),
        2 => (key(), time(), time()).prop_map(|(k, a, b)| WinOp::FetchRange(k, a, b)),
        2 => (key(), key(), time(), time()).prop_map(|(a, b, f, t)| WinOp::FetchKeyRange(a, b, f, t)),
        1 => (time(), time()).prop_map(|(f, t)| WinOp::FetchAll(f, t)),
        1 => Just(WinOp::Reopen),
    ]
}

const RETENTION: i64 = 50;
const INTERVAL: i64 = 10;

struct WindowOracle {
    entries: BTreeMap<(Vec<u8>, i64, u32), Vec<u8>>,
    observed: i64,
    seq: u32,
    dups: bool,
}

impl WindowOracle {
    fn live(&self, t: i64) -> bool {
        self.observed == i64::MIN || t > self.observed - RETENTION
    }
    fn put(&mut self, k: &[u8], v: Option<&Vec<u8>>, t: i64) {
        if self.dups && v.is_none() {
            return;
        }
        self.observed = self.observed.max(t);
        let seq = if self.dups {
            self.seq += 1;
            self.seq
        } else {
            0
        };
        if !self.live(t) {
            return;
        }
        match v {
            Some(v) => {
                self.entries.insert((k.to_vec(), t, seq), v.clone());
            }
            None => {
                self.entries.remove(&(k.to_vec(), t, seq));
            }
        }
    }
    fn select(&self, keep: impl Fn(&[u8], i64) -> bool) -> Vec<WindowEntry> {
        self.entries
            .iter()
            .filter(|((k, t, _), _)| self.live(*t) && keep(k, *t))
            .map(|((k, t, s), v)| WindowEntry {
                key: k.clone(),
                window_start: *t,
                seq: *s,
                value: v.clone(),
            })
            .collect()
    }
}

/// Compares window results; with duplicates the sequence numbers may differ after a reopen
/// (they are renumbered from the largest one found), but order and values must not.
fn same_windows(got: &[WindowEntry], want: &[WindowEntry], dups: bool) -> bool {
    if !dups {
        return got == want;
    }
    got.len() == want.len()
        && got
            .iter()
            .zip(want)
            .all(|(g, w)| g.key == w.key && g.window_start == w.window_start && g.value == w.value)
}

fn run_window_model(
    mut open: impl FnMut() -> Box<dyn WindowStore>,
    persistent: bool,
    dups: bool,
    ops: &[WinOp],
) -> Result<(), TestCaseError> {
    let mut store = open();
    let mut oracle = WindowOracle {
        entries: BTreeMap::new(),
        observed: i64::MIN,
        seq: 0,
        dups,
    };
    for op in ops {
        match op {
            WinOp::Put(k, v, t) => {
                store.put(k, v.as_deref(), *t).map_err(err)?;
                oracle.put(k, v.as_ref(), *t);
                prop_assert_eq!(store.observed_stream_time(), oracle.observed);
            }
            WinOp::Fetch(k, t) => {
                let want = oracle
                    .select(|kk, tt| kk == k.as_slice() && tt == *t)
                    .into_iter()
                    .next()
                    .map(|e| e.value);
                prop_assert_eq!(store.fetch(k, *t).map_err(err)?, want);
            }
            WinOp::FetchRange(k, a, b) => {
                let got = store.fetch_range(k, *a, *b);
                if a > b {
                    prop_assert!(
                        matches!(got, Err(StoreError::InvalidRange { .. })),
                        "unexpected result"
                    );
                } else {
                    let want = oracle.select(|kk, t| kk == k.as_slice() && t >= *a && t <= *b);
                    prop_assert!(same_windows(&got.map_err(err)?, &want, dups));
                }
            }
            WinOp::FetchKeyRange(kf, kt, a, b) => {
                let got = store.fetch_key_range(kf, kt, *a, *b);
                if a > b || kf > kt {
                    prop_assert!(
                        matches!(got, Err(StoreError::InvalidRange { .. })),
                        "unexpected result"
                    );
                } else {
                    let want = oracle.select(|kk, t| {
                        kk >= kf.as_slice() && kk <= kt.as_slice() && t >= *a && t <= *b
                    });
                    let got = got.map_err(err)?;
                    prop_assert!(
                        same_windows(&got, &want, dups),
                        "got {:?} want {:?}",
                        got,
                        want
                    );
                }
            }
            WinOp::FetchAll(a, b) => {
                let got = store.fetch_all(*a, *b);
                if a > b {
                    prop_assert!(
                        matches!(got, Err(StoreError::InvalidRange { .. })),
                        "unexpected result"
                    );
                } else {
                    let want = oracle.select(|_, t| t >= *a && t <= *b);
                    prop_assert!(same_windows(&got.map_err(err)?, &want, dups));
                }
            }
            WinOp::Reopen => {
                if persistent {
                    store.close().map_err(err)?;
                    drop(store);
                    store = open();
                    prop_assert_eq!(store.observed_stream_time(), oracle.observed);
                }
            }
        }
    }
    let want = oracle.select(|_, _| true);
    prop_assert!(same_windows(
        &store.fetch_all(i64::MIN, i64::MAX).map_err(err)?,
        &want,
        dups
    ));
    Ok(())
}

fn window_options(dups: bool) -> WindowStoreOptions {
    WindowStoreOptions {
        retention_ms: RETENTION,
        segment_interval_ms: INTERVAL,
        retain_duplicates: dups,
    }
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn window_in_memory_matches_model(ops in prop::collection::vec(win_op(), 1..60), dups in any::<bool>()) {
        let mut store = Some(InMemoryWindowStore::in_memory("w", window_options(dups)).unwrap());
        run_window_model(move || Box::new(store.take().unwrap()), false, dups, &ops)?;
    }

    #[test]
    fn window_caching_in_memory_matches_model(ops in prop::collection::vec(win_op(), 1..60), cache_bytes in 0usize..1500) {
        let inner = InMemoryWindowStore::in_memory("w", window_options(false)).unwrap();
        let mut store = Some(CachingWindowStore::new(inner, cache_bytes, RecordTimestamp::new()));
        run_window_model(move || Box::new(store.take().unwrap()), false, false, &ops)?;
    }

    #[test]
    fn window_caching_rocksdb_matches_model(ops in prop::collection::vec(win_op(), 1..50), cache_bytes in 0usize..1500) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w");
        let res = common::small_resources();
        run_window_model(|| {
            let inner = RocksDbWindowStore::rocksdb("w", &path, &res, window_options(false)).unwrap();
            Box::new(CachingWindowStore::new(inner, cache_bytes, RecordTimestamp::new()))
        }, true, false, &ops)?;
    }

    #[test]
    fn window_rocksdb_matches_model(ops in prop::collection::vec(win_op(), 1..50), dups in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w");
        let res = common::small_resources();
        run_window_model(|| Box::new(RocksDbWindowStore::rocksdb("w", &path, &res, window_options(dups)).unwrap()), true, dups, &ops)?;
    }
}

#[test]
fn window_retention_drops_whole_segments() {
    let mut store = InMemoryWindowStore::in_memory("w", window_options(false)).unwrap();
    for t in 0..100 {
        store.put(b"k", Some(b"v"), t).unwrap();
    }
    // observed 99, retention 50: live from 50, segments 5..=9.
    assert_eq!(store.segment_count(), 5);
    assert_eq!(store.fetch_range(b"k", 0, 99).unwrap().len(), 50);
    // A late write to an expired window is dropped and not reported as stored.
    assert_eq!(store.put(b"k", Some(b"late"), 10).unwrap(), None);
    assert_eq!(store.fetch(b"k", 10).unwrap(), None);

    let dir = tempfile::tempdir().unwrap();
    let res = common::small_resources();
    let mut rocks =
        RocksDbWindowStore::rocksdb("w", dir.path().join("w"), &res, window_options(false))
            .unwrap();
    for t in 0..100 {
        rocks.put(b"k", Some(b"v"), t).unwrap();
    }
    assert_eq!(rocks.segment_count(), 5);
    let segment_dirs = std::fs::read_dir(dir.path().join("w"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().is_dir())
        .count();
    assert_eq!(segment_dirs, 5, "expired segment directories are deleted");
}

// ---------------------------------------------------------------- session

#[derive(Debug, Clone)]
enum SesOp {
    Put(Vec<u8>, i64, i64, Vec<u8>),
    Remove(Vec<u8>, i64, i64),
    FetchSession(Vec<u8>, i64, i64),
    Find(Vec<u8>, i64, i64),
    FindRange(Vec<u8>, Vec<u8>, i64, i64),
    FetchKey(Vec<u8>),
    Reopen,
}

fn session_bounds() -> impl Strategy<Value = (i64, i64)> {
    (time(), 0i64..30).prop_map(|(s, len)| (s, s + len))
}

fn ses_op() -> impl Strategy<Value = SesOp> {
    prop_oneof![
        6 => (key(), session_bounds(), value()).prop_map(|(k, (s, e), v)| SesOp::Put(k, s, e, v)),
        2 => (key(), session_bounds()).prop_map(|(k, (s, e))| SesOp::Remove(k, s, e)),
        2 => (key(), session_bounds()).prop_map(|(k, (s, e))| SesOp::FetchSession(k, s, e)),
        3 => (key(), time(), time()).prop_map(|(k, e, s)| SesOp::Find(k, e, s)),
        2 => (key(), key(), time(), time()).prop_map(|(a, b, e, s)| SesOp::FindRange(a, b, e, s)),
        1 => key().prop_map(SesOp::FetchKey),
        1 => Just(SesOp::Reopen),
    ]
}

struct SessionOracle {
    entries: BTreeMap<(Vec<u8>, i64, i64), Vec<u8>>, // (key, end, start)
    observed: i64,
}

impl SessionOracle {
    fn live(&self, end: i64) -> bool {
        self.observed == i64::MIN || end > self.observed - RETENTION
    }
    fn write(&mut self, k: &[u8], s: i64, e: i64, v: Option<&Vec<u8>>) {
        self.observed = self.observed.max(e);
        if !self.live(e) {
            return;
        }
        match v {
            Some(v) => {
                self.entries.insert((k.to_vec(), e, s), v.clone());
            }
            None => {
                self.entries.remove(&(k.to_vec(), e, s));
            }
        }
    }
    fn select(&self, keep: impl Fn(&[u8], i64, i64) -> bool) -> Vec<SessionEntry> {
        self.entries
            .iter()
            .filter(|((k, e, s), _)| self.live(*e) && keep(k, *s, *e))
            .map(|((k, e, s), v)| SessionEntry {
                key: k.clone(),
                start: *s,
                end: *e,
                value: v.clone(),
            })
            .collect()
    }
}

fn run_session_model(
    mut open: impl FnMut() -> Box<dyn SessionStore>,
    persistent: bool,
    ops: &[SesOp],
) -> Result<(), TestCaseError> {
    let mut store = open();
    let mut oracle = SessionOracle {
        entries: BTreeMap::new(),
        observed: i64::MIN,
    };
    for op in ops {
        match op {
            SesOp::Put(k, s, e, v) => {
                store.put(k, *s, *e, v).map_err(err)?;
                oracle.write(k, *s, *e, Some(v));
            }
            SesOp::Remove(k, s, e) => {
                store.remove(k, *s, *e).map_err(err)?;
                oracle.write(k, *s, *e, None);
            }
            SesOp::FetchSession(k, s, e) => {
                let want = oracle
                    .select(|kk, ss, ee| kk == k.as_slice() && ss == *s && ee == *e)
                    .into_iter()
                    .next()
                    .map(|x| x.value);
                prop_assert_eq!(store.fetch_session(k, *s, *e).map_err(err)?, want);
            }
            SesOp::Find(k, earliest_end, latest_start) => {
                let want = oracle.select(|kk, s, e| {
                    kk == k.as_slice() && e >= *earliest_end && s <= *latest_start
                });
                prop_assert_eq!(
                    store
                        .find_sessions(k, *earliest_end, *latest_start)
                        .map_err(err)?,
                    want
                );
            }
            SesOp::FindRange(a, b, earliest_end, latest_start) => {
                let got = store.find_sessions_key_range(a, b, *earliest_end, *latest_start);
                if a > b {
                    prop_assert!(
                        matches!(got, Err(StoreError::InvalidRange { .. })),
                        "unexpected result"
                    );
                } else {
                    let want = oracle.select(|kk, s, e| {
                        kk >= a.as_slice()
                            && kk <= b.as_slice()
                            && e >= *earliest_end
                            && s <= *latest_start
                    });
                    prop_assert_eq!(got.map_err(err)?, want);
                }
            }
            SesOp::FetchKey(k) => {
                let want = oracle.select(|kk, _, _| kk == k.as_slice());
                prop_assert_eq!(store.fetch_key(k).map_err(err)?, want);
            }
            SesOp::Reopen => {
                if persistent {
                    store.close().map_err(err)?;
                    drop(store);
                    store = open();
                    prop_assert_eq!(store.observed_stream_time(), oracle.observed);
                }
            }
        }
    }
    prop_assert_eq!(
        store.fetch_key_range(&[], &[0xff; 8]).map_err(err)?,
        oracle.select(|_, _, _| true)
    );
    Ok(())
}

fn session_options() -> SessionStoreOptions {
    SessionStoreOptions {
        retention_ms: RETENTION,
        segment_interval_ms: INTERVAL,
    }
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn session_in_memory_matches_model(ops in prop::collection::vec(ses_op(), 1..60)) {
        let mut store = Some(InMemorySessionStore::in_memory("s", session_options()).unwrap());
        run_session_model(move || Box::new(store.take().unwrap()), false, &ops)?;
    }

    #[test]
    fn session_caching_in_memory_matches_model(ops in prop::collection::vec(ses_op(), 1..60), cache_bytes in 0usize..1500) {
        let inner = InMemorySessionStore::in_memory("s", session_options()).unwrap();
        let mut store = Some(CachingSessionStore::new(inner, cache_bytes, RecordTimestamp::new()));
        run_session_model(move || Box::new(store.take().unwrap()), false, &ops)?;
    }

    #[test]
    fn session_caching_rocksdb_matches_model(ops in prop::collection::vec(ses_op(), 1..50), cache_bytes in 0usize..1500) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let res = common::small_resources();
        run_session_model(|| {
            let inner = RocksDbSessionStore::rocksdb("s", &path, &res, session_options()).unwrap();
            Box::new(CachingSessionStore::new(inner, cache_bytes, RecordTimestamp::new()))
        }, true, &ops)?;
    }

    #[test]
    fn session_rocksdb_matches_model(ops in prop::collection::vec(ses_op(), 1..50)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let res = common::small_resources();
        run_session_model(|| Box::new(RocksDbSessionStore::rocksdb("s", &path, &res, session_options()).unwrap()), true, &ops)?;
    }
}

#[test]
fn session_with_start_after_end_is_rejected() {
    let mut store = InMemorySessionStore::in_memory("s", session_options()).unwrap();
    assert!(
        matches!(
            store.put(b"k", 10, 5, b"v"),
            Err(StoreError::InvalidRange { .. })
        ),
        "unexpected result"
    );
}
