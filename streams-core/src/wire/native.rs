//! The parts of librdkafka's C API that the `rdkafka` crate does not wrap and the wire
//! backend needs, each a thin function over one `rdkafka-sys` call: the only `unsafe` code
//! of the backend, kept here so it can be audited in one place.

// Denied in the workspace; allowed in this module only, for the FFI calls below. Each call
// passes librdkafka a client handle that the borrowed `rdkafka` consumer keeps alive for the
// call's duration, C strings that outlive the call, and out-pointers to local variables.
#![allow(unsafe_code)]

use std::ffi::CString;

use rdkafka::bindings::{rd_kafka_get_watermark_offsets, rd_kafka_resp_err_t};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use state_store::TopicPartition;

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
