//! Tests of the record cache core, the thread budget and the three caching adapters.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use proptest::prelude::*;

use super::*;
use crate::store::{BatchEntry, Direction, KeyValueStore, SessionStore, WindowStore};
use crate::{
    CachingKeyValueStore, CachingSessionStore, CachingWindowStore, InMemoryKeyValueStore,
    InMemorySessionStore, InMemoryWindowStore, SessionCacheFlushEntry, SessionStoreOptions,
    WindowCacheFlushEntry, WindowStoreOptions,
};

type Seen<E> = Arc<Mutex<Vec<E>>>;
/// New and old value of a pushed entry.
type Values = (Option<Vec<u8>>, Option<Vec<u8>>);

fn recorder<E: Clone + Send + 'static>() -> (Seen<E>, Listener<E>) {
    let seen: Seen<E> = Arc::default();
    let sink = seen.clone();
    (seen, Box::new(move |e: &E| sink.lock().push(e.clone())))
}

fn take<E>(seen: &Seen<E>) -> Vec<E> {
    std::mem::take(&mut *seen.lock())
}

/// Bytes one entry with a 1-byte key and a 1-byte value is charged in a key-value cache.
const SMALL: usize = 2 + ENTRY_OVERHEAD;

fn kv(name: &str, budget: &ThreadCache) -> CachingKeyValueStore<InMemoryKeyValueStore> {
    CachingKeyValueStore::with_thread_cache(
        InMemoryKeyValueStore::new(name),
        budget,
        format!("0_0-{name}"),
        RecordTimestamp::new(),
    )
}

fn window(max_bytes: usize) -> CachingWindowStore<InMemoryWindowStore> {
    let opts = WindowStoreOptions::new(1 << 40);
    let inner = InMemoryWindowStore::in_memory("w", opts).unwrap();
    CachingWindowStore::new(inner, max_bytes, RecordTimestamp::new())
}

fn session(max_bytes: usize) -> CachingSessionStore<InMemorySessionStore> {
    let inner = InMemorySessionStore::in_memory("s", SessionStoreOptions::new(1 << 40)).unwrap();
    CachingSessionStore::new(inner, max_bytes, RecordTimestamp::new())
}

fn keys(entries: &[CacheFlushEntry]) -> Vec<(Vec<u8>, Option<Vec<u8>>, bool)> {
    entries
        .iter()
        .map(|e| (e.key.clone(), e.new_value.clone(), e.evicted))
        .collect()
}

fn e(k: u8, v: Option<u8>, evicted: bool) -> (Vec<u8>, Option<Vec<u8>>, bool) {
    (vec![k], v.map(|v| vec![v]), evicted)
}

#[test]
fn one_budget_across_stores_evicts_from_the_written_store() {
    let budget = ThreadCache::new(10 * SMALL);
    let mut a = kv("a", &budget);
    let mut b = kv("b", &budget);
    let (seen_a, l) = recorder();
    a.set_flush_listener(l);
    let (seen_b, l) = recorder();
    b.set_flush_listener(l);
    for i in 0..8 {
        a.put(&[i], &[i]).unwrap();
    }
    assert_eq!(budget.size_bytes(), 8 * SMALL);
    for i in 0..5 {
        b.put(&[i], &[i]).unwrap();
        assert!(budget.size_bytes() <= budget.max_bytes());
        assert_eq!(budget.size_bytes(), a.cached_bytes() + b.cached_bytes());
    }
    // The third write to `b` went over: `b` evicted its own eldest entry (dirty: pushed down
    // and reported as evicted, then the rest of `b` flushed, as Kafka's NamedCache does),
    // the next writes dropped `b`'s clean eldest entries. `a` was not touched.
    assert_eq!(
        keys(&take(&seen_b)),
        vec![
            e(0, Some(0), true),
            e(1, Some(1), false),
            e(2, Some(2), false)
        ]
    );
    assert!(take(&seen_a).is_empty());
    assert_eq!(a.cached_entries(), 8);
    assert_eq!(a.inner().approximate_num_entries().unwrap(), 0);
    assert_eq!(budget.namespace_bytes("0_0-a"), 8 * SMALL);
    assert_eq!(b.inner().get(&[0]).unwrap(), Some(vec![0]));
    assert_eq!(
        b.inner().get(&[3]).unwrap(),
        None,
        "still dirty in the cache"
    );
    assert_eq!(b.get(&[3]).unwrap(), Some(vec![3]));
    assert_eq!(b.cached_entries(), 2);
    b.flush().unwrap();
    assert_eq!(
        keys(&take(&seen_b)),
        vec![e(3, Some(3), false), e(4, Some(4), false)]
    );
    assert_eq!(b.inner().approximate_num_entries().unwrap(), 5);

    // Dropping a store gives its bytes back to the thread.
    assert_eq!(
        budget.namespaces(),
        vec!["0_0-a".to_owned(), "0_0-b".to_owned()]
    );
    drop(b);
    assert_eq!(budget.size_bytes(), 8 * SMALL);
    assert_eq!(budget.namespaces(), vec!["0_0-a".to_owned()]);
    for i in 8..11 {
        a.put(&[i], &[i]).unwrap();
    }
    let got = take(&seen_a);
    assert_eq!(got[0], {
        CacheFlushEntry {
            key: vec![0],
            new_value: Some(vec![0]),
            old_value: None,
            timestamp: 0,
            evicted: true,
        }
    });
    assert_eq!(got.len(), 11, "evicting a dirty entry flushed all of `a`");
    assert!(budget.size_bytes() <= budget.max_bytes());
}

