//! The processors of the foreign-key join, one per Kafka class of
//! `org.apache.kafka.streams.kstream.internals.foreignkeyjoin`.

use std::marker::PhantomData;
use std::sync::{Arc, OnceLock};

use streams_core::{
    BytesSerde, Change, Processor, ProcessorContext, Record, Result, Serde, SharedSerde,
    StoreAccess, StoreKind, StreamsError, ValueAndTimestamp,
};

use super::murmur3;
use super::wrappers::{
    Instruction, RESPONSE_VERSION, SUBSCRIPTION_VERSION, SerdeSlot, SubscriptionResponseWrapper,
    SubscriptionWrapper, combined_key, prefix, split_combined_key,
};
use crate::table::skip_record;
use crate::value_getter::ValueGetter;

/// The foreign-key extractor: the left value's foreign key, `None` for a null one.
pub(crate) type Extractor<V, KO> = Arc<dyn Fn(&V) -> Option<KO> + Send + Sync>;

/// An inner join's joiner: (left value, right value).
pub(crate) type InnerJoiner<V, VO, VR> = Arc<dyn Fn(&V, &VO) -> VR + Send + Sync>;
/// A left join's joiner: the right value may be missing.
pub(crate) type LeftJoiner<V, VO, VR> = Arc<dyn Fn(&V, Option<&VO>) -> VR + Send + Sync>;

/// The joiner of an inner or a left foreign-key join (Kafka's `ValueJoiner<V, VO, VR>`).
pub(crate) enum FkJoiner<V, VO, VR> {
    Inner(InnerJoiner<V, VO, VR>),
    Left(LeftJoiner<V, VO, VR>),
}

impl<V, VO, VR> FkJoiner<V, VO, VR> {
    pub(crate) fn is_left(&self) -> bool {
        matches!(self, FkJoiner::Left(_))
    }
}

/// The key of a subscription on the right side (Kafka's `CombinedKey`): the foreign key
/// (`None` for a left join's null foreign key, never stored) and the primary key.
#[derive(Debug, Clone)]
pub(crate) struct CombinedKey<KO, K> {
    pub(crate) foreign_key: Option<KO>,
    pub(crate) primary_key: K,
}

/// The pseudo topics Kafka (de)serializes the join's parts for
/// (`decoratePseudoTopic(<subscription topic>-pk|-fk|-vh)`).
#[derive(Debug, Clone, Default)]
pub(crate) struct PseudoTopics {
    pub(crate) pk: String,
    pub(crate) fk: String,
    pub(crate) vh: String,
}

impl PseudoTopics {
    pub(crate) fn new(app: &str, subscription_topic: &str) -> Self {
        let base = format!("{app}-{subscription_topic}");
        PseudoTopics {
            pk: format!("{base}-pk"),
            fk: format!("{base}-fk"),
            vh: format!("{base}-vh"),
        }
    }
}

fn serde_err(e: streams_core::SerdeError, node: &str) -> StreamsError {
    StreamsError::IllegalState(format!("foreign-key join node `{node}`: {}", e.message()))
}

/// `Murmur3.hash128` of a left value serialized for the `-vh` pseudo topic.
fn value_hash<V: 'static>(
    serde: &SharedSerde<V>,
    topic: &str,
    value: &V,
    node: &str,
) -> Result<Option<[i64; 2]>> {
    let bytes = serde
        .serialize(topic, value)
        .map_err(|e| serde_err(e, node))?;
    Ok(bytes.map(|b| murmur3::hash128(&b)))
}

