//! Caching, change-logging + restoration, checkpoints, task directories and error cases.

// Test helpers outside `#[test]` functions fail the test by panicking, like the tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use state_store::{
    CacheFlushEntry, CachingKeyValueStore, CachingSessionStore, CachingWindowStore,
    ChangeLoggingKeyValueStore, ChangeLoggingSessionStore, ChangeLoggingWindowStore,
    ChangelogRecord, Direction, InMemoryChangelog, InMemoryKeyValueStore, InMemorySessionStore,
    InMemoryWindowStore, KeyValueStore, Metered, OffsetCheckpoint, PreviousShutdown,
    RecordTimestamp, Restorable, RestoreListener, RestoreProgress, Restorer, RocksDbKeyValueStore,
    RocksDbSessionStore, RocksDbWindowStore, SessionCacheFlushEntry, SessionStore,
    SessionStoreOptions, StateStore, StoreError, StoreMetrics, StoreOperation, TaskDirectory,
    TopicPartition, WindowCacheFlushEntry, WindowStore, WindowStoreOptions,
};

fn cases() -> ProptestConfig {
    ProptestConfig {
        cases: 64,
        ..ProptestConfig::default()
    }
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(vec![0u8, b'a', b'b', 0xff]), 0..3)
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..5)
}

// ---------------------------------------------------------------- caching

#[derive(Debug, Clone)]
enum CacheOp {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    Flush,
}

fn cache_op() -> impl Strategy<Value = CacheOp> {
    prop_oneof![
        5 => (key(), value()).prop_map(|(k, v)| CacheOp::Put(k, v)),
        2 => key().prop_map(CacheOp::Delete),
        1 => Just(CacheOp::Flush),
    ]
}

type Flushed = Arc<Mutex<Vec<CacheFlushEntry>>>;

fn recording_cache(
    max_bytes: usize,
) -> (
    CachingKeyValueStore<ChangeLoggingKeyValueStore<InMemoryKeyValueStore, InMemoryChangelog>>,
    Flushed,
    InMemoryChangelog,
    RecordTimestamp,
) {
    let ts = RecordTimestamp::new();
    let log = InMemoryChangelog::new();
    let logged =
        ChangeLoggingKeyValueStore::new(InMemoryKeyValueStore::new("kv"), log.clone(), ts.clone());
    let mut cache = CachingKeyValueStore::new(logged, max_bytes, ts.clone());
    let flushed: Flushed = Arc::default();
    let sink = flushed.clone();
    cache.set_flush_listener(Box::new(move |e| sink.lock().unwrap().push(e.clone())));
    (cache, flushed, log, ts)
}

