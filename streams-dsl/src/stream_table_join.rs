//! Stream-table joins (`KStream::join_table`, `left_join_table`), compiled as Kafka's
//! `KStreamImpl#join(KTable)` / `doStreamTableJoin` with the processor of Kafka's
//! `KStreamKTableJoin` / `KStreamKTableJoinProcessor` (without the grace-period buffer,
//! which Kafka only allows for versioned tables).

use std::rc::Rc;
use std::sync::Arc;

use streams_core::{
    Processor, ProcessorContext, Record, Result, SharedSerde, StoreKind, StreamsError,
};

use crate::joined::Joined;
use crate::kstream::KStream;
use crate::ktable::KTable;
use crate::repartition::repartition_for_join;
use crate::value_getter::ValueGetter;

/// Kafka's `ValueJoinerWithKey` of a stream-table join: (key, stream value, table value),
/// the table value `None` (left join only) when the table has no row for the key.
enum TableJoiner<K, V, VT, VR> {
    Inner(InnerJoiner<K, V, VT, VR>),
    Left(LeftJoiner<K, V, VT, VR>),
}

/// An inner stream-table joiner: (key, stream value, table value).
type InnerJoiner<K, V, VT, VR> = Arc<dyn Fn(&K, &V, &VT) -> VR + Send + Sync>;
/// A left stream-table joiner: the table value may be missing.
type LeftJoiner<K, V, VT, VR> = Arc<dyn Fn(&K, &V, Option<&VT>) -> VR + Send + Sync>;

impl<K, V, VT, VR> TableJoiner<K, V, VT, VR> {
    fn is_left(&self) -> bool {
        matches!(self, TableJoiner::Left(_))
    }
}

/// Kafka's `KStreamKTableJoinProcessor` (no versioned-table buffer).
struct StreamTableJoinProcessor<K, V, VT, VR> {
    getter: ValueGetter<K, VT>,
    joiner: Arc<TableJoiner<K, V, VT, VR>>,
    key_serde: Option<SharedSerde<K>>,
    value_serde: Option<SharedSerde<V>>,
}

impl<K, V, VT, VR> Processor<K, V, K, VR> for StreamTableJoinProcessor<K, V, VT, VR>
where
    K: Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    VT: Clone + Send + Sync + 'static,
    VR: Clone + Send + Sync + 'static,
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, K, VR>) -> Result<()> {
        if self.key_serde.is_none() {
            self.key_serde = ctx.serdes().get::<K>();
        }
        if self.value_serde.is_none() {
            self.value_serde = ctx.serdes().get::<V>();
        }
        Ok(())
    }

    fn process(&mut self, ctx: &mut ProcessorContext<'_, K, VR>, r: Record<K, V>) -> Result<()> {
        let null_key = self.key_serde.as_ref().is_some_and(|s| s.is_null(&r.key));
        let null_value = self
            .value_serde
            .as_ref()
            .is_some_and(|s| s.is_null(&r.value));
        let left = self.joiner.is_left();
        // maybeDropRecord: a left join keeps a null-key record with a value (KIP-962).
        let kept_null_key = left && null_key && !null_value;
        if !kept_null_key && (null_key || null_value) {
            crate::table::skip_record(ctx, "Skipping record due to null join key or value.");
            return Ok(());
        }
        // doJoin: a null key finds no table row.
        let table_value = if null_key {
            None
        } else {
            (self.getter.get)(&mut ctx.store_access(), &r.key)?
        };
        let out = match (&*self.joiner, &table_value) {
            (TableJoiner::Inner(f), Some(t)) => f(&r.key, &r.value, t),
            (TableJoiner::Inner(_), None) => return Ok(()),
            (TableJoiner::Left(f), t) => f(&r.key, &r.value, t.as_ref()),
        };
        ctx.forward(r.with_value(out))
    }
}

