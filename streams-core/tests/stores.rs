#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Typed stores of every kind through the Processor API and the test driver: iterators,
//! the timestamped layout in the store and in the changelog, window and session stores,
//! kind and type checks, and the order in which a cache's flush reaches downstream.

use std::time::Duration;

use streams_core::*;

fn driver(t: Topology) -> TopologyTestDriver {
    TopologyTestDriver::new(t, StreamsConfig::new("stores")).unwrap()
}

/// A processor made of a closure.
struct F<Fun>(Fun);
impl<Fun> Processor<String, String, String, String> for F<Fun>
where
    Fun: FnMut(&mut ProcessorContext<'_, String, String>, Record<String, String>) -> Result<()>
        + Send
        + 'static,
{
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, String>,
        r: Record<String, String>,
    ) -> Result<()> {
        (self.0)(ctx, r)
    }
}

fn with_store<Fun>(store: StoreBuilder, f: Fun) -> Topology
where
    Fun: FnMut(&mut ProcessorContext<'_, String, String>, Record<String, String>) -> Result<()>
        + Send
        + Clone
        + Sync
        + 'static,
{
    let mut t = Topology::new();
    t.add_source(Source::<String, String>::new("in", ["in"]))
        .unwrap();
    t.add_processor("p", move || F(f.clone()), &["in"]).unwrap();
    t.add_state_store(store, &["p"]).unwrap();
    t.add_sink(Sink::<String, String>::new("out", "out"), &["p"])
        .unwrap();
    t
}

#[test]
fn key_value_iterators_range_reverse_prefix() {
    let t = with_store(StoreBuilder::key_value("kv"), |ctx, r| {
        if r.key == "query" {
            let store = ctx.key_value_store::<String, String>("kv")?;
            let show = |it: StoreIter<'_, (String, String)>| -> Result<String> {
                Ok(it
                    .map(|e| e.map(|(k, v)| format!("{k}={v}")))
                    .collect::<Result<Vec<_>>>()?
                    .join(","))
            };
            let lines = [
                show(store.range(&"b".into(), &"d".into(), Direction::Forward)?)?,
                show(store.range(&"b".into(), &"d".into(), Direction::Reverse)?)?,
                show(store.all(Direction::Reverse)?)?,
                show(store.prefix_scan(&"b".into())?)?,
                store.approximate_num_entries()?.to_string(),
            ];
            for line in lines {
                ctx.forward(Record::new("q".into(), line, r.timestamp))?;
            }
            return Ok(());
        }
        let mut store = ctx.key_value_store::<String, String>("kv")?;
        store.put(&r.key, &r.value)
    });
    let d = driver(t);
    let input = d
        .create_input_topic("in", StringSerde, StringSerde)
        .unwrap();
    for k in ["a", "b", "bb", "c", "d", "e"] {
        input.pipe_input(k.into(), k.to_uppercase()).unwrap();
    }
    input.pipe_input("query".into(), String::new()).unwrap();
    let out = d.create_output_topic("out", StringSerde, StringSerde);
    let values: Vec<String> = out
        .read_key_values_to_vec()
        .unwrap()
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(
        values,
        vec![
            "b=B,bb=BB,c=C,d=D".to_owned(),
            "d=D,c=C,bb=BB,b=B".to_owned(),
            "e=E,d=D,c=C,bb=BB,b=B,a=A".to_owned(),
            "b=B,bb=BB".to_owned(),
            "6".to_owned(),
        ]
    );
}