proptest! {
    #![proptest_config(cases())]

    /// With a cache large enough not to evict, each flush reports exactly the last write per
    /// key since the previous flush (deletes as tombstones), each key once, and the
    /// changelog receives the same coalesced writes; as Kafka's caching stores, a delete of
    /// a key the store below does not hold is neither reported nor written.
    #[test]
    fn cache_flush_reports_last_write_per_key(ops in prop::collection::vec(cache_op(), 1..80)) {
        let (mut cache, flushed, log, ts) = recording_cache(usize::MAX);
        let mut pending: BTreeMap<Vec<u8>, (Option<Vec<u8>>, i64)> = BTreeMap::new();
        let mut logged_so_far = 0usize;
        let mut below: std::collections::BTreeSet<Vec<u8>> = std::collections::BTreeSet::new();
        for (i, op) in ops.iter().chain(std::iter::once(&CacheOp::Flush)).enumerate() {
            ts.set(i as i64);
            match op {
                CacheOp::Put(k, v) => {
                    cache.put(k, v).unwrap();
                    pending.insert(k.clone(), (Some(v.clone()), i as i64));
                }
                CacheOp::Delete(k) => {
                    cache.delete(k).unwrap();
                    pending.insert(k.clone(), (None, i as i64));
                }
                CacheOp::Flush => {
                    pending.retain(|k, (v, _)| v.is_some() || below.contains(k));
                    for (k, (v, _)) in &pending {
                        if v.is_some() {
                            below.insert(k.clone());
                        } else {
                            below.remove(k);
                        }
                    }
                    cache.flush().unwrap();
                    let batch: Vec<CacheFlushEntry> = std::mem::take(&mut *flushed.lock().unwrap());
                    prop_assert!(batch.iter().all(|e| !e.evicted));
                    let got: BTreeMap<Vec<u8>, (Option<Vec<u8>>, i64)> = batch
                        .iter()
                        .map(|e| (e.key.clone(), (e.new_value.clone(), e.timestamp)))
                        .collect();
                    prop_assert_eq!(got.len(), batch.len(), "a key was reported twice in one flush");
                    prop_assert_eq!(&got, &pending);
                    // The changelog got the same coalesced writes, stamped with their own time.
                    let records = log.records().unwrap();
                    let new_records: BTreeMap<Vec<u8>, (Option<Vec<u8>>, i64)> = records[logged_so_far..]
                        .iter()
                        .map(|r| (r.key.clone(), (r.value.clone(), r.timestamp)))
                        .collect();
                    prop_assert_eq!(records.len() - logged_so_far, pending.len());
                    prop_assert_eq!(&new_records, &pending);
                    logged_so_far = records.len();
                    pending.clear();
                }
            }
        }
    }

    /// A small cache stays within its byte bound; evicted and flushed entries together
    /// bring the store below to the same contents as the writes.
    #[test]
    fn cache_eviction_is_bounded_and_loses_nothing(ops in prop::collection::vec(cache_op(), 1..80), max_bytes in 0usize..600) {
        let (mut cache, flushed, _log, _ts) = recording_cache(max_bytes);
        let mut oracle = BTreeMap::new();
        for op in &ops {
            match op {
                CacheOp::Put(k, v) => { cache.put(k, v).unwrap(); oracle.insert(k.clone(), v.clone()); }
                CacheOp::Delete(k) => { cache.delete(k).unwrap(); oracle.remove(k); }
                CacheOp::Flush => cache.flush().unwrap(),
            }
            prop_assert!(cache.cached_bytes() <= max_bytes);
        }
        cache.flush().unwrap();
        let below: BTreeMap<Vec<u8>, Vec<u8>> = cache.inner().all(Direction::Forward).unwrap().map(Result::unwrap).collect();
        prop_assert_eq!(&below, &oracle);
        // Replaying what the listener saw gives the same contents too.
        let mut replay = BTreeMap::new();
        for e in flushed.lock().unwrap().iter() {
            match &e.new_value {
                Some(v) => { replay.insert(e.key.clone(), v.clone()); }
                None => { replay.remove(&e.key); }
            }
        }
        prop_assert_eq!(&replay, &oracle);
    }
}

#[test]
fn cache_coalesces_word_count_updates() {
    let (mut cache, flushed, log, _ts) = recording_cache(1 << 20);
    for i in 0..1000u32 {
        let word = format!("w{}", i % 10);
        let n = cache.get(word.as_bytes()).unwrap().map_or(0, |v| v.len());
        cache.put(word.as_bytes(), &vec![b'x'; n + 1]).unwrap();
    }
    cache.flush().unwrap();
    assert_eq!(
        flushed.lock().unwrap().len(),
        10,
        "one update per key per flush"
    );
    assert_eq!(
        log.records().unwrap().len(),
        10,
        "one changelog record per key per flush"
    );
    assert_eq!(cache.get(b"w3").unwrap().map(|v| v.len()), Some(100));
}

#[test]
fn cache_reports_old_values_when_asked() {
    let (mut cache, flushed, _log, _ts) = recording_cache(1 << 20);
    cache.set_send_old_values(true);
    cache.put(b"k", b"1").unwrap();
    cache.flush().unwrap();
    cache.put(b"k", b"2").unwrap();
    cache.delete(b"k").unwrap();
    cache.flush().unwrap();
    let got = flushed.lock().unwrap().clone();
    assert_eq!(got.len(), 2);
    assert_eq!(
        (got[0].new_value.clone(), got[0].old_value.clone()),
        (Some(b"1".to_vec()), None)
    );
    assert_eq!(
        (got[1].new_value.clone(), got[1].old_value.clone()),
        (None, Some(b"1".to_vec()))
    );
}

// ---------------------------------------------------------------- logging + restore

#[derive(Debug, Clone)]
enum LogOp {
    KvPut(Vec<u8>, Vec<u8>),
    KvDelete(Vec<u8>),
    WinPut(Vec<u8>, Option<Vec<u8>>, i64),
    SesPut(Vec<u8>, i64, i64, Vec<u8>),
    SesRemove(Vec<u8>, i64, i64),
}

fn log_op() -> impl Strategy<Value = LogOp> {
    prop_oneof![
        3 => (key(), value()).prop_map(|(k, v)| LogOp::KvPut(k, v)),
        1 => key().prop_map(LogOp::KvDelete),
        3 => (key(), prop::option::weighted(0.8, value()), 0i64..200).prop_map(|(k, v, t)| LogOp::WinPut(k, v, t)),
        2 => (key(), 0i64..200, 0i64..20, value()).prop_map(|(k, s, l, v)| LogOp::SesPut(k, s, s + l, v)),
        1 => (key(), 0i64..200, 0i64..20).prop_map(|(k, s, l)| LogOp::SesRemove(k, s, s + l)),
    ]
}

