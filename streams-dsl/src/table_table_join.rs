//! Table-table joins on the primary key (`KTable::join`, `left_join`, `outer_join` and
//! their `_materialized` variants), compiled as Kafka's `KTableImpl#doJoin`: two join
//! processors, one per side (`KTABLE-JOINTHIS-<n>` fed by this table and reading the
//! other's value getter, `KTABLE-JOINOTHER-<n>` fed by the other table and reading this
//! one's), both feeding a merge processor (`KTABLE-MERGE-<n>`) that is the result table's
//! node and, with a `Materialized`, writes its store. The processors are Kafka's
//! `KTableKTableInnerJoin`, `KTableKTableLeftJoin`, `KTableKTableRightJoin`,
//! `KTableKTableOuterJoin` and `KTableKTableJoinMerger` (without versioned-table
//! semantics, which this crate does not have).

use std::rc::Rc;
use std::sync::Arc;

use streams_core::{
    Change, Processor, ProcessorContext, Record, Result, SharedSerde, StoreAccess, StoreKind,
    StreamsError, Topology, ValueAndTimestamp,
};

use crate::ktable::{KTable, OldValues};
use crate::options::Materialized;
use crate::table::{forward_flushes, skip_record, table_store};
use crate::value_getter::{UNKNOWN_TIMESTAMP, ValueGetter};

/// A joiner oriented for one join processor: (value of the updated side, value of the
/// other side), either possibly absent; `None` only for a combination the join never asks
/// for (an inner joiner given a missing side).
type SideJoiner<V1, V2, VR> = Arc<dyn Fn(Option<&V1>, Option<&V2>) -> Option<VR> + Send + Sync>;

/// Which of Kafka's `KTableKTable*Join` processors a join side is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `KTableKTableInnerJoin` (both sides of an inner join).
    Inner,
    /// `KTableKTableLeftJoin` (this side of a left join).
    Left,
    /// `KTableKTableRightJoin` (the other side of a left join, with the reversed joiner).
    Right,
    /// `KTableKTableOuterJoin` (both sides of an outer join).
    Outer,
}

/// One side of a table-table join: updates of its table `Change<V1>` joined with the
/// other table's current value read through its getter.
struct JoinSideProcessor<K, V1, V2, VR> {
    mode: Mode,
    other: ValueGetter<K, V2>,
    joiner: SideJoiner<V1, V2, VR>,
    old_values: Arc<OldValues>,
    send_old: bool,
    key_serde: Option<SharedSerde<K>>,
}

impl<K, V1, V2, VR> Processor<K, Change<V1>, K, Change<VR>> for JoinSideProcessor<K, V1, V2, VR>
where
    K: Clone + Send + Sync + 'static,
    V1: Clone + Send + Sync + 'static,
    V2: Clone + Send + Sync + 'static,
    VR: Clone + Send + Sync + 'static,
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, K, Change<VR>>) -> Result<()> {
        self.send_old = self.old_values.enabled();
        if self.key_serde.is_none() {
            self.key_serde = ctx.serdes().get::<K>();
        }
        Ok(())
    }

    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, K, Change<VR>>,
        r: Record<K, Change<V1>>,
    ) -> Result<()> {
        // "we do join iff keys are equal, thus, if key is null we cannot join".
        if self.key_serde.as_ref().is_some_and(|s| s.is_null(&r.key)) {
            skip_record(ctx, "Skipping record due to null key.");
            return Ok(());
        }
        let other = (self.other.get_ts)(&mut ctx.store_access(), &r.key)?;
        let o = other.as_ref().map(|o| &o.value);
        let (new, old) = (r.value.new.as_ref(), r.value.old.as_ref());
        let j = &self.joiner;
        let send_old = self.send_old;
        let (new_out, old_out, timestamp) = match self.mode {
            Mode::Inner => {
                let Some(ot) = &other else {
                    return Ok(());
                };
                (
                    new.and_then(|n| j(Some(n), o)),
                    old.filter(|_| send_old).and_then(|v| j(Some(v), o)),
                    r.timestamp.max(ot.timestamp),
                )
            }
            Mode::Left => {
                if other.is_none() && new.is_none() && old.is_none() {
                    return Ok(());
                }
                let other_ts = other.as_ref().map_or(UNKNOWN_TIMESTAMP, |o| o.timestamp);
                (
                    new.and_then(|n| j(Some(n), o)),
                    old.filter(|_| send_old).and_then(|v| j(Some(v), o)),
                    r.timestamp.max(other_ts),
                )
            }
            Mode::Right => {
                let Some(ot) = &other else {
                    return Ok(());
                };
                // The reversed left joiner, called even for a missing new (old) value.
                (
                    j(new, o),
                    if send_old { j(old, o) } else { None },
                    r.timestamp.max(ot.timestamp),
                )
            }
            Mode::Outer => {
                let timestamp = match &other {
                    None if new.is_none() && old.is_none() => return Ok(()),
                    None => r.timestamp,
                    Some(ot) => r.timestamp.max(ot.timestamp),
                };
                (
                    if o.is_some() || new.is_some() {
                        j(new, o)
                    } else {
                        None
                    },
                    if send_old && (o.is_some() || old.is_some()) {
                        j(old, o)
                    } else {
                        None
                    },
                    timestamp,
                )
            }
        };
        ctx.forward(Record {
            key: r.key,
            value: Change {
                new: new_out,
                old: old_out,
            },
            timestamp,
            headers: r.headers,
        })
    }
}

