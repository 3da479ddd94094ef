//! KTable–KTable foreign-key joins (KIP-213): `KTable::join_on_foreign_key` and
//! `left_join_on_foreign_key` (Kafka's `KTable#join(KTable, Function, ValueJoiner, ...)` /
//! `leftJoin(...)`), compiled as Kafka's `KTableImpl#doJoinOnForeignKey`.
//!
//! The left table sends a subscription per row to the right table's partition of its
//! foreign key (`<app>-KTABLE-FK-JOIN-SUBSCRIPTION-REGISTRATION-<n>-topic`), where it is
//! kept in the subscription store under `{fk length}{fk}{pk}` and answered with the right
//! row; right-table updates answer every subscriber (a prefix scan). Answers come back
//! through `<app>-KTABLE-FK-JOIN-SUBSCRIPTION-RESPONSE-<n>-topic` to the left row's
//! partition, carrying the Murmur3-128 hash of the left value they were asked for: an
//! answer whose hash is not that of the row's current value is stale and dropped.

mod murmur3;
mod processors;
mod wrappers;

use std::rc::Rc;
use std::sync::{Arc, OnceLock};

use streams_core::{
    Nullable, SharedSerde, Sink, Source, StoreBuilder, StoreKind, StreamPartitioner, StreamsError,
};

use crate::builder::BuilderState;
use crate::ktable::{KTable, OldValues};
use crate::options::Materialized;
use crate::table::{TableSourceProcessor, table_store};
use processors::{
    Extractor, FkJoiner, ForeignJoinProcessor, PseudoTopics, ReceiveProcessor,
    ResponseJoinProcessor, SendProcessor, SubscriptionJoinProcessor, store_key_serde,
};
use wrappers::{
    ResponseWrapperSerde, SerdeSlot, SubscriptionResponseWrapper, SubscriptionWrapper,
    SubscriptionWrapperSerde,
};

/// A partitioner of a foreign-key join's internal topics: `(topic, key, partition count)`
/// → partition (`None`: the default, murmur2 of the serialized key).
type KeyPartitioner<K> = Arc<dyn Fn(&str, &K, i32) -> Option<i32> + Send + Sync>;

/// Options of a foreign-key join (Kafka's `TableJoined`): a name for its nodes, topics
/// and subscription store, and the partitioners of the two tables when they are not
/// partitioned by the default partitioner.
///
/// ```
/// use streams_core::StringSerde;
/// use streams_dsl::{Consumed, Materialized, StreamsBuilder, TableJoined};
/// let builder = StreamsBuilder::new();
/// let orders = builder.table("orders", Consumed::with(StringSerde, StringSerde), Materialized::new());
/// let items = builder.table("items", Consumed::with(StringSerde, StringSerde), Materialized::new());
/// // Items written by a producer that puts every key in partition 0.
/// let joined = TableJoined::as_name("order-items").with_other_partitioner(|_topic, _item: &String, _n| Some(0));
/// orders.join_on_foreign_key_with(&items, |item: &String| Some(item.clone()),
///     |order: &String, item: &String| format!("{order}:{item}"), joined, Materialized::new());
/// let text = builder.build()?.describe()?.to_string();
/// assert!(text.contains("Sink: order-items-subscription-registration-sink (topic: order-items-subscription-registration-topic)"));
/// # Ok::<(), streams_core::StreamsError>(())
/// ```
pub struct TableJoined<K, KO> {
    pub(crate) name: Option<String>,
    pub(crate) partitioner: Option<KeyPartitioner<K>>,
    pub(crate) other_partitioner: Option<KeyPartitioner<KO>>,
}

impl<K, KO> Default for TableJoined<K, KO> {
    fn default() -> Self {
        TableJoined {
            name: None,
            partitioner: None,
            other_partitioner: None,
        }
    }
}