fn win_opts(dups: bool) -> WindowStoreOptions {
    WindowStoreOptions {
        retention_ms: 50,
        segment_interval_ms: 10,
        retain_duplicates: dups,
    }
}

fn ses_opts() -> SessionStoreOptions {
    SessionStoreOptions {
        retention_ms: 50,
        segment_interval_ms: 10,
    }
}

struct Recording(Vec<RestoreProgress>);

impl RestoreListener for Recording {
    fn on_batch_restored(&mut self, _: &str, _: &TopicPartition, p: &RestoreProgress) {
        self.0.push(*p);
    }
}

/// Restores `records` into `store` in two steps: up to and including offset `mid`, then
/// from the checkpoint `mid` to the end, as a restart after a checkpoint would.
fn restore_in_two_steps<S: Restorable + ?Sized>(
    store: &mut S,
    records: &[ChangelogRecord],
    mid: Option<i64>,
) {
    let tp = TopicPartition::changelog("app", store.name(), 0);
    let end = records.last().map_or(0, |r| r.offset + 1);
    let restorer = Restorer::new(7);
    let mut listener = Recording(Vec::new());
    let first_end = mid.map_or(0, |m| m + 1);
    let p1 = restorer
        .restore(
            store,
            &tp,
            0,
            first_end,
            records.iter().cloned().map(Ok),
            &mut listener,
        )
        .unwrap();
    assert_eq!(p1.last_restored_offset, mid.filter(|_| !records.is_empty()));
    let start = Restorer::start_offset(mid, 0);
    let p2 = restorer
        .restore(
            store,
            &tp,
            start,
            end,
            records.iter().cloned().map(Ok),
            &mut listener,
        )
        .unwrap();
    assert_eq!(
        p1.records_restored + p2.records_restored,
        records.len() as u64
    );
    if !records.is_empty() {
        assert_eq!(p2.offsets_restored, p2.offsets_to_restore);
    }
}