fn stream_table_join<K, V, VT, VR>(
    this: KStream<K, V>,
    table: &KTable<K, VT>,
    joiner: TableJoiner<K, V, VT, VR>,
    joined: Joined<K, V, VT>,
) -> KStream<K, VR>
where
    K: Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    VT: Clone + Send + Sync + 'static,
    VR: Clone + Send + Sync + 'static,
{
    let state = Rc::clone(&this.state);
    let key_serde = joined.key_serde.clone().or_else(|| this.key_serde.clone());
    let value_serde = joined
        .value_serde
        .clone()
        .or_else(|| this.value_serde.clone());
    let mut parent = this.node.clone();
    if this.repartition_required {
        let prefix = joined.name.clone().unwrap_or_else(|| this.node.clone());
        parent = repartition_for_join(
            &state,
            &this.node,
            &prefix,
            key_serde.clone(),
            value_serde.clone(),
        );
    }
    let left = joiner.is_left();
    let name = match &joined.name {
        Some(n) => n.clone(),
        None => state.borrow_mut().next_name(if left {
            "KSTREAM-LEFTJOIN-"
        } else {
            "KSTREAM-JOIN-"
        }),
    };
    let getter = table.value_getter();
    let table_node = table.node.clone();
    let joiner = Arc::new(joiner);
    let (ks, vs) = (key_serde.clone(), value_serde);
    state.borrow_mut().apply(|t| {
        let Some(getter) = getter else {
            return Err(StreamsError::Config {
                key: "KStream::join_table".to_owned(),
                reason: format!(
                    "the table of node `{table_node}` is not materialized and has no \
                     materialized ancestor to read it through"
                ),
            });
        };
        let stores = getter.stores();
        for store in &stores {
            match t.stores().find(|s| s.name() == store).map(|s| s.kind()) {
                Some(StoreKind::TimestampedKeyValue | StoreKind::KeyValue) => {}
                other => {
                    return Err(StreamsError::Config {
                        key: "KStream::join_table".to_owned(),
                        reason: format!(
                            "the store `{store}` of the joined table is {}, not a key-value store",
                            other.map_or("missing", |k| k.type_name())
                        ),
                    });
                }
            }
        }
        t.add_processor(
            &name,
            move || StreamTableJoinProcessor::<K, V, VT, VR> {
                getter: getter.clone(),
                joiner: Arc::clone(&joiner),
                key_serde: ks.clone(),
                value_serde: vs.clone(),
            },
            &[&parent],
        )?;
        for store in &stores {
            t.connect_processor_and_store(&name, store)?;
        }
        Ok(())
    });
    KStream::new(state, name, key_serde, None)
}