/// The partition of the record being processed (the task's inside a cache flush).
fn current_partition<K, V>(ctx: &ProcessorContext<'_, K, V>) -> i32
where
    K: std::any::Any + Send + Clone,
    V: std::any::Any + Send + Clone,
{
    ctx.record_metadata()
        .map_or(ctx.task_id().partition, |m| m.partition)
}

/// Kafka's `SubscriptionSendProcessorSupplier`: turns each left update into subscription
/// instructions keyed by foreign key.
pub(crate) struct SendProcessor<K, V, KO> {
    pub(crate) extractor: Extractor<V, KO>,
    pub(crate) left: bool,
    pub(crate) fk_serde: SerdeSlot<KO>,
    pub(crate) pk_serde: SerdeSlot<K>,
    pub(crate) value_serde: Option<SharedSerde<V>>,
    pub(crate) subscription_topic: String,
    pub(crate) pk_topic: Arc<OnceLock<String>>,
    pub(crate) topics: PseudoTopics,
}

impl<K, V, KO> SendProcessor<K, V, KO>
where
    K: Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    KO: Clone + Send + Sync + 'static,
{
    fn serialize_fk(&self, fk: Option<&KO>, node: &str) -> Result<Option<Vec<u8>>> {
        match fk {
            None => Ok(None),
            Some(k) => self
                .fk_serde
                .serialize(&self.topics.fk, k)
                .map_err(|e| serde_err(e, node)),
        }
    }

    fn forward(
        &self,
        ctx: &mut ProcessorContext<'_, Option<KO>, SubscriptionWrapper<K>>,
        record: &Record<K, Change<V>>,
        hash: Option<[i64; 2]>,
        foreign_key: Option<KO>,
        instruction: Instruction,
    ) -> Result<()> {
        let wrapper = SubscriptionWrapper {
            hash,
            instruction,
            version: SUBSCRIPTION_VERSION,
            primary_key: record.key.clone(),
            primary_partition: Some(current_partition(ctx)),
        };
        ctx.forward(Record {
            key: foreign_key,
            value: wrapper,
            timestamp: record.timestamp,
            headers: record.headers.clone(),
        })
    }
}

fn skip_null_foreign_key<K, V>(ctx: &mut ProcessorContext<'_, K, V>) {
    skip_record(ctx, "Skipping record due to null foreign key.");
}

impl<K, V, KO> Processor<K, Change<V>, Option<KO>, SubscriptionWrapper<K>>
    for SendProcessor<K, V, KO>
where
    K: Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    KO: Clone + Send + Sync + 'static,
{
    fn init(
        &mut self,
        ctx: &mut ProcessorContext<'_, Option<KO>, SubscriptionWrapper<K>>,
    ) -> Result<()> {
        let node = ctx.node_name().to_owned();
        self.fk_serde.resolve(ctx.serdes(), "key", &node)?;
        self.pk_serde.resolve(ctx.serdes(), "key", &node)?;
        if self.value_serde.is_none() {
            self.value_serde = ctx.serdes().get::<V>();
        }
        if self.value_serde.is_none() {
            return Err(StreamsError::MissingSerde {
                what: "value",
                type_name: std::any::type_name::<V>(),
                node,
            });
        }
        self.topics = PseudoTopics::new(ctx.application_id(), &self.subscription_topic);
        let _ = self.pk_topic.set(self.topics.pk.clone());
        Ok(())
    }

    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, Option<KO>, SubscriptionWrapper<K>>,
        record: Record<K, Change<V>>,
    ) -> Result<()> {
        let node = ctx.node_name().to_owned();
        // The hash of the new value, the same for every instruction of this update.
        let hash = match (&record.value.new, &self.value_serde) {
            (Some(v), Some(serde)) => value_hash(serde, &self.topics.vh, v, &node)?,
            _ => None,
        };
        let new_fk = record.value.new.as_ref().and_then(|v| (self.extractor)(v));
        let Some(old) = &record.value.old else {
            // A new row (or the delete of a row never seen).
            if record.value.new.is_none() {
                return Ok(());
            }
            if self.left {
                return self.forward(
                    ctx,
                    &record,
                    hash,
                    new_fk,
                    Instruction::PropagateNullIfNoFkValAvailable,
                );
            }
            return match new_fk {
                Some(fk) => self.forward(
                    ctx,
                    &record,
                    hash,
                    Some(fk),
                    Instruction::PropagateOnlyIfFkValAvailable,
                ),
                None => {
                    skip_null_foreign_key(ctx);
                    Ok(())
                }
            };
        };
        let old_fk = (self.extractor)(old);
        let changed = self.serialize_fk(new_fk.as_ref(), &node)?
            != self.serialize_fk(old_fk.as_ref(), &node)?;
        if self.left {
            // Kafka's leftJoinInstructions (KIP-962: a null foreign key still propagates).
            if let Some(old_fk) = old_fk.filter(|_| changed) {
                self.forward(
                    ctx,
                    &record,
                    hash,
                    Some(old_fk),
                    Instruction::DeleteKeyAndPropagate,
                )?;
            }
            return self.forward(
                ctx,
                &record,
                hash,
                new_fk,
                Instruction::PropagateNullIfNoFkValAvailable,
            );
        }
        // Kafka's defaultJoinInstructions, with KAFKA-16407's handling of a foreign key
        // changing from or to null.
        match (old_fk, new_fk) {
            (None, None) => {
                skip_null_foreign_key(ctx);
                Ok(())
            }
            (None, Some(fk)) => self.forward(
                ctx,
                &record,
                hash,
                Some(fk),
                Instruction::PropagateOnlyIfFkValAvailable,
            ),
            (Some(old_fk), None) => self.forward(
                ctx,
                &record,
                hash,
                Some(old_fk),
                Instruction::DeleteKeyAndPropagate,
            ),
            (Some(old_fk), Some(fk)) => {
                if changed {
                    self.forward(
                        ctx,
                        &record,
                        hash,
                        Some(old_fk),
                        Instruction::DeleteKeyNoPropagate,
                    )?;
                }
                self.forward(
                    ctx,
                    &record,
                    hash,
                    Some(fk),
                    Instruction::PropagateNullIfNoFkValAvailable,
                )
            }
        }
    }
}