proptest! {
    // Each case opens six RocksDB stores (and their segments): fewer cases keep it quick.
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Random writes through change-logging stores; a fresh store of either backend restored
    /// from the changelog (in one go, or from a checkpoint midway after a restart) holds
    /// exactly the same contents.
    #[test]
    fn changelog_restore_round_trip(ops in prop::collection::vec(log_op(), 0..80), dups in any::<bool>(), mid_frac in 0.0f64..1.0) {
        let ts = RecordTimestamp::new();
        let (kv_log, win_log, ses_log) = (InMemoryChangelog::new(), InMemoryChangelog::new(), InMemoryChangelog::new());
        let mut kv = ChangeLoggingKeyValueStore::new(InMemoryKeyValueStore::new("kv"), kv_log.clone(), ts.clone());
        let mut win = ChangeLoggingWindowStore::new(InMemoryWindowStore::in_memory("win", win_opts(dups)).unwrap(), win_log.clone(), ts.clone());
        let mut ses = ChangeLoggingSessionStore::new(InMemorySessionStore::in_memory("ses", ses_opts()).unwrap(), ses_log.clone(), ts.clone());
        for (i, op) in ops.iter().enumerate() {
            ts.set(1000 + i as i64);
            match op {
                LogOp::KvPut(k, v) => kv.put(k, v).unwrap(),
                LogOp::KvDelete(k) => { kv.delete(k).unwrap(); }
                LogOp::WinPut(k, v, t) => { win.put(k, v.as_deref(), *t).unwrap(); }
                LogOp::SesPut(k, s, e, v) => ses.put(k, *s, *e, v).unwrap(),
                LogOp::SesRemove(k, s, e) => ses.remove(k, *s, *e).unwrap(),
            }
        }
        let kv_records = kv_log.records().unwrap();
        let win_records = win_log.records().unwrap();
        let ses_records = ses_log.records().unwrap();
        prop_assert!(kv_records.iter().chain(&win_records).chain(&ses_records).all(|r| r.timestamp >= 1000));
        let mid = |n: usize| if n == 0 { None } else { Some(((n - 1) as f64 * mid_frac) as i64) };

        let want_kv = kv.all(Direction::Forward).unwrap().collect::<Result<Vec<_>, _>>().unwrap();
        let want_win = win.fetch_all(i64::MIN, i64::MAX).unwrap();
        let want_ses = ses.fetch_key_range(&[], &[0xff; 4]).unwrap();

        // In-memory, one pass.
        let mut kv2 = InMemoryKeyValueStore::new("kv");
        restore_in_two_steps(&mut kv2, &kv_records, None);
        prop_assert_eq!(kv2.all(Direction::Forward).unwrap().collect::<Result<Vec<_>, _>>().unwrap(), want_kv.clone());
        let mut win2 = InMemoryWindowStore::in_memory("win", win_opts(dups)).unwrap();
        restore_in_two_steps(&mut win2, &win_records, None);
        prop_assert_eq!(win2.fetch_all(i64::MIN, i64::MAX).unwrap(), want_win.clone());
        let mut ses2 = InMemorySessionStore::in_memory("ses", ses_opts()).unwrap();
        restore_in_two_steps(&mut ses2, &ses_records, None);
        prop_assert_eq!(ses2.fetch_key_range(&[], &[0xff; 4]).unwrap(), want_ses.clone());

        // RocksDB: restore to a midway checkpoint, flush, close, reopen, restore the rest.
        let dir = tempfile::tempdir().unwrap();
        let res = common::small_resources();
        let (kv_path, win_path, ses_path) = (dir.path().join("kv"), dir.path().join("win"), dir.path().join("ses"));
        {
            let tp = TopicPartition::new("t", 0);
            let mut l = Recording(Vec::new());
            let r = Restorer::new(5);
            let mut kv3 = RocksDbKeyValueStore::open("kv", &kv_path, &res).unwrap();
            r.restore(&mut kv3, &tp, 0, mid(kv_records.len()).map_or(0, |m| m + 1), kv_records.iter().cloned().map(Ok), &mut l).unwrap();
            kv3.close().unwrap();
            let mut win3 = RocksDbWindowStore::rocksdb("win", &win_path, &res, win_opts(dups)).unwrap();
            r.restore(&mut win3, &tp, 0, mid(win_records.len()).map_or(0, |m| m + 1), win_records.iter().cloned().map(Ok), &mut l).unwrap();
            win3.close().unwrap();
            let mut ses3 = RocksDbSessionStore::rocksdb("ses", &ses_path, &res, ses_opts()).unwrap();
            r.restore(&mut ses3, &tp, 0, mid(ses_records.len()).map_or(0, |m| m + 1), ses_records.iter().cloned().map(Ok), &mut l).unwrap();
            ses3.close().unwrap();
        }
        let mut kv3 = RocksDbKeyValueStore::open("kv", &kv_path, &res).unwrap();
        restore_in_two_steps_from(&mut kv3, &kv_records, mid(kv_records.len()));
        prop_assert_eq!(kv3.all(Direction::Forward).unwrap().collect::<Result<Vec<_>, _>>().unwrap(), want_kv);
        let mut win3 = RocksDbWindowStore::rocksdb("win", &win_path, &res, win_opts(dups)).unwrap();
        restore_in_two_steps_from(&mut win3, &win_records, mid(win_records.len()));
        prop_assert_eq!(win3.fetch_all(i64::MIN, i64::MAX).unwrap(), want_win);
        let mut ses3 = RocksDbSessionStore::rocksdb("ses", &ses_path, &res, ses_opts()).unwrap();
        restore_in_two_steps_from(&mut ses3, &ses_records, mid(ses_records.len()));
        prop_assert_eq!(ses3.fetch_key_range(&[], &[0xff; 4]).unwrap(), want_ses);
    }
}

/// The second half of a restart: restore from checkpoint `mid` to the end.
fn restore_in_two_steps_from<S: Restorable + ?Sized>(
    store: &mut S,
    records: &[ChangelogRecord],
    mid: Option<i64>,
) {
    let tp = TopicPartition::new("t", 0);
    let end = records.last().map_or(0, |r| r.offset + 1);
    let start = Restorer::start_offset(mid, 0);
    let mut l = Recording(Vec::new());
    Restorer::new(3)
        .restore(
            store,
            &tp,
            start,
            end,
            records.iter().cloned().map(Ok),
            &mut l,
        )
        .unwrap();
}

#[test]
fn restore_progress_counts_offsets_across_gaps() {
    // Offsets 10, 11, 15, 16, 30 (gaps from compaction); end offset 40.
    let records: Vec<ChangelogRecord> = [10i64, 11, 15, 16, 30]
        .iter()
        .map(|&o| ChangelogRecord {
            offset: o,
            key: vec![o as u8],
            value: Some(vec![1]),
            timestamp: 0,
        })
        .collect();
    let mut store = InMemoryKeyValueStore::new("kv");
    let mut l = Recording(Vec::new());
    let p = Restorer::new(2)
        .restore(
            &mut store,
            &TopicPartition::new("t", 0),
            11,
            40,
            records.into_iter().map(Ok),
            &mut l,
        )
        .unwrap();
    let seen: Vec<(u64, u64, u64)> =
        l.0.iter()
            .map(|p| (p.records_restored, p.offsets_restored, p.offsets_to_restore))
            .collect();
    assert_eq!(seen, vec![(2, 5, 29), (4, 20, 29)]);
    assert_eq!(p.last_restored_offset, Some(30));
    assert_eq!(
        store.get(&[10]).unwrap(),
        None,
        "records before the start offset are skipped"
    );
    assert_eq!(store.approximate_num_entries().unwrap(), 4);
}