#[test]
fn timestamped_key_value_store_keeps_timestamps_and_logs_plain_values() {
    // Each record stores its value with its timestamp + 5; a record with value "?" reads
    // the stored value and timestamp back and forwards them.
    let t = with_store(StoreBuilder::timestamped_key_value("ts"), |ctx, r| {
        let mut store = ctx.timestamped_key_value_store::<String, String>("ts")?;
        if r.value == "?" {
            let got = store.get(&r.key)?.expect("stored");
            return ctx.forward(Record::new(
                r.key,
                format!("{}@{}", got.value, got.timestamp),
                r.timestamp,
            ));
        }
        store.put(&r.key, &ValueAndTimestamp::new(r.value, r.timestamp + 5))
    });
    let d = driver(t);
    let input = d
        .create_input_topic("in", StringSerde, StringSerde)
        .unwrap();
    input
        .pipe_input_with_timestamp("k".into(), "v1".into(), 100)
        .unwrap();
    input
        .pipe_input_with_timestamp("k".into(), "?".into(), 200)
        .unwrap();
    let out = d.create_output_topic("out", StringSerde, StringSerde);
    assert_eq!(out.read_value().unwrap(), "v1@105");
    // The changelog holds the plain value, with the stored timestamp as the record's.
    let changelog = d.create_output_topic("stores-ts-changelog", StringSerde, StringSerde);
    let logged = changelog.read_record().unwrap();
    assert_eq!(
        (logged.key.as_str(), logged.value.as_str(), logged.timestamp),
        ("k", "v1", 105)
    );
    // The driver reads the store's values without their timestamps.
    assert_eq!(
        d.read_key_value_store::<String, String>("ts").unwrap(),
        vec![("k".into(), "v1".into())]
    );
}

#[test]
fn window_store_fetches_ranges_and_drops_expired_windows() {
    let store = StoreBuilder::window(
        "w",
        Duration::from_millis(100),
        Duration::from_millis(10),
        false,
    )
    .unwrap();
    let t = with_store(store, |ctx, r| {
        let start = r.timestamp - r.timestamp.rem_euclid(10);
        let mut store = ctx.window_store::<String, String>("w")?;
        if r.value == "?" {
            let windows: Vec<String> = store
                .fetch_range(&r.key, 0, i64::MAX)?
                .map(|e| e.map(|(s, v)| format!("{s}:{v}")))
                .collect::<Result<_>>()?;
            let all: Vec<String> = store
                .all()?
                .map(|e| {
                    e.map(|(w, v)| format!("{}[{},{})={v}", w.key, w.window.start, w.window.end))
                })
                .collect::<Result<_>>()?;
            return ctx.forward(Record::new(
                r.key,
                format!("{} | {}", windows.join(","), all.join(",")),
                r.timestamp,
            ));
        }
        let old = store.fetch(&r.key, start)?.unwrap_or_default();
        store.put(&r.key, Some(&format!("{old}{}", r.value)), start)
    });
    let d = driver(t);
    let input = d
        .create_input_topic("in", StringSerde, StringSerde)
        .unwrap();
    for (k, v, ts) in [("a", "x", 1), ("a", "y", 5), ("b", "z", 12), ("a", "w", 15)] {
        input
            .pipe_input_with_timestamp(k.into(), v.into(), ts)
            .unwrap();
    }
    input
        .pipe_input_with_timestamp("a".into(), "?".into(), 15)
        .unwrap();
    let out = d.create_output_topic("out", StringSerde, StringSerde);
    assert_eq!(
        out.read_value().unwrap(),
        "0:xy,10:w | a[0,10)=xy,a[10,20)=w,b[10,20)=z"
    );
    // Far later: the first windows are past retention and gone.
    input
        .pipe_input_with_timestamp("c".into(), "v".into(), 500)
        .unwrap();
    assert_eq!(
        d.read_window_store::<String, String>("w").unwrap(),
        vec![("c".to_owned(), 500, "v".to_owned())]
    );
}

#[test]
fn session_store_finds_mergeable_sessions() {
    let t = with_store(
        StoreBuilder::session("s", Duration::from_secs(60)),
        |ctx, r| {
            let mut store = ctx.session_store::<String, String>("s")?;
            if r.value == "?" {
                // Sessions a record at 25 with a gap of 5 could merge with: end >= 20, start <= 30.
                let found: Vec<String> = store
                    .find_sessions(&r.key, 20, 30)?
                    .map(|e| e.map(|(w, v)| format!("[{},{}]={v}", w.window.start, w.window.end)))
                    .collect::<Result<_>>()?;
                return ctx.forward(Record::new(r.key, found.join(","), r.timestamp));
            }
            let session = Windowed {
                key: r.key.clone(),
                window: Window {
                    start: r.timestamp,
                    end: r.timestamp + 10,
                },
            };
            store.put(&session, &r.value)
        },
    );
    let d = driver(t);
    let input = d
        .create_input_topic("in", StringSerde, StringSerde)
        .unwrap();
    for ts in [0, 15, 40] {
        input
            .pipe_input_with_timestamp("u".into(), format!("s{ts}"), ts)
            .unwrap();
    }
    input
        .pipe_input_with_timestamp("u".into(), "?".into(), 40)
        .unwrap();
    let out = d.create_output_topic("out", StringSerde, StringSerde);
    assert_eq!(out.read_value().unwrap(), "[15,25]=s15");
    assert_eq!(
        d.read_session_store::<String, String>("s").unwrap().len(),
        3
    );
}