impl<K, KO> std::fmt::Debug for TableJoined<K, KO> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableJoined")
            .field("name", &self.name)
            .field("partitioner", &self.partitioner.is_some())
            .field("other_partitioner", &self.other_partitioner.is_some())
            .finish()
    }
}

impl<K, KO> TableJoined<K, KO> {
    /// No name, default partitioners (Kafka's `TableJoined.with(null, null)`).
    pub fn new() -> Self {
        Self::default()
    }

    /// Names the join (Kafka's `TableJoined.as(name)`): its nodes become
    /// `<name>-subscription-registration-processor`, `-subscription-registration-sink`, ...,
    /// `<name>-result`, its topics `<app>-<name>-subscription-registration-topic` and
    /// `<app>-<name>-subscription-response-topic`, its store `<name>-subscription-store`.
    pub fn as_name(name: impl Into<String>) -> Self {
        TableJoined {
            name: Some(name.into()),
            ..Self::default()
        }
    }

    /// How the left table is partitioned (Kafka's `TableJoined.with(partitioner, ..)`):
    /// responses go to the partition it gives for the left key, instead of the partition
    /// the left row was read from.
    pub fn with_partitioner(
        mut self,
        partitioner: impl Fn(&str, &K, i32) -> Option<i32> + Send + Sync + 'static,
    ) -> Self {
        self.partitioner = Some(Arc::new(partitioner));
        self
    }

    /// How the right table is partitioned (Kafka's `TableJoined.with(.., otherPartitioner)`):
    /// subscriptions go to the partition it gives for the foreign key.
    pub fn with_other_partitioner(
        mut self,
        partitioner: impl Fn(&str, &KO, i32) -> Option<i32> + Send + Sync + 'static,
    ) -> Self {
        self.other_partitioner = Some(Arc::new(partitioner));
        self
    }
}

/// Kafka's `NamedInternal#suffixWithOrElseGet`: `<name><suffix>` for a named join (the
/// generated name is still drawn, for compatibility), else the generated name.
fn name_or_draw(s: &mut BuilderState, name: Option<&str>, suffix: &str, prefix: &str) -> String {
    let generated = s.next_name(prefix);
    match name {
        Some(n) => format!("{n}{suffix}"),
        None => generated,
    }
}

const FK_JOIN_STATE_STORE_NAME: &str = "KTABLE-FK-JOIN-SUBSCRIPTION-STATE-STORE-";
const SUBSCRIPTION_REGISTRATION: &str = "KTABLE-FK-JOIN-SUBSCRIPTION-REGISTRATION-";
const SUBSCRIPTION_RESPONSE: &str = "KTABLE-FK-JOIN-SUBSCRIPTION-RESPONSE-";
const SUBSCRIPTION_PROCESSOR: &str = "KTABLE-FK-JOIN-SUBSCRIPTION-PROCESSOR-";
const SUBSCRIPTION_RESPONSE_RESOLVER_PROCESSOR: &str =
    "KTABLE-FK-JOIN-SUBSCRIPTION-RESPONSE-RESOLVER-PROCESSOR-";
const FK_JOIN_OUTPUT_NAME: &str = "KTABLE-FK-JOIN-OUTPUT-";
const SINK_NAME: &str = "KTABLE-SINK-";
const SOURCE_NAME: &str = "KTABLE-SOURCE-";
const TOPIC_SUFFIX: &str = "-topic";