#[test]
fn corrupt_changelog_keys_are_typed_errors() {
    let bad = vec![ChangelogRecord {
        offset: 7,
        key: b"short".to_vec(),
        value: Some(vec![]),
        timestamp: 0,
    }];
    let mut win = InMemoryWindowStore::in_memory("w", win_opts(false)).unwrap();
    assert!(matches!(
        win.restore_batch(&bad),
        Err(StoreError::CorruptChangelogRecord { offset: 7, .. })
    ));
    let mut ses = InMemorySessionStore::in_memory("s", ses_opts()).unwrap();
    assert!(matches!(
        ses.restore_batch(&bad),
        Err(StoreError::CorruptChangelogRecord { offset: 7, .. })
    ));
}

#[test]
fn window_changelog_keys_follow_kafka_layout() {
    let log = InMemoryChangelog::new();
    let mut win = ChangeLoggingWindowStore::new(
        InMemoryWindowStore::in_memory("w", win_opts(true)).unwrap(),
        log.clone(),
        RecordTimestamp::new(),
    );
    win.put(b"k", Some(b"a"), 5).unwrap();
    win.put(b"k", Some(b"b"), 5).unwrap();
    win.put(b"k", None, 5).unwrap(); // ignored with duplicates
    let keys: Vec<Vec<u8>> = log.records().unwrap().into_iter().map(|r| r.key).collect();
    assert_eq!(
        keys,
        vec![
            state_store::window_changelog_key(b"k", 5, 1),
            state_store::window_changelog_key(b"k", 5, 2),
        ]
    );
    assert_eq!(win.fetch_range(b"k", 5, 5).unwrap().len(), 2);
}

// ---------------------------------------------------------------- metering

#[test]
fn metered_store_counts_operations() {
    let metrics = Arc::new(StoreMetrics::new());
    let mut store = Metered::new(InMemoryKeyValueStore::new("kv"), metrics.clone());
    store.put(b"a", b"1").unwrap();
    store.put(b"b", b"2").unwrap();
    store.get(b"a").unwrap();
    store.range(b"a", b"z", Direction::Forward).unwrap();
    store.delete(b"a").unwrap();
    store.flush().unwrap();
    assert_eq!(metrics.stats(StoreOperation::Put).count, 2);
    assert_eq!(metrics.stats(StoreOperation::Get).count, 1);
    assert_eq!(metrics.stats(StoreOperation::Range).count, 1);
    assert_eq!(metrics.stats(StoreOperation::Delete).count, 1);
    assert_eq!(metrics.stats(StoreOperation::Flush).count, 1);
    let put = metrics.stats(StoreOperation::Put);
    assert!(put.max_nanos <= put.total_nanos);
}

// ---------------------------------------------------------------- checkpoint files

#[test]
fn checkpoint_round_trips_in_kafka_text_format() {
    let dir = tempfile::tempdir().unwrap();
    let cp = OffsetCheckpoint::new(dir.path().join(".checkpoint"));
    assert!(cp.read().unwrap().is_empty());
    let mut offsets = BTreeMap::new();
    offsets.insert(TopicPartition::changelog("app", "counts", 3), 41);
    offsets.insert(TopicPartition::new("app-other-changelog", 0), 7);
    cp.write(&offsets).unwrap();
    let text = std::fs::read_to_string(cp.path()).unwrap();
    assert_eq!(
        text,
        "0\n2\napp-counts-changelog 3 41\napp-other-changelog 0 7\n"
    );
    assert_eq!(cp.read().unwrap(), offsets);
    assert!(!dir.path().join(".checkpoint.tmp").exists());
    cp.delete().unwrap();
    assert!(!cp.exists());
}

#[test]
fn corrupt_checkpoints_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cp = OffsetCheckpoint::new(dir.path().join(".checkpoint"));
    for (text, line) in [
        ("", 1),
        ("1\n0\n", 1),
        ("0\nx\n", 2),
        ("0\n2\nt 0 1\n", 4),
        ("0\n1\nt zero 1\n", 3),
        ("0\n1\nt 0\n", 3),
        ("0\n1\nt 0 1\nu 0 2\n", 4),
    ] {
        std::fs::write(cp.path(), text).unwrap();
        match cp.read() {
            Err(StoreError::CorruptCheckpoint { line: l, .. }) => assert_eq!(l, line, "{text:?}"),
            other => panic!("{text:?}: expected a corrupt checkpoint error, got {other:?}"),
        }
    }
    let mut bad = BTreeMap::new();
    bad.insert(TopicPartition::new("has space", 0), 1);
    assert!(matches!(
        cp.write(&bad),
        Err(StoreError::InvalidArgument(_))
    ));
}

