//! The parts of librdkafka's C API that the `rdkafka` crate does not wrap and the wire
//! backend needs, each a thin function over `rdkafka-sys` calls: the only `unsafe` code
//! of the backend, kept here so it can be audited in one place. Every object allocated
//! here is freed here (an owning handle with `Drop`, or read out and destroyed at once),
//! every pointer librdkafka returns is null-checked, and strings that cannot become C
//! strings are typed errors.

// Denied in the workspace; allowed in this module only, for the FFI calls below. Each call
// passes librdkafka a client handle that the borrowed `rdkafka` consumer keeps alive for the
// call's duration, C strings that outlive the call, and out-pointers to local variables;
// objects librdkafka allocates for the caller are owned by one value and destroyed once.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::ptr::NonNull;
use std::time::Duration;

use rdkafka::bindings::{
    rd_kafka_consumer_group_metadata_destroy, rd_kafka_consumer_group_metadata_new_with_genid,
    rd_kafka_consumer_group_metadata_t, rd_kafka_error_code, rd_kafka_error_destroy,
    rd_kafka_error_is_fatal, rd_kafka_error_is_retriable, rd_kafka_error_string, rd_kafka_error_t,
    rd_kafka_error_txn_requires_abort, rd_kafka_get_watermark_offsets, rd_kafka_position,
    rd_kafka_resp_err_t, rd_kafka_send_offsets_to_transaction,
};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::producer::{BaseProducer, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::TopicPartitionList;
use state_store::TopicPartition;

use crate::client::ConsumerGroupMetadata;

/// The high watermark of `tp` as of the consumer's last fetch response for it
/// (librdkafka's `rd_kafka_get_watermark_offsets`, the counterpart of the Java consumer's
/// cached fetch metadata behind `currentLag`): no request, no blocking. `None` while the
/// consumer has not fetched the partition yet.
pub(super) fn cached_high_watermark<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    tp: &TopicPartition,
) -> Option<i64> {
    let topic = CString::new(tp.topic.as_str()).ok()?;
    let (mut low, mut high) = (-1_i64, -1_i64);
    // SAFETY: `native_ptr` is the live `rd_kafka_t` of `consumer`, which this borrow keeps
    // alive; `topic` is a NUL-terminated string that outlives the call; `low` and `high` are
    // valid, writable `i64`s. The function only reads librdkafka's cached partition state
    // under librdkafka's own locks.
    let err = unsafe {
        rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            tp.partition,
            &mut low,
            &mut high,
        )
    };
    (err == rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0).then_some(high)
}

/// The consumer's position in `tp` as librdkafka keeps it (`rd_kafka_position`: the
/// offset after the last message the application consumed). Unlike the offset after the
/// last record handed out, it is past the transaction markers and aborted transactions'
/// records librdkafka consumed and did not hand out under `read_committed`, as the Java
/// consumer's position is. `None` when librdkafka has no position (just assigned or sought:
/// the caller's own position is the right one then).
pub(super) fn consumed_position<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    tp: &TopicPartition,
) -> Option<i64> {
    if tp.topic.contains('\0') {
        // `rdkafka` would panic building the C string; Kafka topic names never hold one.
        return None;
    }
    let mut list = TopicPartitionList::with_capacity(1);
    list.add_partition(&tp.topic, tp.partition);
    // SAFETY: `native_ptr` is the live `rd_kafka_t` of `consumer`, which this borrow keeps
    // alive; `list.ptr()` is the live partition list `list` owns, which librdkafka only
    // updates in place (each element's offset and error) during the call.
    let err = unsafe { rd_kafka_position(consumer.client().native_ptr(), list.ptr()) };
    if err != rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        return None;
    }
    let elem = list.find_partition(&tp.topic, tp.partition)?;
    match elem.offset() {
        rdkafka::Offset::Offset(o) if o >= 0 && elem.error().is_ok() => Some(o),
        _ => None,
    }
}

/// What librdkafka's transactional API said went wrong: an `rd_kafka_error_t` read out
/// (code, text and the three flags that say what the caller may do next) and destroyed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TxnApiError {
    /// `rd_kafka_error_code`.
    pub(super) code: RDKafkaErrorCode,
    /// `rd_kafka_error_string`.
    pub(super) message: String,
    /// `rd_kafka_error_is_fatal`: the producer cannot be used again.
    pub(super) fatal: bool,
    /// `rd_kafka_error_is_retriable`: the same call may be made again.
    pub(super) retriable: bool,
    /// `rd_kafka_error_txn_requires_abort`: the transaction must be aborted.
    pub(super) txn_requires_abort: bool,
}

