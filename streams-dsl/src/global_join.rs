//! Stream-global-table joins (`KStream::join_global`, `left_join_global`), compiled as
//! Kafka's `KStreamImpl#globalTableJoin` with the processor of Kafka's
//! `KStreamGlobalKTableJoin` / `KStreamKTableJoinProcessor` reading the global store
//! through a key selector: no co-partitioning, no repartition.

use std::sync::Arc;

use streams_core::{Processor, ProcessorContext, Record, Result, SharedSerde};

use crate::global_table::GlobalKTable;
use crate::kstream::KStream;

/// A key selector: (stream key, stream value) → the global table's key.
type KeySelector<K, V, KG> = Arc<dyn Fn(&K, &V) -> KG + Send + Sync>;
/// Kafka's `ValueJoinerWithKey` of a global join, the table value `None` (left join only)
/// when the table has no row for the selected key.
type GlobalJoiner<K, V, VG, VR> = Arc<dyn Fn(&K, &V, Option<&VG>) -> Option<VR> + Send + Sync>;

/// Kafka's `KStreamKTableJoinProcessor` with a global table's value getter.
struct GlobalJoinProcessor<K, V, KG, VG, VR> {
    store: String,
    selector: KeySelector<K, V, KG>,
    joiner: GlobalJoiner<K, V, VG, VR>,
    left: bool,
    key_serde: Option<SharedSerde<K>>,
    value_serde: Option<SharedSerde<V>>,
    global_key_serde: Option<SharedSerde<KG>>,
}

impl<K, V, KG, VG, VR> Processor<K, V, K, VR> for GlobalJoinProcessor<K, V, KG, VG, VR>
where
    K: Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    KG: Clone + Send + Sync + 'static,
    VG: Clone + Send + Sync + 'static,
    VR: Clone + Send + Sync + 'static,
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, K, VR>) -> Result<()> {
        if self.key_serde.is_none() {
            self.key_serde = ctx.serdes().get::<K>();
        }
        if self.value_serde.is_none() {
            self.value_serde = ctx.serdes().get::<V>();
        }
        if self.global_key_serde.is_none() {
            self.global_key_serde = ctx.serdes().get::<KG>();
        }
        Ok(())
    }

    fn process(&mut self, ctx: &mut ProcessorContext<'_, K, VR>, r: Record<K, V>) -> Result<()> {
        let null_key = self.key_serde.as_ref().is_some_and(|s| s.is_null(&r.key));
        let null_value = self
            .value_serde
            .as_ref()
            .is_some_and(|s| s.is_null(&r.value));
        // maybeDropRecord: the key selector sees every record, a null value included.
        let mapped = (self.selector)(&r.key, &r.value);
        let null_mapped = self
            .global_key_serde
            .as_ref()
            .is_some_and(|s| s.is_null(&mapped));
        // A left join keeps a null-key record with a value (KIP-962), even when the
        // selected key is null; otherwise a null selected key or value drops the record.
        let kept = self.left && null_key && !null_value;
        if !kept && (null_mapped || null_value) {
            crate::table::skip_record(ctx, "Skipping record due to null join key or value.");
            return Ok(());
        }
        // doJoin / getValue2: a null selected key finds no row.
        let table_value = if null_mapped {
            None
        } else {
            ctx.global_store::<KG, VG>(&self.store)?.get(&mapped)?
        };
        if !self.left && table_value.is_none() {
            return Ok(());
        }
        match (self.joiner)(&r.key, &r.value, table_value.as_ref()) {
            Some(out) => ctx.forward(r.with_value(out)),
            None => Ok(()),
        }
    }
}

fn global_join<K, V, KG, VG, VR>(
    mut this: KStream<K, V>,
    table: &GlobalKTable<KG, VG>,
    selector: KeySelector<K, V, KG>,
    joiner: GlobalJoiner<K, V, VG, VR>,
    left: bool,
) -> KStream<K, VR>
where
    K: Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    KG: Clone + Send + Sync + 'static,
    VG: Clone + Send + Sync + 'static,
    VR: Clone + Send + Sync + 'static,
{
    // Kafka's globalTableJoin draws `KSTREAM-LEFTJOIN-` for the inner join too.
    let name = this.name_for("KSTREAM-LEFTJOIN-");
    let parent = this.node.clone();
    let store = table.store_name().to_owned();
    let (ks, vs, gks) = (
        this.key_serde.clone(),
        this.value_serde.clone(),
        table.key_serde.clone(),
    );
    this.state.borrow_mut().apply(|t| {
        t.add_processor(
            &name,
            move || GlobalJoinProcessor::<K, V, KG, VG, VR> {
                store: store.clone(),
                selector: Arc::clone(&selector),
                joiner: Arc::clone(&joiner),
                left,
                key_serde: ks.clone(),
                value_serde: vs.clone(),
                global_key_serde: gks.clone(),
            },
            &[&parent],
        )
        .map(|_| ())
    });
    let mut out = KStream::new(
        std::rc::Rc::clone(&this.state),
        name,
        this.key_serde.clone(),
        None,
    );
    out.repartition_required = this.repartition_required;
    out
}