#[test]
fn task_directory_detects_unclean_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let task = TaskDirectory::new(dir.path(), "app", "0_1").unwrap();
    assert_eq!(
        task.store_path("counts").unwrap(),
        dir.path().join("app/0_1/rocksdb/counts")
    );
    assert!(TaskDirectory::new(dir.path(), "app", "../x").is_err());
    assert!(task.store_path("a/b").is_err());

    let res = common::small_resources();
    let tp = TopicPartition::changelog("app", "counts", 1);
    let mut offsets = BTreeMap::new();
    offsets.insert(tp.clone(), 5);

    assert_eq!(
        task.open().unwrap().previous_shutdown,
        PreviousShutdown::Fresh
    );
    let mut store =
        RocksDbKeyValueStore::open("counts", task.store_path("counts").unwrap(), &res).unwrap();
    store.put(b"k", b"v").unwrap();
    task.checkpoint_stores(&mut [&mut store], &offsets).unwrap();
    drop(store); // no clean close: the marker stays

    let state = task.open().unwrap();
    assert_eq!(state.previous_shutdown, PreviousShutdown::Unclean);
    assert_eq!(state.checkpoint, offsets);

    let mut store =
        RocksDbKeyValueStore::open("counts", task.store_path("counts").unwrap(), &res).unwrap();
    assert_eq!(
        store.get(b"k").unwrap(),
        Some(b"v".to_vec()),
        "checkpointed data was flushed"
    );
    task.close_clean(&mut [&mut store], &offsets).unwrap();
    assert!(!store.is_open());
    assert_eq!(
        task.open().unwrap().previous_shutdown,
        PreviousShutdown::Clean
    );

    task.wipe_stores().unwrap();
    assert!(!task.store_path("counts").unwrap().exists());
    assert!(!task.checkpoint().exists());
}

#[test]
fn stores_without_checkpoint_count_as_unclean() {
    let dir = tempfile::tempdir().unwrap();
    let task = TaskDirectory::new(dir.path(), "app", "1_0").unwrap();
    let res = common::small_resources();
    let mut store = RocksDbKeyValueStore::open("s", task.store_path("s").unwrap(), &res).unwrap();
    store.close().unwrap();
    assert_eq!(
        task.open().unwrap().previous_shutdown,
        PreviousShutdown::Unclean
    );
}

// ---------------------------------------------------------------- errors

#[test]
fn opening_a_directory_of_another_store_type_fails() {
    let dir = tempfile::tempdir().unwrap();
    let res = common::small_resources();
    let kv_path = dir.path().join("kv");
    RocksDbKeyValueStore::open("kv", &kv_path, &res)
        .unwrap()
        .close()
        .unwrap();
    let err = RocksDbWindowStore::rocksdb("kv", &kv_path, &res, win_opts(false)).unwrap_err();
    assert!(
        matches!(&err, StoreError::StoreTypeMismatch { expected, found, .. } if expected == "window" && found == "key-value"),
        "{err}"
    );

    let win_path = dir.path().join("win");
    RocksDbWindowStore::rocksdb("win", &win_path, &res, win_opts(false))
        .unwrap()
        .close()
        .unwrap();
    assert!(matches!(
        RocksDbKeyValueStore::open("win", &win_path, &res),
        Err(StoreError::StoreTypeMismatch { .. })
    ));
    assert!(matches!(
        RocksDbSessionStore::rocksdb("win", &win_path, &res, ses_opts()),
        Err(StoreError::StoreTypeMismatch { .. })
    ));
}

#[test]
fn a_locked_store_reports_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let res = common::small_resources();
    let path = dir.path().join("kv");
    let _first = RocksDbKeyValueStore::open("kv", &path, &res).unwrap();
    match RocksDbKeyValueStore::open("kv", &path, &res) {
        Err(StoreError::Locked { path: p, store, .. }) => {
            assert_eq!(p, path);
            assert_eq!(store, "kv");
        }
        other => panic!("expected a lock error, got {other:?}"),
    }
}