#[test]
fn a_store_is_reached_only_as_its_kind_and_with_one_pair_of_types() {
    let store =
        StoreBuilder::window("w", Duration::from_secs(1), Duration::from_secs(1), false).unwrap();
    let t = with_store(store, |ctx, _r| {
        ctx.key_value_store::<String, String>("w").map(|_| ())
    });
    let d = driver(t);
    let err = d
        .create_input_topic("in", StringSerde, StringSerde)
        .unwrap()
        .pipe_input("k".into(), "v".into())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("it is a window store, not a key-value store"),
        "{err}"
    );

    let t = with_store(StoreBuilder::key_value("kv"), |ctx, r| {
        if r.value == "bytes" {
            ctx.key_value_store::<Vec<u8>, Vec<u8>>("kv").map(|_| ())
        } else {
            ctx.key_value_store::<String, String>("kv").map(|_| ())
        }
    });
    let d = driver(t);
    let input = d
        .create_input_topic("in", StringSerde, StringSerde)
        .unwrap();
    input.pipe_input("k".into(), "text".into()).unwrap();
    let err = input
        .pipe_input("k".into(), "bytes".into())
        .unwrap_err()
        .to_string();
    assert!(err.contains("was opened with serdes"), "{err}");
}

/// Writes each `key=value` pair of a record's value into a cached store and forwards what
/// the cache flushes, as `new<-old`; after its writes it forwards `done` itself, so the
/// output shows where evictions land relative to the processor's own records.
struct CachedWriter;
impl Processor<String, String, String, String> for CachedWriter {
    fn init(&mut self, ctx: &mut ProcessorContext<'_, String, String>) -> Result<()> {
        let cached = ctx.set_cache_flush_listener::<String, String, _>("cached", |ctx, r| {
            let text = format!(
                "{}<-{}",
                r.value.new.unwrap_or_default(),
                r.value.old.unwrap_or_else(|| "none".into())
            );
            ctx.forward(Record::new(r.key, text, r.timestamp))
        })?;
        assert!(cached);
        Ok(())
    }
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, String>,
        r: Record<String, String>,
    ) -> Result<()> {
        let mut store = ctx.key_value_store::<String, String>("cached")?;
        for pair in r.value.split(' ') {
            let (k, v) = pair.split_once('=').unwrap();
            store.put(&k.to_owned(), &v.to_owned())?;
        }
        ctx.forward(Record::new(r.key, "done".into(), r.timestamp))
    }
}

fn cached_writer(cache_max_bytes: usize) -> TopologyTestDriver {
    let mut t = Topology::new();
    t.add_source(Source::<String, String>::new("in", ["in"]))
        .unwrap();
    t.add_processor("p", || CachedWriter, &["in"]).unwrap();
    t.add_state_store(
        StoreBuilder::key_value("cached")
            .in_memory()
            .with_caching(true),
        &["p"],
    )
    .unwrap();
    t.add_sink(Sink::<String, String>::new("out", "out"), &["p"])
        .unwrap();
    TopologyTestDriver::new(
        t,
        StreamsConfig::new("stores").cache_max_bytes(cache_max_bytes),
    )
    .unwrap()
}