#[test]
fn closing_a_store_empties_its_named_cache() {
    let budget = ThreadCache::new(1 << 20);
    let mut a = kv("a", &budget);
    a.put(b"k", b"v").unwrap();
    assert!(budget.size_bytes() > 0);
    a.close().unwrap();
    assert_eq!(budget.size_bytes(), 0);
    assert!(matches!(a.put(b"k", b"v"), Err(StoreError::Closed { .. })));
}

#[test]
fn flush_pushes_only_dirty_entries_for_all_three_kinds() {
    let budget = ThreadCache::new(1 << 20);
    let mut k = kv("kv", &budget);
    let (seen, l) = recorder();
    k.set_flush_listener(l);
    k.put(b"x", b"1").unwrap();
    k.flush().unwrap();
    assert_eq!(take(&seen).len(), 1);
    k.put(b"y", b"2").unwrap();
    assert_eq!(
        k.get(b"x").unwrap(),
        Some(b"1".to_vec()),
        "still cached, clean"
    );
    k.flush().unwrap();
    let got = take(&seen);
    assert_eq!(got.len(), 1, "the clean entry is not flushed again");
    assert_eq!(got[0].key, b"y");
    k.flush().unwrap();
    assert!(take(&seen).is_empty());

    let mut w = window(1 << 20);
    let (seen, l) = recorder::<WindowCacheFlushEntry>();
    w.set_flush_listener(l);
    w.put(b"x", Some(b"1"), 10).unwrap();
    w.flush().unwrap();
    assert_eq!(take(&seen).len(), 1);
    w.put(b"x", Some(b"2"), 20).unwrap();
    w.flush().unwrap();
    let got = take(&seen);
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].window_start, got[0].new_value.clone()),
        (20, Some(b"2".to_vec()))
    );
    w.flush().unwrap();
    assert!(take(&seen).is_empty());

    let mut s = session(1 << 20);
    let (seen, l) = recorder::<SessionCacheFlushEntry>();
    s.set_flush_listener(l);
    s.put(b"x", 0, 5, b"1").unwrap();
    s.flush().unwrap();
    assert_eq!(take(&seen).len(), 1);
    s.put(b"x", 10, 15, b"2").unwrap();
    s.flush().unwrap();
    let got = take(&seen);
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].start, got[0].end), (10, 15));
    s.flush().unwrap();
    assert!(take(&seen).is_empty());
}

#[test]
fn flush_order_is_last_write_order() {
    let budget = ThreadCache::new(1 << 20);
    let mut k = kv("kv", &budget);
    let (seen, l) = recorder();
    k.set_flush_listener(l);
    k.put(b"a", b"1").unwrap();
    k.put(b"b", b"1").unwrap();
    k.put(b"c", b"1").unwrap();
    k.put(b"a", b"2").unwrap();
    k.delete(b"b").unwrap();
    k.flush().unwrap();
    let got: Vec<(Vec<u8>, Option<Vec<u8>>)> = take(&seen)
        .into_iter()
        .map(|e| (e.key, e.new_value))
        .collect();
    // `b` was put and deleted between two flushes: the store below never held it, so (as
    // Kafka's caching store) its delete is neither written nor forwarded.
    assert_eq!(
        got,
        vec![
            (b"c".to_vec(), Some(b"1".to_vec())),
            (b"a".to_vec(), Some(b"2".to_vec())),
        ]
    );
    // A delete of a key the store below holds is flushed.
    k.delete(b"c").unwrap();
    k.flush().unwrap();
    let got: Vec<(Vec<u8>, Option<Vec<u8>>)> = take(&seen)
        .into_iter()
        .map(|e| (e.key, e.new_value))
        .collect();
    assert_eq!(got, vec![(b"c".to_vec(), None)]);
}