#[test]
fn closed_stores_refuse_operations() {
    let dir = tempfile::tempdir().unwrap();
    let res = common::small_resources();
    let mut kv = RocksDbKeyValueStore::open("kv", dir.path().join("kv"), &res).unwrap();
    kv.close().unwrap();
    kv.close().unwrap();
    assert!(matches!(kv.put(b"a", b"b"), Err(StoreError::Closed { .. })));
    assert!(matches!(
        kv.all(Direction::Forward),
        Err(StoreError::Closed { .. })
    ));
    let mut mem = InMemoryKeyValueStore::new("m");
    mem.close().unwrap();
    assert!(matches!(mem.get(b"a"), Err(StoreError::Closed { .. })));
    let mut win = InMemoryWindowStore::in_memory("w", win_opts(false)).unwrap();
    win.close().unwrap();
    assert!(matches!(
        win.put(b"a", Some(b"b"), 1),
        Err(StoreError::Closed { .. })
    ));
    let mut ses = InMemorySessionStore::in_memory("s", ses_opts()).unwrap();
    ses.close().unwrap();
    assert!(matches!(
        ses.fetch_key(b"a"),
        Err(StoreError::Closed { .. })
    ));
    let mut cached =
        CachingKeyValueStore::new(InMemoryKeyValueStore::new("c"), 100, RecordTimestamp::new());
    cached.close().unwrap();
    assert!(matches!(
        cached.put(b"a", b"b"),
        Err(StoreError::Closed { .. })
    ));
}

#[test]
fn invalid_ranges_are_typed_errors() {
    let store = InMemoryKeyValueStore::new("kv");
    assert!(matches!(
        store.range(b"b", b"a", Direction::Forward),
        Err(StoreError::InvalidRange { .. })
    ));
    let win = InMemoryWindowStore::in_memory("w", win_opts(false)).unwrap();
    assert!(matches!(
        win.fetch_range(b"k", 10, 5),
        Err(StoreError::InvalidRange { .. })
    ));
    assert!(matches!(
        win.fetch_key_range(b"b", b"a", 0, 5),
        Err(StoreError::InvalidRange { .. })
    ));
    let ses = InMemorySessionStore::in_memory("s", ses_opts()).unwrap();
    assert!(matches!(
        ses.find_sessions_key_range(b"b", b"a", 0, 5),
        Err(StoreError::InvalidRange { .. })
    ));
    let err = StoreError::InvalidRange {
        store: "kv".into(),
        detail: "x".into(),
    };
    assert!(err.to_string().contains("kv"));
}

#[test]
fn undecodable_segment_keys_are_corruption_errors_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let res = common::small_resources();
    let path = dir.path().join("w");
    let mut win = RocksDbWindowStore::rocksdb("w", &path, &res, win_opts(false)).unwrap();
    win.put(b"k", Some(b"v"), 15).unwrap();
    win.close().unwrap();
    // Damage the segment behind the store's back.
    {
        let db = rocksdb::DB::open_default(path.join("w.10")).unwrap();
        db.put(b"garbage", b"x").unwrap();
    }
    match RocksDbWindowStore::rocksdb("w", &path, &res, win_opts(false)) {
        Err(StoreError::Corruption {
            store,
            path: p,
            detail,
        }) => {
            assert_eq!(store, "w");
            assert_eq!(p, path);
            assert!(detail.contains("w.10"), "{detail}");
        }
        other => panic!("expected a corruption error, got {other:?}"),
    }
}

#[test]
fn window_cache_coalesces_updates_per_window() {
    let log = InMemoryChangelog::new();
    let ts = RecordTimestamp::new();
    let logged = ChangeLoggingWindowStore::new(
        InMemoryWindowStore::in_memory("w", win_opts(false)).unwrap(),
        log.clone(),
        ts.clone(),
    );
    let mut cache = CachingWindowStore::new(logged, 1 << 20, ts.clone());
    let flushed: Arc<Mutex<Vec<WindowCacheFlushEntry>>> = Arc::default();
    let sink = flushed.clone();
    cache.set_flush_listener(Box::new(move |e| sink.lock().unwrap().push(e.clone())));
    for i in 0..30i64 {
        ts.set(100 + i);
        cache.put(b"k", Some(&[i as u8]), (i % 3) * 10).unwrap();
    }
    cache.put(b"gone", Some(b"x"), 0).unwrap();
    cache.put(b"gone", None, 0).unwrap();
    assert!(
        log.records().unwrap().is_empty(),
        "nothing reaches the changelog before a flush"
    );
    assert_eq!(cache.fetch(b"k", 20).unwrap(), Some(vec![29]));
    cache.flush().unwrap();
    let got = flushed.lock().unwrap().clone();
    type Flushed = (Vec<u8>, i64, Option<Vec<u8>>, i64);
    let mut summary: Vec<Flushed> = got
        .iter()
        .map(|e| {
            (
                e.key.clone(),
                e.window_start,
                e.new_value.clone(),
                e.timestamp,
            )
        })
        .collect();
    summary.sort();
    // `gone` never reached the store below: its delete is skipped, as Kafka's caching
    // window store does.
    assert_eq!(
        summary,
        vec![
            (b"k".to_vec(), 0, Some(vec![27]), 127),
            (b"k".to_vec(), 10, Some(vec![28]), 128),
            (b"k".to_vec(), 20, Some(vec![29]), 129),
        ]
    );
    let records = log.records().unwrap();
    assert_eq!(records.len(), 3);
    assert!(records
        .iter()
        .all(|r| r.key != state_store::window_changelog_key(b"gone", 0, 0)));
}