/// Why [`send_offsets_to_transaction`] failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum SendOffsetsError {
    /// A group id, member id or group instance id holds a NUL byte, which a C string
    /// cannot carry.
    #[error("the {field} `{value}` contains a NUL byte")]
    Nul {
        /// Which identifier.
        field: &'static str,
        /// Its value (lossy).
        value: String,
    },
    /// librdkafka returned no group metadata object.
    #[error("librdkafka could not create the consumer group metadata of group `{group}`")]
    NoGroupMetadata {
        /// The group.
        group: String,
    },
    /// librdkafka refused the offsets.
    #[error("{}: {} (fatal: {}, retriable: {}, abort required: {})", .0.code, .0.message, .0.fatal, .0.retriable, .0.txn_requires_abort)]
    Api(TxnApiError),
}

/// Owns an `rd_kafka_consumer_group_metadata_t` and destroys it when dropped.
struct GroupMetadataHandle(NonNull<rd_kafka_consumer_group_metadata_t>);

impl Drop for GroupMetadataHandle {
    fn drop(&mut self) {
        // SAFETY: the pointer came from `rd_kafka_consumer_group_metadata_new_with_genid`,
        // is not null, is owned by this handle alone and is destroyed exactly once, here.
        unsafe { rd_kafka_consumer_group_metadata_destroy(self.0.as_ptr()) }
    }
}

/// Reads an `rd_kafka_error_t` returned by the transactional API and destroys it; `None`
/// for a null pointer (success).
///
/// # Safety
/// `error` must be null or an error object librdkafka returned to the caller, not yet
/// destroyed and not used after this call.
unsafe fn take_error(error: *mut rd_kafka_error_t) -> Option<TxnApiError> {
    let error = NonNull::new(error)?;
    let e = error.as_ptr();
    // SAFETY (whole block): `e` is a live error object (the caller's contract); the
    // accessors only read it, and the string it returns lives as long as the object, so
    // it is copied before the object is destroyed, once, at the end.
    unsafe {
        let text = rd_kafka_error_string(e);
        let message = if text.is_null() {
            String::new()
        } else {
            CStr::from_ptr(text).to_string_lossy().into_owned()
        };
        let out = TxnApiError {
            code: RDKafkaErrorCode::from(rd_kafka_error_code(e)),
            message,
            fatal: rd_kafka_error_is_fatal(e) != 0,
            retriable: rd_kafka_error_is_retriable(e) != 0,
            txn_requires_abort: rd_kafka_error_txn_requires_abort(e) != 0,
        };
        rd_kafka_error_destroy(e);
        Some(out)
    }
}

/// The group membership as a C string, or a typed error naming the field.
fn c_string(field: &'static str, value: &str) -> Result<CString, SendOffsetsError> {
    CString::new(value).map_err(|_| SendOffsetsError::Nul {
        field,
        value: value.replace('\0', "\\0"),
    })
}

/// Adds `offsets` (with their metadata) to `producer`'s open transaction as committed by
/// the group member `group` describes: librdkafka's `rd_kafka_send_offsets_to_transaction`
/// with group metadata built by `rd_kafka_consumer_group_metadata_new_with_genid`, so the
/// `TxnOffsetCommit` carries the member's generation and member id (KIP-447) and the
/// group coordinator refuses it from a member whose tasks moved on. The `rdkafka` crate only
/// builds group metadata from a consumer of its own, and the runtime's group member is not
/// one. Waits up to `timeout`.
pub(super) fn send_offsets_to_transaction<C: ProducerContext>(
    producer: &BaseProducer<C>,
    offsets: &TopicPartitionList,
    group: &ConsumerGroupMetadata,
    timeout: Duration,
) -> Result<(), SendOffsetsError> {
    let group_id = c_string("group id", &group.group_id)?;
    let member_id = c_string("member id", &group.member_id)?;
    let instance_id = group
        .group_instance_id
        .as_deref()
        .map(|id| c_string("group instance id", id))
        .transpose()?;
    // SAFETY: the three strings are NUL-terminated and live until the end of this function;
    // librdkafka copies them into the object it returns (a null instance id is allowed).
    let raw = unsafe {
        rd_kafka_consumer_group_metadata_new_with_genid(
            group_id.as_ptr(),
            group.generation_id,
            member_id.as_ptr(),
            instance_id
                .as_ref()
                .map_or(std::ptr::null(), |s| s.as_ptr()),
        )
    };
    let metadata = GroupMetadataHandle(NonNull::new(raw).ok_or_else(|| {
        SendOffsetsError::NoGroupMetadata {
            group: group.group_id.clone(),
        }
    })?);
    let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: `native_ptr` is the live `rd_kafka_t` of `producer`, kept alive by this
    // borrow; `offsets.ptr()` is the live list `offsets` owns and `metadata` the live group
    // metadata this function owns, both only read by librdkafka (const parameters) and
    // both outliving the call, which blocks until librdkafka is done with them. The error
    // object returned (if any) is handed to `take_error`, which destroys it.
    let error = unsafe {
        take_error(rd_kafka_send_offsets_to_transaction(
            producer.client().native_ptr(),
            offsets.ptr(),
            metadata.0.as_ptr(),
            timeout_ms,
        ))
    };
    drop(metadata);
    match error {
        None => Ok(()),
        Some(e) => Err(SendOffsetsError::Api(e)),
    }
}