/// Kafka's `KTableKTableJoinMerger`: the result table's node. Materialized, it writes each
/// update to its store (a delete for a missing new value) and forwards it, or lets the
/// store's cache forward it on flush; old values only when asked for downstream.
struct MergeProcessor<K, VR> {
    store: Option<String>,
    old_values: Arc<OldValues>,
    send_old: bool,
    cached: bool,
    _t: std::marker::PhantomData<fn(K, VR)>,
}

impl<K, VR> Processor<K, Change<VR>, K, Change<VR>> for MergeProcessor<K, VR>
where
    K: Clone + Send + Sync + 'static,
    VR: Clone + Send + Sync + 'static,
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, K, Change<VR>>) -> Result<()> {
        self.send_old = self.old_values.enabled();
        if let Some(store) = &self.store {
            self.cached = forward_flushes::<K, VR>(ctx, store, self.send_old)?;
        }
        Ok(())
    }

    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, K, Change<VR>>,
        mut r: Record<K, Change<VR>>,
    ) -> Result<()> {
        if let Some(store) = &self.store {
            let mut handle = ctx.timestamped_key_value_store::<K, VR>(store)?;
            match &r.value.new {
                Some(v) => handle.put(&r.key, &ValueAndTimestamp::new(v.clone(), r.timestamp))?,
                None => {
                    handle.delete(&r.key)?;
                }
            }
            if self.cached {
                return Ok(());
            }
        }
        if !self.send_old {
            r.value.old = None;
        }
        ctx.forward(r)
    }
}

/// The result table's value getter when it is not materialized (Kafka's
/// `KTableKTableInnerJoinValueGetter`, `...LeftJoinValueGetter`, `...OuterJoinValueGetter`
/// of the `JOINTHIS` side): both sides' getters joined on the fly, the timestamp the larger
/// of the two.
fn join_getter<K, V, VO, VR>(
    mode: Mode,
    this: ValueGetter<K, V>,
    other: ValueGetter<K, VO>,
    joiner: SideJoiner<V, VO, VR>,
) -> ValueGetter<K, VR>
where
    K: 'static,
    V: 'static,
    VO: 'static,
    VR: 'static,
{
    let mut more = this.more_stores.clone();
    more.extend(other.stores());
    let (g1, g2) = (Arc::clone(&this.get_ts), Arc::clone(&other.get_ts));
    ValueGetter::new(
        this.store.clone(),
        more,
        Arc::new(move |access: &mut StoreAccess<'_>, key: &K| {
            let v1 = g1(access, key)?;
            let result = match mode {
                Mode::Inner => {
                    let Some(a) = v1 else { return Ok(None) };
                    let Some(b) = g2(access, key)? else {
                        return Ok(None);
                    };
                    joiner(Some(&a.value), Some(&b.value))
                        .map(|v| ValueAndTimestamp::new(v, a.timestamp.max(b.timestamp)))
                }
                Mode::Left | Mode::Right => {
                    let Some(a) = v1 else { return Ok(None) };
                    let b = g2(access, key)?;
                    let ts = b
                        .as_ref()
                        .map_or(a.timestamp, |b| a.timestamp.max(b.timestamp));
                    joiner(Some(&a.value), b.as_ref().map(|b| &b.value))
                        .map(|v| ValueAndTimestamp::new(v, ts))
                }
                Mode::Outer => {
                    let b = g2(access, key)?;
                    if v1.is_none() && b.is_none() {
                        return Ok(None);
                    }
                    let ts = v1
                        .as_ref()
                        .map_or(UNKNOWN_TIMESTAMP, |a| a.timestamp)
                        .max(b.as_ref().map_or(UNKNOWN_TIMESTAMP, |b| b.timestamp));
                    joiner(v1.as_ref().map(|a| &a.value), b.as_ref().map(|b| &b.value))
                        .map(|v| ValueAndTimestamp::new(v, ts))
                }
            };
            Ok(result)
        }),
    )
}