/// Stream-global-table joins (Kafka's `KStream#join(GlobalKTable, KeyValueMapper,
/// ValueJoiner)` and `leftJoin(GlobalKTable, ...)`; Rust has no overloads, hence the
/// `_global` names).
impl<K, V> KStream<K, V>
where
    K: Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Inner join with a global table (Kafka's `KStream#join(GlobalKTable, KeyValueMapper,
    /// ValueJoinerWithKey)`): each stream record is joined with the global table's current
    /// value for `key_selector(key, value)`; a record whose selected key is not in the table
    /// is dropped. The result keeps the stream record's key, timestamp and headers; global
    /// table updates emit nothing. The global table holds every partition, so nothing is
    /// repartitioned or co-partitioned. A record with a null value, or whose selected key
    /// is null (their serdes' [`Serde::is_null`](streams_core::Serde::is_null)), is dropped
    /// and counted; a null stream key is fine when the selector maps it to a key.
    ///
    /// The processor is `KSTREAM-LEFTJOIN-<n>` (the prefix Kafka's `globalTableJoin` draws
    /// for both joins), or the name given with [`KStream::named`].
    ///
    /// ```
    /// use streams_core::{StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, Materialized, Produced, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// let products = builder.global_table("products", Consumed::with(StringSerde, StringSerde), Materialized::new());
    /// // orders: order id -> product id
    /// builder.stream("orders", Consumed::with(StringSerde, StringSerde))
    ///     .join_global(&products, |_order: &String, product: &String| product.clone(),
    ///         |order: &String, product: &String, name: &String| format!("{order}: {product} ({name})"))
    ///     .to("enriched", Produced::with(StringSerde, StringSerde));
    /// let topology = builder.build()?;
    /// assert!(topology.describe()?.to_string().contains("Processor: KSTREAM-LEFTJOIN-0000000004 (stores: [])"));
    /// let driver = TopologyTestDriver::new(topology, StreamsConfig::new("app"))?;
    /// let p = driver.create_input_topic("products", StringSerde, StringSerde)?;
    /// let o = driver.create_input_topic("orders", StringSerde, StringSerde)?;
    /// o.pipe_input("o1".into(), "p1".into())?; // p1 is not in the table yet: dropped
    /// p.pipe_input("p1".into(), "pen".into())?;
    /// o.pipe_input("o2".into(), "p1".into())?;
    /// let out = driver.create_output_topic("enriched", StringSerde, StringSerde);
    /// assert_eq!(out.read_key_values_to_vec()?, vec![("o2".into(), "o2: p1 (pen)".into())]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn join_global<KG, VG, VR, S, F>(
        self,
        table: &GlobalKTable<KG, VG>,
        key_selector: S,
        joiner: F,
    ) -> KStream<K, VR>
    where
        KG: Clone + Send + Sync + 'static,
        VG: Clone + Send + Sync + 'static,
        VR: Clone + Send + Sync + 'static,
        S: Fn(&K, &V) -> KG + Send + Sync + 'static,
        F: Fn(&K, &V, &VG) -> VR + Send + Sync + 'static,
    {
        global_join(
            self,
            table,
            Arc::new(key_selector),
            Arc::new(move |k: &K, v: &V, g: Option<&VG>| g.map(|g| joiner(k, v, g))),
            false,
        )
    }

    /// Left join with a global table (Kafka's `KStream#leftJoin(GlobalKTable,
    /// KeyValueMapper, ValueJoinerWithKey)`): as [`KStream::join_global`], but a record
    /// whose selected key is not in the table is emitted as `joiner(key, value, None)`.
    /// As in Kafka 3.7+ (KIP-962), a record with a null key and a value is joined (with
    /// the row of its selected key, or with `None` when the selector maps it to null)
    /// instead of dropped; a record with a key whose selected key is null is still
    /// dropped and counted, as is a record with a null value.
    ///
    /// ```
    /// use streams_core::{Nullable, StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, Materialized, Produced, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// let products = builder.global_table("products", Consumed::with(StringSerde, StringSerde), Materialized::new());
    /// builder.stream("orders", Consumed::with(Nullable(StringSerde), StringSerde))
    ///     .left_join_global(&products, |_order: &Option<String>, product: &String| product.clone(),
    ///         |_order: &Option<String>, product: &String, name: Option<&String>|
    ///             format!("{product} ({})", name.map_or("?", |n| n.as_str())))
    ///     .to("enriched", Produced::with(Nullable(StringSerde), StringSerde));
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let p = driver.create_input_topic("products", StringSerde, StringSerde)?;
    /// let o = driver.create_input_topic("orders", Nullable(StringSerde), StringSerde)?;
    /// p.pipe_input("p1".into(), "pen".into())?;
    /// o.pipe_input(Some("o1".into()), "p1".into())?;
    /// o.pipe_input(Some("o2".into()), "p2".into())?;
    /// o.pipe_input(None, "p1".into())?; // a null key is joined too (KIP-962)
    /// let out = driver.create_output_topic("enriched", Nullable(StringSerde), StringSerde);
    /// assert_eq!(out.read_values_to_vec()?, vec!["p1 (pen)", "p2 (?)", "p1 (pen)"]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn left_join_global<KG, VG, VR, S, F>(
        self,
        table: &GlobalKTable<KG, VG>,
        key_selector: S,
        joiner: F,
    ) -> KStream<K, VR>
    where
        KG: Clone + Send + Sync + 'static,
        VG: Clone + Send + Sync + 'static,
        VR: Clone + Send + Sync + 'static,
        S: Fn(&K, &V) -> KG + Send + Sync + 'static,
        F: Fn(&K, &V, Option<&VG>) -> VR + Send + Sync + 'static,
    {
        global_join(
            self,
            table,
            Arc::new(key_selector),
            Arc::new(move |k: &K, v: &V, g: Option<&VG>| Some(joiner(k, v, g))),
            true,
        )
    }
}