#[test]
fn session_cache_coalesces_merges() {
    let log = InMemoryChangelog::new();
    let ts = RecordTimestamp::new();
    let logged = ChangeLoggingSessionStore::new(
        InMemorySessionStore::in_memory("s", ses_opts()).unwrap(),
        log.clone(),
        ts.clone(),
    );
    let mut cache = CachingSessionStore::new(logged, 1 << 20, ts.clone());
    let flushed: Arc<Mutex<Vec<SessionCacheFlushEntry>>> = Arc::default();
    let sink = flushed.clone();
    cache.set_flush_listener(Box::new(move |e| sink.lock().unwrap().push(e.clone())));
    // A session growing as records arrive: each merge removes the old session and writes
    // the merged one.
    cache.put(b"k", 0, 10, b"1").unwrap();
    cache.remove(b"k", 0, 10).unwrap();
    cache.put(b"k", 0, 20, b"2").unwrap();
    cache.put(b"k", 0, 20, b"3").unwrap();
    assert!(log.records().unwrap().is_empty());
    assert_eq!(cache.find_sessions(b"k", 5, 5).unwrap().len(), 1);
    cache.flush().unwrap();
    let got: Vec<(i64, i64, Option<Vec<u8>>)> = flushed
        .lock()
        .unwrap()
        .iter()
        .map(|e| (e.start, e.end, e.new_value.clone()))
        .collect();
    // The session [0, 10] was removed before it reached the store below: its removal is
    // skipped, as Kafka's caching session store does.
    assert_eq!(got, vec![(0, 20, Some(b"3".to_vec()))]);
    let keys: Vec<Vec<u8>> = log.records().unwrap().into_iter().map(|r| r.key).collect();
    assert_eq!(keys, vec![state_store::session_changelog_key(b"k", 0, 20)]);
}

/// `find_sessions_by_end` (Kafka's time-ordered session store's `findSessions(earliestEnd,
/// latestEnd)`): every key's sessions ending in the range, by end, then key, then start,
/// in memory, on RocksDB and through a cache holding unflushed writes.
#[test]
fn sessions_by_end_span_every_key_in_end_order() {
    let dir = tempfile::tempdir().unwrap();
    let res = common::small_resources();
    let stores: Vec<Box<dyn SessionStore>> = vec![
        Box::new(InMemorySessionStore::in_memory("s", ses_opts()).unwrap()),
        Box::new(
            RocksDbSessionStore::rocksdb("s", dir.path().join("s"), &res, ses_opts()).unwrap(),
        ),
    ];
    for mut store in stores {
        store.put(b"b", 3, 5, b"b5").unwrap();
        store.put(b"a", 5, 5, b"a5").unwrap();
        store.put(b"a", 0, 12, b"a12").unwrap();
        store.put(b"c", 1, 7, b"c7").unwrap();
        store.put(b"a", 4, 5, b"a5b").unwrap();
        let got = |s: &dyn SessionStore, from, to| -> Vec<(Vec<u8>, i64, i64)> {
            s.find_sessions_by_end(from, to)
                .unwrap()
                .into_iter()
                .map(|e| (e.key, e.start, e.end))
                .collect()
        };
        assert_eq!(
            got(store.as_ref(), 5, 7),
            vec![
                (b"a".to_vec(), 4, 5),
                (b"a".to_vec(), 5, 5),
                (b"b".to_vec(), 3, 5),
                (b"c".to_vec(), 1, 7)
            ]
        );
        assert!(got(store.as_ref(), 13, 20).is_empty());
        let mut cache = CachingSessionStore::new(store, 1 << 20, RecordTimestamp::new());
        cache.put(b"0", 6, 6, b"06").unwrap();
        cache.remove(b"c", 1, 7).unwrap();
        assert_eq!(
            got(&cache, 6, 12),
            vec![(b"0".to_vec(), 6, 6), (b"a".to_vec(), 0, 12)]
        );
    }
}