/// Fails unless every store in `stores` is a key-value store of the topology.
fn check_stores(t: &Topology, stores: &[String], what: &str) -> Result<()> {
    for store in stores {
        match t.stores().find(|s| s.name() == store).map(|s| s.kind()) {
            Some(StoreKind::TimestampedKeyValue | StoreKind::KeyValue) => {}
            other => {
                return Err(StreamsError::Config {
                    key: what.to_owned(),
                    reason: format!(
                        "the store `{store}` of a joined table is {}, not a key-value store",
                        other.map_or("missing", |k| k.type_name())
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Kafka's `KTableImpl#doJoin`. Names are drawn as Kafka draws them: the store
/// (`KTABLE-MERGE-STATE-STORE-<n>`, for an unnamed `Materialized`), then `KTABLE-MERGE-`,
/// `KTABLE-JOINTHIS-`, `KTABLE-JOINOTHER-`.
fn table_table_join<K, V, VO, VR>(
    this: &KTable<K, V>,
    other: &KTable<K, VO>,
    mode: Mode,
    joiner_this: SideJoiner<V, VO, VR>,
    joiner_other: SideJoiner<VO, V, VR>,
    materialized: Option<Materialized<K, VR>>,
) -> KTable<K, VR>
where
    K: Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    VO: Clone + Send + Sync + 'static,
    VR: Clone + Send + Sync + 'static,
{
    let state = Rc::clone(&this.state);
    let mut s = state.borrow_mut();
    let store_name = materialized.as_ref().map(|m| match &m.name {
        Some(n) => n.clone(),
        None => s.next_name("KTABLE-MERGE-STATE-STORE-"),
    });
    let merge_name = s.next_name("KTABLE-MERGE-");
    // leftOuter: this side sends old values; rightOuter: the other side too.
    if mode != Mode::Inner {
        this.old_values.enable();
    }
    if mode == Mode::Outer {
        other.old_values.enable();
    }
    let this_name = s.next_name("KTABLE-JOINTHIS-");
    let other_name = s.next_name("KTABLE-JOINOTHER-");
    let other_mode = match mode {
        Mode::Left => Mode::Right,
        m => m,
    };
    let old_values = OldValues::child_of_both(&this.old_values, &other.old_values);
    let this_getter = this.value_getter();
    let other_getter = other.value_getter();
    let view = match (&store_name, &this_getter, &other_getter) {
        (None, Some(a), Some(b)) => Some(join_getter(
            mode,
            a.clone(),
            b.clone(),
            Arc::clone(&joiner_this),
        )),
        _ => None,
    };
    let store = match (&store_name, &materialized) {
        (Some(n), Some(m)) => Some(table_store(n, m, this.key_serde.clone(), None)),
        _ => None,
    };
    let key_serde = this.key_serde.clone();
    let (this_node, other_node) = (this.node.clone(), other.node.clone());
    let (ov_this, ov_other, ov_merge) = (
        Arc::clone(&old_values),
        Arc::clone(&old_values),
        Arc::clone(&old_values),
    );
    let merge_store = store_name.clone();
    let (ks_this, ks_other) = (key_serde.clone(), key_serde.clone());
    s.apply(|t| {
        let (Some(this_getter), Some(other_getter)) = (this_getter, other_getter) else {
            return Err(StreamsError::Config {
                key: "KTable::join".to_owned(),
                reason: format!(
                    "the tables of nodes `{this_node}` and `{other_node}` must both be \
                     materialized or have a materialized ancestor to read them through"
                ),
            });
        };
        let (this_stores, other_stores) = (this_getter.stores(), other_getter.stores());
        check_stores(t, &this_stores, "KTable::join")?;
        check_stores(t, &other_stores, "KTable::join")?;
        t.add_processor(
            &this_name,
            move || JoinSideProcessor::<K, V, VO, VR> {
                mode,
                other: other_getter.clone(),
                joiner: Arc::clone(&joiner_this),
                old_values: Arc::clone(&ov_this),
                send_old: false,
                key_serde: ks_this.clone(),
            },
            &[&this_node],
        )?;
        t.add_processor(
            &other_name,
            move || JoinSideProcessor::<K, VO, V, VR> {
                mode: other_mode,
                other: this_getter.clone(),
                joiner: Arc::clone(&joiner_other),
                old_values: Arc::clone(&ov_other),
                send_old: false,
                key_serde: ks_other.clone(),
            },
            &[&other_node],
        )?;
        t.add_processor(
            &merge_name,
            move || MergeProcessor::<K, VR> {
                store: merge_store.clone(),
                old_values: Arc::clone(&ov_merge),
                send_old: false,
                cached: false,
                _t: std::marker::PhantomData,
            },
            &[&this_name, &other_name],
        )?;
        for store in &other_stores {
            t.connect_processor_and_store(&this_name, store)?;
        }
        for store in &this_stores {
            t.connect_processor_and_store(&other_name, store)?;
        }
        if let Some(store) = store {
            t.add_state_store(store, &[&merge_name])?;
        }
        Ok(())
    });
    drop(s);
    let (key_serde, value_serde) = match materialized {
        Some(m) => (m.key_serde.or(key_serde), m.value_serde),
        None => (key_serde, None),
    };
    let mut table = KTable::with_parts(
        Rc::clone(&state),
        merge_name,
        store_name,
        key_serde,
        value_serde,
        old_values,
    );
    table.getter = view;
    table
}

/// An inner joiner as a [`SideJoiner`] of this side and of the other side.
fn inner<V, VO, VR, F>(joiner: F) -> (SideJoiner<V, VO, VR>, SideJoiner<VO, V, VR>)
where
    V: 'static,
    VO: 'static,
    VR: 'static,
    F: Fn(&V, &VO) -> VR + Send + Sync + 'static,
{
    let f = Arc::new(joiner);
    let g = Arc::clone(&f);
    (
        Arc::new(move |v: Option<&V>, o: Option<&VO>| Some(f(v?, o?))),
        Arc::new(move |o: Option<&VO>, v: Option<&V>| Some(g(v?, o?))),
    )
}

/// A left joiner as a [`SideJoiner`] of this side and, reversed, of the other side
/// (Kafka's `reverseJoiner`).
fn left<V, VO, VR, F>(joiner: F) -> (SideJoiner<V, VO, VR>, SideJoiner<VO, V, VR>)
where
    V: 'static,
    VO: 'static,
    VR: 'static,
    F: Fn(&V, Option<&VO>) -> VR + Send + Sync + 'static,
{
    let f = Arc::new(joiner);
    let g = Arc::clone(&f);
    (
        Arc::new(move |v: Option<&V>, o: Option<&VO>| Some(f(v?, o))),
        Arc::new(move |o: Option<&VO>, v: Option<&V>| Some(g(v?, o))),
    )
}

/// An outer joiner as a [`SideJoiner`] of this side and, reversed, of the other side.
fn outer<V, VO, VR, F>(joiner: F) -> (SideJoiner<V, VO, VR>, SideJoiner<VO, V, VR>)
where
    V: 'static,
    VO: 'static,
    VR: 'static,
    F: Fn(Option<&V>, Option<&VO>) -> VR + Send + Sync + 'static,
{
    let f = Arc::new(joiner);
    let g = Arc::clone(&f);
    (
        Arc::new(move |v: Option<&V>, o: Option<&VO>| Some(f(v, o))),
        Arc::new(move |o: Option<&VO>, v: Option<&V>| Some(g(v, o))),
    )
}

/// Table-table joins on the primary key (Kafka's `KTable#join`, `leftJoin`, `outerJoin`;
/// Rust has no overloads, hence the `_materialized` variants).
///
/// Both tables must be co-partitioned (checked when the application starts) and each
/// must be materialized or have a materialized ancestor to read it through (a filtered
/// or value-mapped table of one, or another unmaterialized join). Every update of either
/// side is joined with the other side's current value; the result's timestamp is the
/// larger of the two rows' timestamps. The result is a table: it can be joined, grouped,
/// filtered or turned into a stream like any other.
impl<K, V> KTable<K, V>
where
    K: Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Inner join with `other` (Kafka's `KTable#join(KTable, ValueJoiner)`): a key is in
    /// the result while it is in both tables, with `joiner(value, other_value)`. An update
    /// of either side whose key is in the other table emits the joined value (a delete, a
    /// tombstone); an update whose key is not in the other table emits nothing. The
    /// nodes are `KTABLE-JOINTHIS-<n>` and `KTABLE-JOINOTHER-<n>`, merged into
    /// `KTABLE-MERGE-<n>`, the result's node; the result is not materialized (see
    /// [`KTable::join_materialized`]).
    ///
    /// ```
    /// use streams_core::{Nullable, StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, Materialized, Produced, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// let names = builder.table("names", Consumed::with(StringSerde, StringSerde), Materialized::new());
    /// let cities = builder.table("cities", Consumed::with(StringSerde, StringSerde), Materialized::new());
    /// names.join(&cities, |n: &String, c: &String| format!("{n} in {c}"))
    ///     .to_stream()
    ///     .to("out", Produced::with(StringSerde, Nullable(StringSerde)));
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let n = driver.create_input_topic("names", StringSerde, Nullable(StringSerde))?;
    /// let c = driver.create_input_topic("cities", StringSerde, Nullable(StringSerde))?;
    /// n.pipe_input_with_timestamp("1".into(), Some("ann".into()), 10)?; // no city yet: nothing
    /// c.pipe_input_with_timestamp("1".into(), Some("Oslo".into()), 5)?;
    /// n.pipe_input_with_timestamp("1".into(), None, 20)?; // a delete: a tombstone
    /// let out = driver.create_output_topic("out", StringSerde, Nullable(StringSerde));
    /// let records: Vec<_> = out.read_records_to_vec()?.into_iter().map(|r| (r.value, r.timestamp)).collect();
    /// assert_eq!(records, vec![(Some("ann in Oslo".into()), 10), (None, 20)]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn join<VO, VR, F>(&self, other: &KTable<K, VO>, joiner: F) -> KTable<K, VR>
    where
        VO: Clone + Send + Sync + 'static,
        VR: Clone + Send + Sync + 'static,
        F: Fn(&V, &VO) -> VR + Send + Sync + 'static,
    {
        let (a, b) = inner(joiner);
        table_table_join(self, other, Mode::Inner, a, b, None)
    }

    /// [`KTable::join`] into a table materialized as `materialized` says (Kafka's
    /// `join(KTable, ValueJoiner, Materialized)`): a timestamped key-value store named
    /// `KTABLE-MERGE-STATE-STORE-<n>` unless named (its name drawn before the node names),
    /// cached and change-logged by default; with the cache on, updates go downstream as
    /// the cache flushes them.
    ///
    /// ```
    /// use streams_core::{StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, Materialized, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// let names = builder.table("names", Consumed::with(StringSerde, StringSerde), Materialized::new());
    /// let cities = builder.table("cities", Consumed::with(StringSerde, StringSerde), Materialized::new());
    /// let joined = names.join_materialized(&cities, |n: &String, c: &String| format!("{n} in {c}"),
    ///     Materialized::as_store("people").with_value_serde(StringSerde));
    /// assert_eq!(joined.store_name(), Some("people"));
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// driver.create_input_topic("names", StringSerde, StringSerde)?.pipe_input("1".into(), "ann".into())?;
    /// driver.create_input_topic("cities", StringSerde, StringSerde)?.pipe_input("1".into(), "Oslo".into())?;
    /// assert_eq!(driver.read_key_value_store::<String, String>("people")?,
    ///     vec![("1".into(), "ann in Oslo".into())]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn join_materialized<VO, VR, F>(
        &self,
        other: &KTable<K, VO>,
        joiner: F,
        materialized: Materialized<K, VR>,
    ) -> KTable<K, VR>
    where
        VO: Clone + Send + Sync + 'static,
        VR: Clone + Send + Sync + 'static,
        F: Fn(&V, &VO) -> VR + Send + Sync + 'static,
    {
        let (a, b) = inner(joiner);
        table_table_join(self, other, Mode::Inner, a, b, Some(materialized))
    }

    /// Left join with `other` (Kafka's `KTable#leftJoin(KTable, ValueJoiner)`): a key is
    /// in the result while it is in this table, with `joiner(value, other_value)`, the
    /// other value `None` while the key is not in `other`. As in Kafka, this table is asked
    /// for old values, so that deleting a row this table had emits a tombstone even when
    /// `other` has no row; an update of `other` whose key is not in this table emits
    /// nothing, and deleting a row of `other` emits `joiner(value, None)`.
    ///
    /// ```
    /// use streams_core::{Nullable, StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, Materialized, Produced, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// let names = builder.table("names", Consumed::with(StringSerde, StringSerde), Materialized::new());
    /// let cities = builder.table("cities", Consumed::with(StringSerde, StringSerde), Materialized::new());
    /// names.left_join(&cities, |n: &String, c: Option<&String>| format!("{n} in {}", c.map_or("?", |c| c.as_str())))
    ///     .to_stream()
    ///     .to("out", Produced::with(StringSerde, Nullable(StringSerde)));
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let n = driver.create_input_topic("names", StringSerde, Nullable(StringSerde))?;
    /// let c = driver.create_input_topic("cities", StringSerde, Nullable(StringSerde))?;
    /// n.pipe_input("1".into(), Some("ann".into()))?;
    /// c.pipe_input("1".into(), Some("Oslo".into()))?;
    /// c.pipe_input("1".into(), None)?;
    /// n.pipe_input("1".into(), None)?;
    /// let out = driver.create_output_topic("out", StringSerde, Nullable(StringSerde));
    /// assert_eq!(out.read_values_to_vec()?, vec![
    ///     Some("ann in ?".into()), Some("ann in Oslo".into()), Some("ann in ?".into()), None]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn left_join<VO, VR, F>(&self, other: &KTable<K, VO>, joiner: F) -> KTable<K, VR>
    where
        VO: Clone + Send + Sync + 'static,
        VR: Clone + Send + Sync + 'static,
        F: Fn(&V, Option<&VO>) -> VR + Send + Sync + 'static,
    {
        let (a, b) = left(joiner);
        table_table_join(self, other, Mode::Left, a, b, None)
    }

    /// [`KTable::left_join`] into a materialized table (Kafka's
    /// `leftJoin(KTable, ValueJoiner, Materialized)`), as [`KTable::join_materialized`].
    ///
    /// ```
    /// use streams_core::{StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, Materialized, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// let names = builder.table("names", Consumed::with(StringSerde, StringSerde), Materialized::new());
    /// let cities = builder.table("cities", Consumed::with(StringSerde, StringSerde), Materialized::new());
    /// names.left_join_materialized(&cities, |n: &String, c: Option<&String>| format!("{n}:{c:?}"),
    ///     Materialized::as_store("people").with_value_serde(StringSerde));
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// driver.create_input_topic("names", StringSerde, StringSerde)?.pipe_input("1".into(), "ann".into())?;
    /// assert_eq!(driver.read_key_value_store::<String, String>("people")?,
    ///     vec![("1".into(), "ann:None".into())]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn left_join_materialized<VO, VR, F>(
        &self,
        other: &KTable<K, VO>,
        joiner: F,
        materialized: Materialized<K, VR>,
    ) -> KTable<K, VR>
    where
        VO: Clone + Send + Sync + 'static,
        VR: Clone + Send + Sync + 'static,
        F: Fn(&V, Option<&VO>) -> VR + Send + Sync + 'static,
    {
        let (a, b) = left(joiner);
        table_table_join(self, other, Mode::Left, a, b, Some(materialized))
    }

    /// Outer join with `other` (Kafka's `KTable#outerJoin(KTable, ValueJoiner)`): a key
    /// is in the result while it is in either table, with `joiner(value, other_value)`,
    /// a side `None` while the key is not in it. Both tables are asked for old values, so
    /// that deleting the last row of a key emits a tombstone.
    ///
    /// ```
    /// use streams_core::{Nullable, StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, Materialized, Produced, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// let names = builder.table("names", Consumed::with(StringSerde, StringSerde), Materialized::new());
    /// let cities = builder.table("cities", Consumed::with(StringSerde, StringSerde), Materialized::new());
    /// names.outer_join(&cities, |n: Option<&String>, c: Option<&String>| format!("{n:?}/{c:?}"))
    ///     .to_stream()
    ///     .to("out", Produced::with(StringSerde, Nullable(StringSerde)));
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let n = driver.create_input_topic("names", StringSerde, Nullable(StringSerde))?;
    /// let c = driver.create_input_topic("cities", StringSerde, Nullable(StringSerde))?;
    /// c.pipe_input("1".into(), Some("Oslo".into()))?;
    /// n.pipe_input("1".into(), Some("ann".into()))?;
    /// c.pipe_input("1".into(), None)?;
    /// n.pipe_input("1".into(), None)?;
    /// let out = driver.create_output_topic("out", StringSerde, Nullable(StringSerde));
    /// assert_eq!(out.read_values_to_vec()?, vec![
    ///     Some(r#"None/Some("Oslo")"#.into()), Some(r#"Some("ann")/Some("Oslo")"#.into()),
    ///     Some(r#"Some("ann")/None"#.into()), None]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn outer_join<VO, VR, F>(&self, other: &KTable<K, VO>, joiner: F) -> KTable<K, VR>
    where
        VO: Clone + Send + Sync + 'static,
        VR: Clone + Send + Sync + 'static,
        F: Fn(Option<&V>, Option<&VO>) -> VR + Send + Sync + 'static,
    {
        let (a, b) = outer(joiner);
        table_table_join(self, other, Mode::Outer, a, b, None)
    }

    /// [`KTable::outer_join`] into a materialized table (Kafka's
    /// `outerJoin(KTable, ValueJoiner, Materialized)`), as [`KTable::join_materialized`].
    ///
    /// ```
    /// use streams_core::{StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, Materialized, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// let names = builder.table("names", Consumed::with(StringSerde, StringSerde), Materialized::new());
    /// let cities = builder.table("cities", Consumed::with(StringSerde, StringSerde), Materialized::new());
    /// let all = names.outer_join_materialized(&cities,
    ///     |n: Option<&String>, c: Option<&String>| format!("{n:?}/{c:?}"),
    ///     Materialized::new().with_value_serde(StringSerde));
    /// assert_eq!(all.store_name(), Some("KTABLE-MERGE-STATE-STORE-0000000006"));
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// driver.create_input_topic("cities", StringSerde, StringSerde)?.pipe_input("1".into(), "Oslo".into())?;
    /// assert_eq!(driver.read_key_value_store::<String, String>("KTABLE-MERGE-STATE-STORE-0000000006")?,
    ///     vec![("1".into(), r#"None/Some("Oslo")"#.into())]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn outer_join_materialized<VO, VR, F>(
        &self,
        other: &KTable<K, VO>,
        joiner: F,
        materialized: Materialized<K, VR>,
    ) -> KTable<K, VR>
    where
        VO: Clone + Send + Sync + 'static,
        VR: Clone + Send + Sync + 'static,
        F: Fn(Option<&V>, Option<&VO>) -> VR + Send + Sync + 'static,
    {
        let (a, b) = outer(joiner);
        table_table_join(self, other, Mode::Outer, a, b, Some(materialized))
    }
}