/// The subscription store handle's types: combined key bytes → timestamped subscription.
fn subscription_store_key<KO, K>(
    fk_serde: &SerdeSlot<KO>,
    pk_serde: &SerdeSlot<K>,
    topics: &PseudoTopics,
    fk: &KO,
    pk: &K,
    node: &str,
) -> Result<Vec<u8>>
where
    KO: 'static,
    K: 'static,
{
    let fk_bytes = fk_serde
        .serialize(&topics.fk, fk)
        .map_err(|e| serde_err(e, node))?
        .unwrap_or_default();
    let pk_bytes = pk_serde
        .serialize(&topics.pk, pk)
        .map_err(|e| serde_err(e, node))?
        .unwrap_or_default();
    combined_key(&fk_bytes, &pk_bytes).map_err(|e| serde_err(e, node))
}

/// Kafka's `SubscriptionReceiveProcessorSupplier`: keeps the subscription store (adds or
/// removes the subscription) and passes the subscription on under its combined key.
pub(crate) struct ReceiveProcessor<K, KO> {
    pub(crate) store: String,
    pub(crate) fk_serde: SerdeSlot<KO>,
    pub(crate) pk_serde: SerdeSlot<K>,
    pub(crate) subscription_topic: String,
    pub(crate) pk_topic: Arc<OnceLock<String>>,
    pub(crate) topics: PseudoTopics,
}

impl<K, KO>
    Processor<Option<KO>, SubscriptionWrapper<K>, CombinedKey<KO, K>, SubscriptionWrapper<K>>
    for ReceiveProcessor<K, KO>
where
    K: Clone + Send + Sync + 'static,
    KO: Clone + Send + Sync + 'static,
{
    fn init(
        &mut self,
        ctx: &mut ProcessorContext<'_, CombinedKey<KO, K>, SubscriptionWrapper<K>>,
    ) -> Result<()> {
        let node = ctx.node_name().to_owned();
        self.fk_serde.resolve(ctx.serdes(), "key", &node)?;
        self.pk_serde.resolve(ctx.serdes(), "key", &node)?;
        self.topics = PseudoTopics::new(ctx.application_id(), &self.subscription_topic);
        let _ = self.pk_topic.set(self.topics.pk.clone());
        Ok(())
    }

    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, CombinedKey<KO, K>, SubscriptionWrapper<K>>,
        record: Record<Option<KO>, SubscriptionWrapper<K>>,
    ) -> Result<()> {
        let instruction = record.value.instruction;
        let Some(fk) = record.key else {
            if instruction != Instruction::PropagateNullIfNoFkValAvailable {
                skip_null_foreign_key(ctx);
                return Ok(());
            }
            // A left join's null foreign key: nothing to store, answered with no row.
            let pk = record.value.primary_key.clone();
            return ctx.forward(Record {
                key: CombinedKey {
                    foreign_key: None,
                    primary_key: pk,
                },
                value: record.value,
                timestamp: record.timestamp,
                headers: record.headers,
            });
        };
        if record.value.version > SUBSCRIPTION_VERSION {
            return Err(StreamsError::IllegalState(
                "SubscriptionWrapper is of an incompatible version.".into(),
            ));
        }
        let node = ctx.node_name().to_owned();
        let key = subscription_store_key(
            &self.fk_serde,
            &self.pk_serde,
            &self.topics,
            &fk,
            &record.value.primary_key,
            &node,
        )?;
        let mut store =
            ctx.timestamped_key_value_store::<Vec<u8>, SubscriptionWrapper<K>>(&self.store)?;
        match instruction {
            Instruction::DeleteKeyAndPropagate | Instruction::DeleteKeyNoPropagate => {
                store.delete(&key)?;
            }
            _ => store.put(
                &key,
                &ValueAndTimestamp::new(record.value.clone(), record.timestamp),
            )?,
        }
        let pk = record.value.primary_key.clone();
        ctx.forward(Record {
            key: CombinedKey {
                foreign_key: Some(fk),
                primary_key: pk,
            },
            value: record.value,
            timestamp: record.timestamp,
            headers: record.headers,
        })
    }
}