/// Kafka's `KTableImpl#doJoinOnForeignKey`.
fn do_join_on_foreign_key<K, V, KO, VO, VR>(
    this: &KTable<K, V>,
    other: &KTable<KO, VO>,
    extractor: Extractor<V, KO>,
    joiner: FkJoiner<V, VO, VR>,
    table_joined: TableJoined<K, KO>,
    materialized: Materialized<K, VR>,
) -> KTable<K, VR>
where
    K: Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    KO: Clone + Send + Sync + 'static,
    VO: Clone + Send + Sync + 'static,
    VR: Clone + Send + Sync + 'static,
{
    // Old values: the right table's (Kafka asks for them, to skip unchanged values) and the
    // left table's (to unsubscribe from an old foreign key).
    other.old_values.enable();
    this.old_values.enable();
    let left = joiner.is_left();
    let state = Rc::clone(&this.state);
    let mut s = state.borrow_mut();
    let name = table_joined.name.as_deref();

    let subscription_topic = format!(
        "{}{TOPIC_SUFFIX}",
        name_or_draw(
            &mut s,
            name,
            "-subscription-registration",
            SUBSCRIPTION_REGISTRATION
        )
    );
    let fk_serde = SerdeSlot::new(other.key_serde.clone());
    let pk_serde = SerdeSlot::new(this.key_serde.clone());
    let fv_serde = SerdeSlot::new(other.value_serde.clone());
    let pk_topic: Arc<OnceLock<String>> = Arc::default();
    let wrapper_serde: SharedSerde<SubscriptionWrapper<K>> = Arc::new(SubscriptionWrapperSerde {
        primary_key: pk_serde.clone(),
        pk_topic: Arc::clone(&pk_topic),
    });
    let response_serde: SharedSerde<SubscriptionResponseWrapper<VO>> =
        Arc::new(ResponseWrapperSerde {
            foreign_value: fv_serde.clone(),
        });
    let nullable_fk: SharedSerde<Option<KO>> = Arc::new(Nullable(fk_serde.clone()));

    // Subscription send processor, then the sink and source of the registration topic.
    let send_name = name_or_draw(
        &mut s,
        name,
        "-subscription-registration-processor",
        SUBSCRIPTION_REGISTRATION,
    );
    let send = {
        let (extractor, fk, pk) = (Arc::clone(&extractor), fk_serde.clone(), pk_serde.clone());
        let (vs, topic, pkt) = (
            this.value_serde.clone(),
            subscription_topic.clone(),
            Arc::clone(&pk_topic),
        );
        move || SendProcessor::<K, V, KO> {
            extractor: Arc::clone(&extractor),
            left,
            fk_serde: fk.clone(),
            pk_serde: pk.clone(),
            value_serde: vs.clone(),
            subscription_topic: topic.clone(),
            pk_topic: Arc::clone(&pkt),
            topics: PseudoTopics::default(),
        }
    };
    let sub_sink_name = name_or_draw(&mut s, name, "-subscription-registration-sink", SINK_NAME);
    let mut sub_sink = Sink::<Option<KO>, SubscriptionWrapper<K>>::new(
        sub_sink_name.clone(),
        subscription_topic.clone(),
    )
    .serdes(
        Some(Arc::clone(&nullable_fk)),
        Some(Arc::clone(&wrapper_serde)),
    );
    if let Some(p) = table_joined.other_partitioner.clone() {
        let partitioner: StreamPartitioner<Option<KO>, SubscriptionWrapper<K>> =
            Arc::new(move |topic, key: &Option<KO>, _v, n| {
                key.as_ref().and_then(|k| p(topic, k, n))
            });
        sub_sink = sub_sink.partitioner(partitioner);
    }
    let sub_source_name = name_or_draw(
        &mut s,
        name,
        "-subscription-registration-source",
        SOURCE_NAME,
    );
    let sub_source = Source::<Option<KO>, SubscriptionWrapper<K>>::new(
        sub_source_name.clone(),
        [subscription_topic.clone()],
    )
    .serdes(
        Some(Arc::clone(&nullable_fk)),
        Some(Arc::clone(&wrapper_serde)),
    );

    // The subscription store: combined key bytes -> timestamped subscription, logged,
    // never cached (Kafka's SubscriptionStoreFactory).
    let store_name = name_or_draw(
        &mut s,
        name,
        "-subscription-store",
        FK_JOIN_STATE_STORE_NAME,
    );
    let sub_store = StoreBuilder::timestamped_key_value(store_name.clone())
        .with_caching(false)
        .with_serdes(Some(store_key_serde()), Some(Arc::clone(&wrapper_serde)));

    let receive_name = name_or_draw(
        &mut s,
        name,
        "-subscription-receive",
        SUBSCRIPTION_PROCESSOR,
    );
    let receive = {
        let (store, fk, pk) = (store_name.clone(), fk_serde.clone(), pk_serde.clone());
        let (topic, pkt) = (subscription_topic.clone(), Arc::clone(&pk_topic));
        move || ReceiveProcessor::<K, KO> {
            store: store.clone(),
            fk_serde: fk.clone(),
            pk_serde: pk.clone(),
            subscription_topic: topic.clone(),
            pk_topic: Arc::clone(&pkt),
            topics: PseudoTopics::default(),
        }
    };
    let join_foreign_name = name_or_draw(
        &mut s,
        name,
        "-subscription-join-foreign",
        SUBSCRIPTION_PROCESSOR,
    );
    let right_getter = other.value_getter();
    let foreign_join_name = name_or_draw(
        &mut s,
        name,
        "-foreign-join-subscription",
        SUBSCRIPTION_PROCESSOR,
    );
    let foreign_join = {
        let (store, fk, pk, topic) = (
            store_name.clone(),
            fk_serde.clone(),
            pk_serde.clone(),
            subscription_topic.clone(),
        );
        move || ForeignJoinProcessor::<K, KO, VO> {
            store: store.clone(),
            fk_serde: fk.clone(),
            pk_serde: pk.clone(),
            subscription_topic: topic.clone(),
            topics: PseudoTopics::default(),
            _vo: std::marker::PhantomData,
        }
    };

    // The response topic, its sink (to the left row's partition) and source.
    let response_topic = format!(
        "{}{TOPIC_SUFFIX}",
        name_or_draw(
            &mut s,
            name,
            "-subscription-response",
            SUBSCRIPTION_RESPONSE
        )
    );
    let response_sink_name = name_or_draw(&mut s, name, "-subscription-response-sink", SINK_NAME);
    let response_partitioner: StreamPartitioner<K, SubscriptionResponseWrapper<VO>> =
        match table_joined.partitioner.clone() {
            Some(p) => Arc::new(move |topic, key: &K, _v, n| p(topic, key, n)),
            None => Arc::new(
                |_topic, _key: &K, v: &SubscriptionResponseWrapper<VO>, _n| v.primary_partition,
            ),
        };
    let response_sink = Sink::<K, SubscriptionResponseWrapper<VO>>::new(
        response_sink_name.clone(),
        response_topic.clone(),
    )
    .serdes(
        Some(Arc::new(pk_serde.clone())),
        Some(Arc::clone(&response_serde)),
    )
    .partitioner(response_partitioner);
    let response_source_name =
        name_or_draw(&mut s, name, "-subscription-response-source", SOURCE_NAME);
    let response_source = Source::<K, SubscriptionResponseWrapper<VO>>::new(
        response_source_name.clone(),
        [response_topic.clone()],
    )
    .serdes(
        Some(Arc::new(pk_serde.clone())),
        Some(Arc::clone(&response_serde)),
    );

    let resolver_name = name_or_draw(
        &mut s,
        name,
        "-subscription-response-resolver",
        SUBSCRIPTION_RESPONSE_RESOLVER_PROCESSOR,
    );
    let left_getter = this.value_getter();
    let result_name = name_or_draw(&mut s, name, "-result", FK_JOIN_OUTPUT_NAME);
    // Kafka's MaterializedInternal draws a store name for an unnamed Materialized.
    let (result_store, named_store) = match &materialized.name {
        Some(n) => (n.clone(), true),
        None => (
            s.next_name(&format!("{FK_JOIN_OUTPUT_NAME}STATE-STORE-")),
            false,
        ),
    };
    let result_key_serde = materialized
        .key_serde
        .clone()
        .or_else(|| this.key_serde.clone());
    let mut result_materialized = materialized;
    if !named_store {
        // Kafka does not materialize an unnamed result; ours is materialized, but not
        // cached, so that every result is forwarded at once as Kafka's are.
        result_materialized.caching = false;
    }
    let store = table_store(
        &result_store,
        &result_materialized,
        result_key_serde.clone(),
        None,
    );
    let result_old: Arc<OldValues> = Arc::default();
    let switch = Arc::clone(&result_old);
    let result = {
        let (store, ks) = (result_store.clone(), result_key_serde.clone());
        move || TableSourceProcessor::<K, VR> {
            store: store.clone(),
            cached: false,
            send_old: switch.enabled(),
            key_serde: ks.clone(),
            _v: std::marker::PhantomData,
        }
    };
    let joiner = Arc::new(joiner);
    let resolver_parts = (this.value_serde.clone(), subscription_topic.clone());
    let this_node = this.node.clone();
    let other_node = other.node.clone();
    s.apply(|t| {
        let missing = |node: &str, side: &str| StreamsError::Config {
            key: "KTable::join_on_foreign_key".to_owned(),
            reason: format!(
                "the {side} table of node `{node}` is not materialized and has no \
                 materialized ancestor to read it through"
            ),
        };
        let left_getter = left_getter.ok_or_else(|| missing(&this_node, "left"))?;
        let right_getter = right_getter.ok_or_else(|| missing(&other_node, "right"))?;
        for store in [&left_getter.store, &right_getter.store] {
            match t
                .stores()
                .find(|s| s.name() == store.as_str())
                .map(StoreBuilder::kind)
            {
                Some(StoreKind::TimestampedKeyValue | StoreKind::KeyValue) => {}
                other => {
                    return Err(StreamsError::Config {
                        key: "KTable::join_on_foreign_key".to_owned(),
                        reason: format!(
                            "the store `{store}` of a joined table is {}, not a key-value store",
                            other.map_or("missing", |k| k.type_name())
                        ),
                    });
                }
            }
        }
        t.add_repartition_topic(&subscription_topic, None)?;
        t.add_processor(&send_name, send, &[&this_node])?;
        t.add_sink(sub_sink, &[&send_name])?;
        t.add_source(sub_source)?;
        t.add_state_store(sub_store, &[])?;
        t.add_processor(&receive_name, receive, &[&sub_source_name])?;
        t.connect_processor_and_store(&receive_name, &store_name)?;
        let rg = right_getter.clone();
        t.add_processor(
            &join_foreign_name,
            move || SubscriptionJoinProcessor::<K, KO, VO> {
                getter: rg.clone(),
                _k: std::marker::PhantomData,
            },
            &[&receive_name],
        )?;
        t.connect_processor_and_store(&join_foreign_name, &right_getter.store)?;
        t.add_processor(&foreign_join_name, foreign_join, &[&other_node])?;
        t.connect_processor_and_store(&foreign_join_name, &store_name)?;
        t.add_repartition_topic(&response_topic, None)?;
        t.add_sink(response_sink, &[&join_foreign_name, &foreign_join_name])?;
        t.add_source(response_source)?;
        let (lg, j) = (left_getter.clone(), Arc::clone(&joiner));
        let (vs, topic) = resolver_parts;
        t.add_processor(
            &resolver_name,
            move || ResponseJoinProcessor::<K, V, VO, VR> {
                getter: lg.clone(),
                value_serde: vs.clone(),
                joiner: Arc::clone(&j),
                subscription_topic: topic.clone(),
                topics: PseudoTopics::default(),
            },
            &[&response_source_name],
        )?;
        t.connect_processor_and_store(&resolver_name, &left_getter.store)?;
        t.add_processor(&result_name, result, &[&resolver_name])?;
        t.add_state_store(store, &[&result_name])?;
        Ok(())
    });
    drop(s);
    KTable::with_parts(
        state,
        result_name,
        Some(result_store),
        result_key_serde,
        result_materialized.value_serde,
        result_old,
    )
}