/// Stream-table joins (Kafka's `KStream#join(KTable, ...)` and `leftJoin(KTable, ...)`;
/// Rust has no overloads, hence the `_table` names).
impl<K, V> KStream<K, V>
where
    K: Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Inner join with a table (Kafka's `KStream#join(KTable, ValueJoiner, Joined)`): each
    /// stream record is joined with the table's current value for its key, at processing
    /// time; a record whose key is not in the table is dropped. The result keeps the
    /// stream record's key, timestamp and headers. Table updates emit nothing. A record
    /// with a null key or value (its serde's
    /// [`Serde::is_null`](streams_core::Serde::is_null)) is dropped and counted.
    ///
    /// The table is read through its store (a source table, an aggregation,
    /// `map_values_materialized`), or, for a filtered or unmaterialized `map_values` table,
    /// through its parent's store with the predicate or mapper applied (Kafka's value
    /// getters); windowed tables cannot be joined. A stream whose
    /// key may have changed is repartitioned first (`<node>-repartition`, or
    /// `<name>-repartition` with [`Joined::with_name`]). The processor is
    /// `KSTREAM-JOIN-<n>`, connected to the table's store, so the stream and the table
    /// must be co-partitioned (checked when the application starts).
    ///
    /// ```
    /// use streams_core::{StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, Joined, Materialized, Produced, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// let users = builder.table("users", Consumed::with(StringSerde, StringSerde), Materialized::new());
    /// builder.stream("clicks", Consumed::with(StringSerde, StringSerde))
    ///     .join_table(&users, |click: &String, region: &String| format!("{click}@{region}"), Joined::new())
    ///     .to("enriched", Produced::with(StringSerde, StringSerde));
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let u = driver.create_input_topic("users", StringSerde, StringSerde)?;
    /// let c = driver.create_input_topic("clicks", StringSerde, StringSerde)?;
    /// c.pipe_input("ann".into(), "/a".into())?;   // ann is not in the table yet: dropped
    /// u.pipe_input("ann".into(), "eu".into())?;   // table updates emit nothing
    /// c.pipe_input("ann".into(), "/b".into())?;
    /// let out = driver.create_output_topic("enriched", StringSerde, StringSerde);
    /// assert_eq!(out.read_key_values_to_vec()?, vec![("ann".into(), "/b@eu".into())]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn join_table<VT, VR, F>(
        self,
        table: &KTable<K, VT>,
        joiner: F,
        joined: Joined<K, V, VT>,
    ) -> KStream<K, VR>
    where
        VT: Clone + Send + Sync + 'static,
        VR: Clone + Send + Sync + 'static,
        F: Fn(&V, &VT) -> VR + Send + Sync + 'static,
    {
        self.join_table_with_key(table, move |_k: &K, v: &V, t: &VT| joiner(v, t), joined)
    }

    /// [`KStream::join_table`] with a joiner that also receives the key.
    ///
    /// ```
    /// use streams_core::{StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, Joined, Materialized, Produced, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// let users = builder.table("users", Consumed::with(StringSerde, StringSerde), Materialized::new());
    /// builder.stream("clicks", Consumed::with(StringSerde, StringSerde))
    ///     .join_table_with_key(&users, |k: &String, c: &String, r: &String| format!("{k}{c}@{r}"),
    ///         Joined::as_name("enrich"))
    ///     .to("enriched", Produced::with(StringSerde, StringSerde));
    /// let topology = builder.build()?;
    /// assert!(topology.describe()?.to_string().contains("Processor: enrich (stores: [users-STATE-STORE-0000000000])"));
    /// let driver = TopologyTestDriver::new(topology, StreamsConfig::new("app"))?;
    /// driver.create_input_topic("users", StringSerde, StringSerde)?.pipe_input("ann".into(), "eu".into())?;
    /// driver.create_input_topic("clicks", StringSerde, StringSerde)?.pipe_input("ann".into(), "/a".into())?;
    /// assert_eq!(driver.create_output_topic("enriched", StringSerde, StringSerde).read_value()?, "ann/a@eu");
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn join_table_with_key<VT, VR, F>(
        self,
        table: &KTable<K, VT>,
        joiner: F,
        joined: Joined<K, V, VT>,
    ) -> KStream<K, VR>
    where
        VT: Clone + Send + Sync + 'static,
        VR: Clone + Send + Sync + 'static,
        F: Fn(&K, &V, &VT) -> VR + Send + Sync + 'static,
    {
        stream_table_join(self, table, TableJoiner::Inner(Arc::new(joiner)), joined)
    }

    /// Left join with a table (Kafka's `KStream#leftJoin(KTable, ValueJoiner, Joined)`):
    /// as [`KStream::join_table`], but a record whose key is not in the table is emitted
    /// as `joiner(value, None)`; a record with a null key and a value is emitted that way
    /// too (KIP-962, Kafka 3.7+) instead of being dropped. The processor is
    /// `KSTREAM-LEFTJOIN-<n>`.
    ///
    /// ```
    /// use streams_core::{Nullable, StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, Joined, Materialized, Produced, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// let users = builder.table("users", Consumed::with(Nullable(StringSerde), StringSerde), Materialized::new());
    /// builder.stream("clicks", Consumed::with(Nullable(StringSerde), StringSerde))
    ///     .left_join_table(&users, |c: &String, r: Option<&String>| format!("{c}@{}", r.map_or("?", |r| r.as_str())), Joined::new())
    ///     .to("enriched", Produced::with(Nullable(StringSerde), StringSerde));
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let u = driver.create_input_topic("users", Nullable(StringSerde), StringSerde)?;
    /// let c = driver.create_input_topic("clicks", Nullable(StringSerde), StringSerde)?;
    /// c.pipe_input(Some("ann".into()), "/a".into())?;
    /// u.pipe_input(Some("ann".into()), "eu".into())?;
    /// c.pipe_input(Some("ann".into()), "/b".into())?;
    /// c.pipe_input(None, "/c".into())?; // null key: joined with nothing (KIP-962)
    /// let out = driver.create_output_topic("enriched", Nullable(StringSerde), StringSerde);
    /// assert_eq!(out.read_key_values_to_vec()?, vec![
    ///     (Some("ann".into()), "/a@?".into()), (Some("ann".into()), "/b@eu".into()), (None, "/c@?".into())]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn left_join_table<VT, VR, F>(
        self,
        table: &KTable<K, VT>,
        joiner: F,
        joined: Joined<K, V, VT>,
    ) -> KStream<K, VR>
    where
        VT: Clone + Send + Sync + 'static,
        VR: Clone + Send + Sync + 'static,
        F: Fn(&V, Option<&VT>) -> VR + Send + Sync + 'static,
    {
        self.left_join_table_with_key(
            table,
            move |_k: &K, v: &V, t: Option<&VT>| joiner(v, t),
            joined,
        )
    }

    /// [`KStream::left_join_table`] with a joiner that also receives the key.
    ///
    /// ```
    /// use streams_core::{StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, Joined, Materialized, Produced, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// let users = builder.table("users", Consumed::with(StringSerde, StringSerde), Materialized::new());
    /// builder.stream("clicks", Consumed::with(StringSerde, StringSerde))
    ///     .left_join_table_with_key(&users, |k: &String, c: &String, r: Option<&String>| format!("{k}{c}:{r:?}"), Joined::new())
    ///     .to("enriched", Produced::with(StringSerde, StringSerde));
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// driver.create_input_topic("clicks", StringSerde, StringSerde)?.pipe_input("bob".into(), "/x".into())?;
    /// assert_eq!(driver.create_output_topic("enriched", StringSerde, StringSerde).read_value()?, "bob/x:None");
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn left_join_table_with_key<VT, VR, F>(
        self,
        table: &KTable<K, VT>,
        joiner: F,
        joined: Joined<K, V, VT>,
    ) -> KStream<K, VR>
    where
        VT: Clone + Send + Sync + 'static,
        VR: Clone + Send + Sync + 'static,
        F: Fn(&K, &V, Option<&VT>) -> VR + Send + Sync + 'static,
    {
        stream_table_join(self, table, TableJoiner::Left(Arc::new(joiner)), joined)
    }
}