#[test]
fn eviction_takes_the_least_recently_used_entry_reads_included() {
    // Core level: a read moves an entry to the LRU head.
    let budget = ThreadCache::new(usize::MAX);
    let mut core: RecordCache<Vec<u8>> = RecordCache::new(&budget, "c".into());
    for k in [b"a", b"b", b"c"] {
        core.put(k.to_vec(), Some(b"v".to_vec()), 0);
    }
    assert_eq!(core.get(&b"a"[..]), Some(Some(b"v".to_vec())));
    let order: Vec<Vec<u8>> = std::iter::from_fn(|| core.pop_lru().map(|e| e.key)).collect();
    assert_eq!(order, vec![b"b".to_vec(), b"c".to_vec(), b"a".to_vec()]);
    assert_eq!(core.bytes(), 0);
    assert_eq!(budget.size_bytes(), 0);

    // Layer level: with room for three entries, the fourth write evicts `b`, not the
    // older but recently read `a`; the rest is flushed in write order.
    let budget = ThreadCache::new(3 * SMALL);
    let mut k = kv("kv", &budget);
    let (seen, l) = recorder();
    k.set_flush_listener(l);
    for i in [1, 2, 3] {
        k.put(&[i], &[i]).unwrap();
    }
    k.get(&[1]).unwrap();
    k.put(&[4], &[4]).unwrap();
    assert_eq!(
        keys(&take(&seen)),
        vec![
            e(2, Some(2), true),
            e(1, Some(1), false),
            e(3, Some(3), false),
            e(4, Some(4), false)
        ]
    );
    // Now all clean: the next eviction drops the eldest silently.
    k.put(&[5], &[5]).unwrap();
    assert!(take(&seen).is_empty());
    assert_eq!(k.cached_entries(), 3);
}

#[test]
fn old_values_for_all_three_kinds() {
    let budget = ThreadCache::new(1 << 20);
    let mut k = kv("kv", &budget);
    let (seen, l) = recorder();
    k.set_flush_listener(l);
    k.set_send_old_values(true);
    k.put(b"k", b"1").unwrap();
    k.flush().unwrap();
    k.put(b"k", b"2").unwrap();
    k.flush().unwrap();
    k.delete(b"k").unwrap();
    k.flush().unwrap();
    let got: Vec<Values> = take(&seen)
        .into_iter()
        .map(|e| (e.new_value, e.old_value))
        .collect();
    let v = |s: &[u8]| Some(s.to_vec());
    assert_eq!(
        got,
        vec![(v(b"1"), None), (v(b"2"), v(b"1")), (None, v(b"2"))]
    );

    let mut w = window(1 << 20);
    let (seen, l) = recorder::<WindowCacheFlushEntry>();
    w.set_flush_listener(l);
    w.set_send_old_values(true);
    w.put(b"k", Some(b"1"), 10).unwrap();
    w.flush().unwrap();
    w.put(b"k", Some(b"2"), 10).unwrap();
    w.put(b"k", Some(b"x"), 20).unwrap();
    w.flush().unwrap();
    let got: Vec<(i64, Values)> = take(&seen)
        .into_iter()
        .map(|e| (e.window_start, (e.entry.new_value, e.entry.old_value)))
        .collect();
    assert_eq!(
        got,
        vec![
            (10, (v(b"1"), None)),
            (10, (v(b"2"), v(b"1"))),
            (20, (v(b"x"), None))
        ]
    );

    let mut s = session(1 << 20);
    let (seen, l) = recorder::<SessionCacheFlushEntry>();
    s.set_flush_listener(l);
    s.set_send_old_values(true);
    s.put(b"k", 0, 5, b"1").unwrap();
    s.flush().unwrap();
    s.put(b"k", 0, 5, b"2").unwrap();
    s.flush().unwrap();
    s.remove(b"k", 0, 5).unwrap();
    s.flush().unwrap();
    let got: Vec<Values> = take(&seen)
        .into_iter()
        .map(|e| (e.entry.new_value, e.entry.old_value))
        .collect();
    assert_eq!(
        got,
        vec![(v(b"1"), None), (v(b"2"), v(b"1")), (None, v(b"2"))]
    );
}