/// Kafka's `TimestampedCacheFlushListener` order: an entry evicted by a `put` reaches
/// downstream inside that `put`, before what the processor forwards after it (and
/// evicting a dirty entry flushes the cache's other dirty entries, oldest write first).
#[test]
fn an_eviction_is_forwarded_inside_the_put_that_caused_it() {
    // Room for about two entries (each costs key + value + 64 bytes).
    let d = cached_writer(150);
    let input = d
        .create_input_topic("in", StringSerde, StringSerde)
        .unwrap();
    let out = d.create_output_topic("out", StringSerde, StringSerde);
    input
        .pipe_input_with_timestamp("r1".into(), "a=1 b=1 c=1".into(), 10)
        .unwrap();
    let seen: Vec<(String, String)> = out.read_key_values_to_vec().unwrap();
    // Writing c evicts a (the least recently used), which flushes the cache's other dirty
    // entries, b and c, in write order; all inside the put of c, so before the
    // processor's own `done`. The commit after the record has nothing left to flush.
    assert_eq!(
        seen,
        vec![
            ("a".into(), "1<-none".into()),
            ("b".into(), "1<-none".into()),
            ("c".into(), "1<-none".into()),
            ("r1".into(), "done".into()),
        ]
    );
    // Rewriting b (cached, clean) then writing d evicts a clean entry (dropped silently)
    // and stays within the budget: nothing is forwarded before `done`, then the commit
    // flushes the dirty ones in write order with the values they replace.
    input
        .pipe_input_with_timestamp("r2".into(), "b=2 d=1".into(), 20)
        .unwrap();
    assert_eq!(
        out.read_key_values_to_vec().unwrap(),
        vec![
            ("r2".into(), "done".into()),
            ("b".into(), "2<-1".into()),
            ("d".into(), "1<-none".into()),
        ]
    );
}

/// A second processor cannot take over a store's flushes; a store without a cache
/// reports `false` and its writes are never flushed.
#[test]
fn one_owner_per_store_and_none_without_a_cache() {
    struct Owner(&'static str);
    impl Processor<String, String, String, String> for Owner {
        fn init(&mut self, ctx: &mut ProcessorContext<'_, String, String>) -> Result<()> {
            let cached =
                ctx.set_cache_flush_listener::<String, String, _>(self.0, |_, _| Ok(()))?;
            assert_eq!(cached, self.0 == "cached");
            Ok(())
        }
        fn process(
            &mut self,
            _: &mut ProcessorContext<'_, String, String>,
            _: Record<String, String>,
        ) -> Result<()> {
            Ok(())
        }
    }
    let mut t = Topology::new();
    t.add_source(Source::<String, String>::new("in", ["in"]))
        .unwrap();
    t.add_processor("first", || Owner("cached"), &["in"])
        .unwrap();
    t.add_processor("plain", || Owner("uncached"), &["in"])
        .unwrap();
    t.add_state_store(
        StoreBuilder::key_value("cached").with_caching(true),
        &["first"],
    )
    .unwrap();
    t.add_state_store(StoreBuilder::key_value("uncached"), &["plain"])
        .unwrap();
    assert!(TopologyTestDriver::new(t, StreamsConfig::new("stores")).is_ok());

    let mut t = Topology::new();
    t.add_source(Source::<String, String>::new("in", ["in"]))
        .unwrap();
    t.add_processor("first", || Owner("cached"), &["in"])
        .unwrap();
    t.add_processor("second", || Owner("cached"), &["in"])
        .unwrap();
    t.add_state_store(
        StoreBuilder::key_value("cached").with_caching(true),
        &["first", "second"],
    )
    .unwrap();
    let err = TopologyTestDriver::new(t, StreamsConfig::new("stores"))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("already forwarded by `first`"), "{err}");
}

#[test]
fn cache_flush_forwards_dirty_entries_in_last_write_order_with_old_values() {
    let d = cached_writer(1 << 20);
    let input = d
        .create_input_topic("in", StringSerde, StringSerde)
        .unwrap();
    let out = d.create_output_topic("out", StringSerde, StringSerde);
    // One record, four writes: the driver's commit after it flushes each key once, in the
    // order of their last write (b was rewritten last), with the value the store held.
    input
        .pipe_input_with_timestamp("r1".into(), "b=1 a=1 c=1 b=2".into(), 10)
        .unwrap();
    assert_eq!(
        out.read_key_values_to_vec().unwrap(),
        vec![
            ("r1".into(), "done".into()),
            ("a".into(), "1<-none".into()),
            ("c".into(), "1<-none".into()),
            ("b".into(), "2<-none".into())
        ]
    );
    // A second record: only the key it dirtied is flushed, with its old value.
    input
        .pipe_input_with_timestamp("r2".into(), "a=3".into(), 20)
        .unwrap();
    assert_eq!(out.read_value().unwrap(), "done");
    let r = out.read_record().unwrap();
    assert_eq!(
        (r.key.as_str(), r.value.as_str(), r.timestamp),
        ("a", "3<-1", 20)
    );
    assert!(out.is_empty());
}