/// Reads the right table's value and timestamp for a key: the value through the table's
/// value getter, the timestamp from the timestamped store at the root of its chain (what
/// Kafka's filter and map-values getters pass on unchanged).
pub(crate) fn get_with_timestamp<KO: 'static, VO: 'static>(
    getter: &ValueGetter<KO, VO>,
    access: &mut StoreAccess<'_>,
    key: &KO,
) -> Result<Option<(VO, Option<i64>)>> {
    let Some(value) = (getter.get)(access, key)? else {
        return Ok(None);
    };
    let ts = match access.store_kind(&getter.store) {
        Some(StoreKind::TimestampedKeyValue) => access
            .timestamped_key_value_store::<KO, VO>(&getter.store)?
            .get(key)?
            .map(|v| v.timestamp),
        _ => None,
    };
    Ok(Some((value, ts)))
}

/// Kafka's `SubscriptionJoinProcessorSupplier`: answers a subscription with the right
/// table's current value, as its instruction says.
pub(crate) struct SubscriptionJoinProcessor<K, KO, VO> {
    pub(crate) getter: ValueGetter<KO, VO>,
    pub(crate) _k: PhantomData<fn(K)>,
}

impl<K, KO, VO>
    Processor<CombinedKey<KO, K>, SubscriptionWrapper<K>, K, SubscriptionResponseWrapper<VO>>
    for SubscriptionJoinProcessor<K, KO, VO>
where
    K: Clone + Send + Sync + 'static,
    KO: Clone + Send + Sync + 'static,
    VO: Clone + Send + Sync + 'static,
{
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, K, SubscriptionResponseWrapper<VO>>,
        record: Record<CombinedKey<KO, K>, SubscriptionWrapper<K>>,
    ) -> Result<()> {
        let wrapper = record.value;
        let foreign = match &record.key.foreign_key {
            Some(fk) => get_with_timestamp(&self.getter, &mut ctx.store_access(), fk)?,
            None => None,
        };
        let timestamp = match &foreign {
            Some((_, Some(ts))) => record.timestamp.max(*ts),
            _ => record.timestamp,
        };
        let foreign_value = foreign.map(|(v, _)| v);
        let response = |foreign_value| SubscriptionResponseWrapper {
            original_value_hash: wrapper.hash,
            foreign_value,
            version: RESPONSE_VERSION,
            primary_partition: wrapper.primary_partition,
        };
        let value = match wrapper.instruction {
            Instruction::DeleteKeyAndPropagate => response(None),
            Instruction::PropagateNullIfNoFkValAvailable => response(foreign_value),
            Instruction::PropagateOnlyIfFkValAvailable => match foreign_value {
                Some(v) => response(Some(v)),
                None => return Ok(()),
            },
            Instruction::DeleteKeyNoPropagate => return Ok(()),
        };
        ctx.forward(Record {
            key: record.key.primary_key,
            value,
            timestamp,
            headers: record.headers,
        })
    }
}

/// Kafka's `ForeignTableJoinProcessorSupplier`: a right-table update is sent to every
/// left row subscribed to its key (a prefix scan of the subscription store).
pub(crate) struct ForeignJoinProcessor<K, KO, VO> {
    pub(crate) store: String,
    pub(crate) fk_serde: SerdeSlot<KO>,
    pub(crate) pk_serde: SerdeSlot<K>,
    pub(crate) subscription_topic: String,
    pub(crate) topics: PseudoTopics,
    pub(crate) _vo: PhantomData<fn(VO)>,
}

impl<K, KO, VO> Processor<KO, Change<VO>, K, SubscriptionResponseWrapper<VO>>
    for ForeignJoinProcessor<K, KO, VO>