/// Foreign-key joins (Kafka's `KTable#join` / `leftJoin` with a foreign-key extractor;
/// Rust has no overloads, hence the `_on_foreign_key` names).
impl<K, V> KTable<K, V>
where
    K: Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Inner join with `other` on a foreign key (Kafka's `KTable#join(other,
    /// foreignKeyExtractor, joiner)`, KIP-213): each row of this table is joined with
    /// the row of `other` whose key is `foreign_key_extractor(value)`; the result is a
    /// table keyed by this table's keys. A row whose foreign key is `None` (null) or
    /// whose foreign row is missing has no result; when a row stops matching (it or its
    /// foreign row is deleted, or its foreign key changes to a missing row) its result is
    /// deleted. Updates of either table update the result, with the larger of the two
    /// rows' timestamps (an update of `other` carries its own).
    ///
    /// The two tables need not be co-partitioned: subscriptions travel through
    /// `<app>-KTABLE-FK-JOIN-SUBSCRIPTION-REGISTRATION-<n>-topic` (partitioned as
    /// `other`) and answers through `<app>-KTABLE-FK-JOIN-SUBSCRIPTION-RESPONSE-<n>-topic`
    /// (partitioned as this table), in Kafka's byte layouts; an answer computed for an
    /// older value of the row is recognized by the Murmur3 hash of the value it was asked
    /// for and dropped, so no stale result is emitted. Node and store names as Kafka's;
    /// the result is materialized in `KTABLE-FK-JOIN-OUTPUT-STATE-STORE-<n>` (not cached).
    /// Both tables must be materialized or read through a materialized ancestor (as for
    /// [`KStream::join_table`](crate::KStream::join_table)).
    ///
    /// ```
    /// use streams_core::{Nullable, StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, Materialized, Produced, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// // order id -> "customer:item"; customer id -> name
    /// let orders = builder.table("orders", Consumed::with(StringSerde, StringSerde), Materialized::new());
    /// let customers = builder.table("customers", Consumed::with(StringSerde, StringSerde), Materialized::new());
    /// orders
    ///     .join_on_foreign_key(
    ///         &customers,
    ///         |order: &String| order.split(':').next().map(str::to_owned),
    ///         |order: &String, name: &String| format!("{order} for {name}"),
    ///     )
    ///     .to_stream()
    ///     .to("enriched", Produced::with(StringSerde, Nullable(StringSerde)));
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let orders_in = driver.create_input_topic("orders", StringSerde, Nullable(StringSerde))?;
    /// let customers_in = driver.create_input_topic("customers", StringSerde, Nullable(StringSerde))?;
    /// orders_in.pipe_input("o1".into(), Some("c1:book".into()))?; // no customer yet: nothing
    /// customers_in.pipe_input("c1".into(), Some("Ann".into()))?;
    /// customers_in.pipe_input("c1".into(), None)?; // the customer leaves: the result is deleted
    /// let out = driver.create_output_topic("enriched", StringSerde, Nullable(StringSerde));
    /// assert_eq!(out.read_key_values_to_vec()?, vec![
    ///     ("o1".into(), Some("c1:book for Ann".into())),
    ///     ("o1".into(), None),
    /// ]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn join_on_foreign_key<KO, VO, VR, F, J>(
        &self,
        other: &KTable<KO, VO>,
        foreign_key_extractor: F,
        joiner: J,
    ) -> KTable<K, VR>
    where
        KO: Clone + Send + Sync + 'static,
        VO: Clone + Send + Sync + 'static,
        VR: Clone + Send + Sync + 'static,
        F: Fn(&V) -> Option<KO> + Send + Sync + 'static,
        J: Fn(&V, &VO) -> VR + Send + Sync + 'static,
    {
        self.join_on_foreign_key_with(
            other,
            foreign_key_extractor,
            joiner,
            TableJoined::new(),
            Materialized::new(),
        )
    }

    /// [`KTable::join_on_foreign_key`] with [`TableJoined`] (names, partitioners) and
    /// [`Materialized`] for the result (Kafka's `join(other, foreignKeyExtractor, joiner,
    /// tableJoined, materialized)`; pass `TableJoined::new()` / `Materialized::new()` for
    /// the overloads without them). A named `Materialized` store is cached and queryable
    /// as usual.
    ///
    /// ```
    /// use streams_core::{StreamsConfig, StringSerde, I64Serde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, Materialized, StreamsBuilder, TableJoined};
    /// let builder = StreamsBuilder::new();
    /// let orders = builder.table("orders", Consumed::with(StringSerde, StringSerde), Materialized::new());
    /// let prices = builder.table("prices", Consumed::with(StringSerde, I64Serde), Materialized::new());
    /// orders.join_on_foreign_key_with(
    ///     &prices,
    ///     |item: &String| Some(item.clone()),
    ///     |_item: &String, price: &i64| *price,
    ///     TableJoined::as_name("order-prices"),
    ///     Materialized::as_store("order-price").with_value_serde(I64Serde),
    /// );
    /// let topology = builder.build()?;
    /// let text = topology.describe()?.to_string();
    /// assert!(text.contains("Processor: order-prices-subscription-registration-processor"));
    /// assert!(text.contains("Processor: order-prices-result (stores: [order-price])"));
    /// let driver = TopologyTestDriver::new(topology, StreamsConfig::new("app"))?;
    /// driver.create_input_topic("prices", StringSerde, I64Serde)?.pipe_input("pen".into(), 3)?;
    /// driver.create_input_topic("orders", StringSerde, StringSerde)?.pipe_input("o1".into(), "pen".into())?;
    /// assert_eq!(driver.read_key_value_store::<String, i64>("order-price")?, vec![("o1".into(), 3)]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn join_on_foreign_key_with<KO, VO, VR, F, J>(
        &self,
        other: &KTable<KO, VO>,
        foreign_key_extractor: F,
        joiner: J,
        table_joined: TableJoined<K, KO>,
        materialized: Materialized<K, VR>,
    ) -> KTable<K, VR>
    where
        KO: Clone + Send + Sync + 'static,
        VO: Clone + Send + Sync + 'static,
        VR: Clone + Send + Sync + 'static,
        F: Fn(&V) -> Option<KO> + Send + Sync + 'static,
        J: Fn(&V, &VO) -> VR + Send + Sync + 'static,
    {
        do_join_on_foreign_key(
            self,
            other,
            Arc::new(foreign_key_extractor),
            FkJoiner::Inner(Arc::new(joiner)),
            table_joined,
            materialized,
        )
    }

    /// Left join with `other` on a foreign key (Kafka's `KTable#leftJoin(other,
    /// foreignKeyExtractor, joiner)`): as [`KTable::join_on_foreign_key`], but every row
    /// of this table has a result: `joiner(value, None)` while its foreign row is missing
    /// or its foreign key is `None` (a null foreign key is joined with no row, KIP-962,
    /// Kafka 3.7+); only a deleted row has its result deleted.
    ///
    /// ```
    /// use streams_core::{Nullable, StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, Materialized, Produced, StreamsBuilder};
    /// let builder = StreamsBuilder::new();
    /// let employees = builder.table("employees", Consumed::with(StringSerde, StringSerde), Materialized::new());
    /// let teams = builder.table("teams", Consumed::with(StringSerde, StringSerde), Materialized::new());
    /// employees
    ///     .left_join_on_foreign_key(
    ///         &teams,
    ///         // "name@team", or no team at all
    ///         |e: &String| e.split_once('@').map(|(_, team)| team.to_owned()),
    ///         |e: &String, team: Option<&String>| format!("{e} in {}", team.map_or("-", |t| t.as_str())),
    ///     )
    ///     .to_stream()
    ///     .to("out", Produced::with(StringSerde, Nullable(StringSerde)));
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let employees_in = driver.create_input_topic("employees", StringSerde, Nullable(StringSerde))?;
    /// let teams_in = driver.create_input_topic("teams", StringSerde, Nullable(StringSerde))?;
    /// employees_in.pipe_input("1".into(), Some("ann@db".into()))?;
    /// teams_in.pipe_input("db".into(), Some("Databases".into()))?;
    /// employees_in.pipe_input("1".into(), Some("ann".into()))?; // leaves the team: null foreign key
    /// let out = driver.create_output_topic("out", StringSerde, Nullable(StringSerde));
    /// let values: Vec<Option<String>> = out.read_values_to_vec()?;
    /// assert_eq!(values.first(), Some(&Some("ann@db in -".into())));
    /// assert_eq!(values.get(1), Some(&Some("ann@db in Databases".into())));
    /// assert_eq!(values.last(), Some(&Some("ann in -".into())));
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn left_join_on_foreign_key<KO, VO, VR, F, J>(
        &self,
        other: &KTable<KO, VO>,
        foreign_key_extractor: F,
        joiner: J,
    ) -> KTable<K, VR>
    where
        KO: Clone + Send + Sync + 'static,
        VO: Clone + Send + Sync + 'static,
        VR: Clone + Send + Sync + 'static,
        F: Fn(&V) -> Option<KO> + Send + Sync + 'static,
        J: Fn(&V, Option<&VO>) -> VR + Send + Sync + 'static,
    {
        self.left_join_on_foreign_key_with(
            other,
            foreign_key_extractor,
            joiner,
            TableJoined::new(),
            Materialized::new(),
        )
    }

    /// [`KTable::left_join_on_foreign_key`] with [`TableJoined`] and [`Materialized`]
    /// (Kafka's `leftJoin(other, foreignKeyExtractor, joiner, tableJoined, materialized)`).
    ///
    /// ```
    /// use streams_core::{StreamsConfig, StringSerde, TopologyTestDriver};
    /// use streams_dsl::{Consumed, Materialized, StreamsBuilder, TableJoined};
    /// let builder = StreamsBuilder::new();
    /// let employees = builder.table("employees", Consumed::with(StringSerde, StringSerde), Materialized::new());
    /// let teams = builder.table("teams", Consumed::with(StringSerde, StringSerde), Materialized::new());
    /// employees.left_join_on_foreign_key_with(
    ///     &teams,
    ///     |team: &String| Some(team.clone()),
    ///     |_team: &String, name: Option<&String>| name.cloned().unwrap_or_default(),
    ///     TableJoined::new(),
    ///     Materialized::as_store("team-names").with_value_serde(StringSerde),
    /// );
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// driver.create_input_topic("employees", StringSerde, StringSerde)?.pipe_input("ann".into(), "db".into())?;
    /// assert_eq!(driver.read_key_value_store::<String, String>("team-names")?,
    ///     vec![("ann".into(), String::new())]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn left_join_on_foreign_key_with<KO, VO, VR, F, J>(
        &self,
        other: &KTable<KO, VO>,
        foreign_key_extractor: F,
        joiner: J,
        table_joined: TableJoined<K, KO>,
        materialized: Materialized<K, VR>,
    ) -> KTable<K, VR>
    where
        KO: Clone + Send + Sync + 'static,
        VO: Clone + Send + Sync + 'static,
        VR: Clone + Send + Sync + 'static,
        F: Fn(&V) -> Option<KO> + Send + Sync + 'static,
        J: Fn(&V, Option<&VO>) -> VR + Send + Sync + 'static,
    {
        do_join_on_foreign_key(
            self,
            other,
            Arc::new(foreign_key_extractor),
            FkJoiner::Left(Arc::new(joiner)),
            table_joined,
            materialized,
        )
    }
}