#[test]
fn closed_stores_fail_with_closed_for_all_three_kinds() {
    let budget = ThreadCache::new(1 << 20);
    let mut k = kv("kv", &budget);
    k.close().unwrap();
    assert!(matches!(k.get(b"a"), Err(StoreError::Closed { .. })));
    assert!(matches!(k.put(b"a", b"b"), Err(StoreError::Closed { .. })));
    assert!(matches!(k.flush(), Err(StoreError::Closed { .. })));
    assert!(matches!(
        k.all(Direction::Forward),
        Err(StoreError::Closed { .. })
    ));
    let mut w = window(1 << 20);
    w.close().unwrap();
    assert!(matches!(w.fetch(b"a", 0), Err(StoreError::Closed { .. })));
    assert!(matches!(
        w.put(b"a", Some(b"b"), 0),
        Err(StoreError::Closed { .. })
    ));
    assert!(matches!(w.fetch_all(0, 10), Err(StoreError::Closed { .. })));
    assert!(matches!(w.flush_cache(), Err(StoreError::Closed { .. })));
    let mut s = session(1 << 20);
    s.close().unwrap();
    assert!(matches!(s.fetch_key(b"a"), Err(StoreError::Closed { .. })));
    assert!(matches!(
        s.put(b"a", 0, 1, b"b"),
        Err(StoreError::Closed { .. })
    ));
    assert!(matches!(s.flush(), Err(StoreError::Closed { .. })));
}

/// An in-memory key-value store whose writes fail while `fail` is set.
struct Flaky {
    inner: InMemoryKeyValueStore,
    fail: Arc<AtomicBool>,
}

impl Flaky {
    fn check(&self) -> Result<()> {
        if self.fail.load(Ordering::SeqCst) {
            Err(StoreError::InvalidArgument("injected failure".into()))
        } else {
            Ok(())
        }
    }
}

impl StateStore for Flaky {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn persistent(&self) -> bool {
        false
    }
    fn is_open(&self) -> bool {
        self.inner.is_open()
    }
    fn flush(&mut self) -> Result<()> {
        self.inner.flush()
    }
    fn close(&mut self) -> Result<()> {
        self.inner.close()
    }
}

impl KeyValueStore for Flaky {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.inner.get(key)
    }
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.check()?;
        self.inner.put(key, value)
    }
    fn delete(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.check()?;
        self.inner.delete(key)
    }
    fn write_batch(&mut self, batch: &[BatchEntry]) -> Result<()> {
        self.check()?;
        self.inner.write_batch(batch)
    }
    fn scan(
        &self,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        direction: Direction,
    ) -> Result<crate::KeyValueIter<'_>> {
        self.inner.scan(lower, upper, direction)
    }
    fn approximate_num_entries(&self) -> Result<u64> {
        self.inner.approximate_num_entries()
    }
}