where
    K: Clone + Send + Sync + 'static,
    KO: Clone + Send + Sync + 'static,
    VO: Clone + Send + Sync + 'static,
{
    fn init(
        &mut self,
        ctx: &mut ProcessorContext<'_, K, SubscriptionResponseWrapper<VO>>,
    ) -> Result<()> {
        let node = ctx.node_name().to_owned();
        self.fk_serde.resolve(ctx.serdes(), "key", &node)?;
        self.pk_serde.resolve(ctx.serdes(), "key", &node)?;
        self.topics = PseudoTopics::new(ctx.application_id(), &self.subscription_topic);
        Ok(())
    }

    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, K, SubscriptionResponseWrapper<VO>>,
        record: Record<KO, Change<VO>>,
    ) -> Result<()> {
        if self.fk_serde.is_null(&record.key) {
            skip_record(ctx, "Skipping record due to null key.");
            return Ok(());
        }
        let node = ctx.node_name().to_owned();
        let fk = self
            .fk_serde
            .serialize(&self.topics.fk, &record.key)
            .map_err(|e| serde_err(e, &node))?
            .unwrap_or_default();
        let prefix = prefix(&fk).map_err(|e| serde_err(e, &node))?;
        let subscribers: Vec<(Vec<u8>, ValueAndTimestamp<SubscriptionWrapper<K>>)> = {
            let store =
                ctx.timestamped_key_value_store::<Vec<u8>, SubscriptionWrapper<K>>(&self.store)?;
            store.prefix_scan(&prefix)?.collect::<Result<_>>()?
        };
        for (key, subscription) in subscribers {
            let (_, pk) = split_combined_key(&key).map_err(|e| serde_err(e, &node))?;
            let primary_key = self
                .pk_serde
                .deserialize(&self.topics.pk, Some(pk))
                .map_err(|e| serde_err(e, &node))?;
            ctx.forward(Record {
                key: primary_key,
                value: SubscriptionResponseWrapper {
                    original_value_hash: subscription.value.hash,
                    foreign_value: record.value.new.clone(),
                    version: RESPONSE_VERSION,
                    primary_partition: subscription.value.primary_partition,
                },
                timestamp: record.timestamp,
                headers: record.headers.clone(),
            })?;
        }
        Ok(())
    }
}

/// Kafka's `ResponseJoinProcessorSupplier`: drops responses whose hash is not that of the
/// left row's current value (stale: the row changed since), joins the others.
pub(crate) struct ResponseJoinProcessor<K, V, VO, VR> {
    pub(crate) getter: ValueGetter<K, V>,
    pub(crate) value_serde: Option<SharedSerde<V>>,
    pub(crate) joiner: Arc<FkJoiner<V, VO, VR>>,
    pub(crate) subscription_topic: String,
    pub(crate) topics: PseudoTopics,
}

impl<K, V, VO, VR> Processor<K, SubscriptionResponseWrapper<VO>, K, Option<VR>>
    for ResponseJoinProcessor<K, V, VO, VR>
where
    K: Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    VO: Clone + Send + Sync + 'static,
    VR: Clone + Send + Sync + 'static,
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, K, Option<VR>>) -> Result<()> {
        if self.value_serde.is_none() {
            self.value_serde = ctx.serdes().get::<V>();
        }
        if self.value_serde.is_none() {
            return Err(StreamsError::MissingSerde {
                what: "value",
                type_name: std::any::type_name::<V>(),
                node: ctx.node_name().to_owned(),
            });
        }
        self.topics = PseudoTopics::new(ctx.application_id(), &self.subscription_topic);
        Ok(())
    }

    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, K, Option<VR>>,
        record: Record<K, SubscriptionResponseWrapper<VO>>,
    ) -> Result<()> {
        if record.value.version != RESPONSE_VERSION {
            return Err(StreamsError::IllegalState(
                "SubscriptionResponseWrapper is of an incompatible version.".into(),
            ));
        }
        let node = ctx.node_name().to_owned();
        let current = (self.getter.get)(&mut ctx.store_access(), &record.key)?;
        let current_hash = match (&current, &self.value_serde) {
            (Some(v), Some(serde)) => value_hash(serde, &self.topics.vh, v, &node)?,
            _ => None,
        };
        if record.value.original_value_hash != current_hash {
            tracing::trace!(
                node,
                expected = ?record.value.original_value_hash,
                actual = ?current_hash,
                "Dropping FK-join response due to hash mismatch"
            );
            ctx.record_dropped();
            return Ok(());
        }
        let foreign = record.value.foreign_value.as_ref();
        let result = match (&*self.joiner, &current, foreign) {
            (FkJoiner::Inner(f), Some(v), Some(fv)) => Some(f(v, fv)),
            (FkJoiner::Left(f), Some(v), fv) => Some(f(v, fv)),
            // No left row (a deleted row's response), or no right row in an inner join:
            // a tombstone. (Kafka would call the joiner with a null left value if a
            // response with a foreign value matched a deleted row; no subscription of a
            // deleted row is ever stored, so that cannot happen.)
            _ => None,
        };
        ctx.forward(Record {
            key: record.key,
            value: result,
            timestamp: record.timestamp,
            headers: record.headers,
        })
    }
}

/// The serde of the subscription store's keys.
pub(crate) fn store_key_serde() -> SharedSerde<Vec<u8>> {
    Arc::new(BytesSerde)
}