/// Re-entrancy: a processor downstream of the flush listener writes to the same cached
/// store, and its writes evict (so push entries out) while the listener is still running.
/// Those entries wait until the running listener returns and are then forwarded, in
/// order, within the same commit.
#[test]
fn writes_from_downstream_of_the_listener_are_forwarded_after_it_returns() {
    struct Echo;
    impl Processor<String, String, String, String> for Echo {
        fn process(
            &mut self,
            ctx: &mut ProcessorContext<'_, String, String>,
            r: Record<String, String>,
        ) -> Result<()> {
            if r.key.starts_with("echo") || r.value == "done" {
                return Ok(());
            }
            let mut store = ctx.key_value_store::<String, String>("cached")?;
            store.put(&format!("echo1-{}", r.key), &"x".to_owned())?;
            store.put(&format!("echo2-{}", r.key), &"x".to_owned())
        }
    }
    let mut t = Topology::new();
    t.add_source(Source::<String, String>::new("in", ["in"]))
        .unwrap();
    t.add_processor("p", || CachedWriter, &["in"]).unwrap();
    t.add_sink(Sink::<String, String>::new("out", "out"), &["p"])
        .unwrap();
    t.add_processor("echo", || Echo, &["p"]).unwrap();
    t.add_state_store(
        StoreBuilder::key_value("cached")
            .in_memory()
            .with_caching(true),
        &["p", "echo"],
    )
    .unwrap();
    let d = TopologyTestDriver::new(t, StreamsConfig::new("stores").cache_max_bytes(100)).unwrap();
    d.create_input_topic("in", StringSerde, StringSerde)
        .unwrap()
        .pipe_input_with_timestamp("r1".into(), "a=1".into(), 10)
        .unwrap();
    let out = d.create_output_topic("out", StringSerde, StringSerde);
    assert_eq!(
        out.read_key_values_to_vec().unwrap(),
        vec![
            ("r1".into(), "done".into()),
            ("a".into(), "1<-none".into()),
            ("echo1-a".into(), "x<-none".into()),
            ("echo2-a".into(), "x<-none".into()),
        ]
    );
}

/// Kafka's `ProcessorContextImpl#forward`: a child runs in the forwarded record's context,
/// so its store writes are change-logged with the forwarded timestamp, and the parent's
/// context (and timestamp) is back once the forward returns.
#[test]
fn store_writes_carry_the_timestamp_of_the_record_being_processed() {
    let mut t = Topology::new();
    t.add_source(Source::<String, String>::new("in", ["in"]))
        .unwrap();
    t.add_processor(
        "shift",
        || {
            F(
                |ctx: &mut ProcessorContext<'_, String, String>, r: Record<String, String>| {
                    let ts = r.timestamp;
                    ctx.forward(Record::new(r.key.clone(), r.value.clone(), ts + 1000))?;
                    ctx.key_value_store::<String, String>("before")?
                        .put(&r.key, &r.value)
                },
            )
        },
        &["in"],
    )
    .unwrap();
    t.add_processor(
        "p",
        || {
            F(
                |ctx: &mut ProcessorContext<'_, String, String>, r: Record<String, String>| {
                    ctx.key_value_store::<String, String>("after")?
                        .put(&r.key, &r.value)
                },
            )
        },
        &["shift"],
    )
    .unwrap();
    t.add_state_store(StoreBuilder::key_value("before"), &["shift"])
        .unwrap();
    t.add_state_store(StoreBuilder::key_value("after"), &["p"])
        .unwrap();
    let d = driver(t);
    d.create_input_topic("in", StringSerde, StringSerde)
        .unwrap()
        .pipe_input_with_timestamp("k".into(), "v".into(), 100)
        .unwrap();
    let ts = |store: &str| {
        d.create_output_topic(
            &format!("stores-{store}-changelog"),
            StringSerde,
            StringSerde,
        )
        .read_record()
        .unwrap()
        .timestamp
    };
    assert_eq!(ts("after"), 1100);
    assert_eq!(ts("before"), 100);
}