#[test]
fn a_failed_push_down_leaves_the_entry_dirty_and_is_retried() {
    let fail = Arc::new(AtomicBool::new(false));
    let inner = Flaky {
        inner: InMemoryKeyValueStore::new("f"),
        fail: fail.clone(),
    };
    let mut k = CachingKeyValueStore::new(inner, 2 * SMALL, RecordTimestamp::new());
    let (seen, l) = recorder();
    k.set_flush_listener(l);

    // A failed flush reports nothing and keeps the entry dirty.
    k.put(b"a", b"1").unwrap();
    fail.store(true, Ordering::SeqCst);
    assert!(matches!(k.flush(), Err(StoreError::InvalidArgument(_))));
    assert!(take(&seen).is_empty());
    assert_eq!(k.get(b"a").unwrap(), Some(b"1".to_vec()));

    // A failed eviction puts the entry back (still dirty) and reports the error.
    k.put(b"b", b"2").unwrap();
    assert!(matches!(
        k.put(b"c", b"3"),
        Err(StoreError::InvalidArgument(_))
    ));
    assert_eq!(k.cached_entries(), 3);
    assert!(take(&seen).is_empty());
    assert_eq!(k.inner().get(b"a").unwrap(), None);

    // Once the store below works again, everything gets through, in write order.
    fail.store(false, Ordering::SeqCst);
    k.flush().unwrap();
    let got: Vec<Vec<u8>> = take(&seen).into_iter().map(|e| e.key).collect();
    assert_eq!(got, vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
    for (key, v) in [(b"a", b"1"), (b"b", b"2"), (b"c", b"3")] {
        assert_eq!(k.inner().get(key).unwrap(), Some(v.to_vec()));
    }
    k.flush().unwrap();
    assert!(take(&seen).is_empty());
}

#[test]
fn a_window_cache_over_a_duplicate_store_fails_and_keeps_the_entry() {
    let opts = WindowStoreOptions {
        retain_duplicates: true,
        ..WindowStoreOptions::new(1 << 40)
    };
    let inner = InMemoryWindowStore::in_memory("w", opts).unwrap();
    let mut w = CachingWindowStore::new(inner, 1 << 20, RecordTimestamp::new());
    let (seen, l) = recorder::<WindowCacheFlushEntry>();
    w.set_flush_listener(l);
    w.put(b"k", Some(b"1"), 0).unwrap();
    assert!(matches!(w.flush(), Err(StoreError::InvalidArgument(_))));
    assert!(take(&seen).is_empty());
    assert_eq!(w.fetch(b"k", 0).unwrap(), Some(b"1".to_vec()));
    // Still dirty: the next flush tries again (and fails again).
    assert!(matches!(w.flush(), Err(StoreError::InvalidArgument(_))));
    assert!(take(&seen).is_empty());
}

// ------------------------------------------------------------------------ model test

#[derive(Debug, Clone)]
enum Op {
    Kv(u8, Option<u8>),
    Get(u8),
    Win(u8, i64, Option<u8>),
    Ses(u8, i64, i64, Option<u8>),
    Flush(u8),
}

fn op() -> impl Strategy<Value = Op> {
    let value = prop::option::weighted(0.8, 0u8..4);
    prop_oneof![
        4 => (0u8..6, value.clone()).prop_map(|(k, v)| Op::Kv(k, v)),
        2 => (0u8..6).prop_map(Op::Get),
        3 => (0u8..4, 0i64..3, value.clone()).prop_map(|(k, w, v)| Op::Win(k, w * 10, v)),
        3 => (0u8..4, 0i64..3, 0i64..2, value).prop_map(|(k, s, l, v)| Op::Ses(k, s * 10, s * 10 + l, v)),
        1 => (0u8..3).prop_map(Op::Flush),
    ]
}

/// Replays what a listener saw onto `replay`, checking each entry's old value against
/// what the replay held before.
fn replay<K: Ord + Clone + std::fmt::Debug>(
    replay: &mut BTreeMap<K, Vec<u8>>,
    entries: impl IntoIterator<Item = (K, CacheFlushEntry)>,
) -> std::result::Result<(), TestCaseError> {
    for (k, e) in entries {
        prop_assert_eq!(
            &e.old_value,
            &replay.get(&k).cloned(),
            "old value of {:?}",
            k
        );
        match e.new_value {
            Some(v) => replay.insert(k, v),
            None => replay.remove(&k),
        };
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Three caches of the three kinds share one small budget. After every write the
    /// thread's total is within the budget and reads agree with a plain map; after a final
    /// flush each store below equals its model, and replaying each listener (whose old
    /// values must match the replay so far) gives the model too.
    #[test]
    fn shared_budget_caches_match_a_model(ops in prop::collection::vec(op(), 1..120), max_bytes in 0usize..1200) {
        let budget = ThreadCache::new(max_bytes);
        let ts = RecordTimestamp::new();
        let mut k = CachingKeyValueStore::with_thread_cache(InMemoryKeyValueStore::new("k"), &budget, "0_0-k", ts.clone());
        let wopts = WindowStoreOptions::new(1 << 40);
        let mut w = CachingWindowStore::with_thread_cache(InMemoryWindowStore::in_memory("w", wopts).unwrap(), &budget, "0_0-w", ts.clone());
        let sopts = SessionStoreOptions::new(1 << 40);
        let mut s = CachingSessionStore::with_thread_cache(InMemorySessionStore::in_memory("s", sopts).unwrap(), &budget, "0_1-s", ts.clone());
        let (seen_k, l) = recorder();
        k.set_flush_listener(l);
        let (seen_w, l) = recorder::<WindowCacheFlushEntry>();
        w.set_flush_listener(l);
        let (seen_s, l) = recorder::<SessionCacheFlushEntry>();
        s.set_flush_listener(l);
        k.set_send_old_values(true);
        w.set_send_old_values(true);
        s.set_send_old_values(true);
        let mut model_k = BTreeMap::new();
        let mut model_w = BTreeMap::new();
        let mut model_s = BTreeMap::new();
        for (i, op) in ops.iter().enumerate() {
            ts.set(i as i64);
            match op.clone() {
                Op::Kv(key, Some(v)) => { k.put(&[key], &[v]).unwrap(); model_k.insert(vec![key], vec![v]); }
                Op::Kv(key, None) => {
                    let old = k.delete(&[key]).unwrap();
                    prop_assert_eq!(old, model_k.remove(&vec![key]));
                }
                Op::Get(key) => prop_assert_eq!(k.get(&[key]).unwrap(), model_k.get(&vec![key]).cloned()),
                Op::Win(key, start, v) => {
                    w.put(&[key], v.as_ref().map(std::slice::from_ref), start).unwrap();
                    match v { Some(v) => model_w.insert((vec![key], start), vec![v]), None => model_w.remove(&(vec![key], start)) };
                    prop_assert_eq!(w.fetch(&[key], start).unwrap(), model_w.get(&(vec![key], start)).cloned());
                }
                Op::Ses(key, start, end, v) => {
                    match v {
                        Some(v) => { s.put(&[key], start, end, &[v]).unwrap(); model_s.insert((vec![key], end, start), vec![v]); }
                        None => { s.remove(&[key], start, end).unwrap(); model_s.remove(&(vec![key], end, start)); }
                    }
                    prop_assert_eq!(s.fetch_session(&[key], start, end).unwrap(), model_s.get(&(vec![key], end, start)).cloned());
                }
                Op::Flush(0) => k.flush().unwrap(),
                Op::Flush(1) => w.flush().unwrap(),
                Op::Flush(_) => s.flush().unwrap(),
            }
            prop_assert!(budget.size_bytes() <= max_bytes, "{} > {}", budget.size_bytes(), max_bytes);
            prop_assert_eq!(budget.size_bytes(), k.cached_bytes() + w.cached_bytes() + s.cached_bytes());
        }
        // Range reads merge cache and store below.
        let all_k: BTreeMap<Vec<u8>, Vec<u8>> = k.all(Direction::Forward).unwrap().map(Result::unwrap).collect();
        prop_assert_eq!(&all_k, &model_k);
        let all_w: BTreeMap<(Vec<u8>, i64), Vec<u8>> = w.fetch_all(i64::MIN, i64::MAX).unwrap().into_iter().map(|e| ((e.key, e.window_start), e.value)).collect();
        prop_assert_eq!(&all_w, &model_w);
        let all_s: BTreeMap<(Vec<u8>, i64, i64), Vec<u8>> = s.fetch_key_range(&[0], &[255]).unwrap().into_iter().map(|e| ((e.key, e.end, e.start), e.value)).collect();
        prop_assert_eq!(&all_s, &model_s);

        k.flush().unwrap();
        w.flush().unwrap();
        s.flush().unwrap();
        let below_k: BTreeMap<Vec<u8>, Vec<u8>> = k.inner().all(Direction::Forward).unwrap().map(Result::unwrap).collect();
        prop_assert_eq!(&below_k, &model_k);
        let below_w: BTreeMap<(Vec<u8>, i64), Vec<u8>> = w.inner().fetch_all(i64::MIN, i64::MAX).unwrap().into_iter().map(|e| ((e.key, e.window_start), e.value)).collect();
        prop_assert_eq!(&below_w, &model_w);
        let below_s: BTreeMap<(Vec<u8>, i64, i64), Vec<u8>> = s.inner().fetch_key_range(&[0], &[255]).unwrap().into_iter().map(|e| ((e.key, e.end, e.start), e.value)).collect();
        prop_assert_eq!(&below_s, &model_s);

        let mut r = BTreeMap::new();
        replay(&mut r, take(&seen_k).into_iter().map(|e| (e.key.clone(), e)))?;
        prop_assert_eq!(&r, &model_k);
        let mut r = BTreeMap::new();
        replay(&mut r, take(&seen_w).into_iter().map(|e| ((e.entry.key.clone(), e.window_start), e.entry)))?;
        prop_assert_eq!(&r, &model_w);
        let mut r = BTreeMap::new();
        replay(&mut r, take(&seen_s).into_iter().map(|e| ((e.entry.key.clone(), e.end, e.start), e.entry)))?;
        prop_assert_eq!(&r, &model_s);
    }
}
