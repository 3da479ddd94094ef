//! # streams-core
//!
//! The streams runtime. This crate **will own** (the streams runtime issue fills it in):
//!
//! - `Topology`: source, processor and sink nodes, attached state stores, sub-topologies split
//!   at repartition topics, validation and `describe()`;
//! - the Processor API (`Processor`, its context, punctuation);
//! - serdes byte-compatible with Kafka's Java serdes;
//! - tasks (one per sub-topology and partition), stream threads, the commit and restore cycle,
//!   and later the exactly-once loop;
//! - the client layer: a narrow trait over what the runtime needs from a cluster, implemented
//!   over the in-process `broker-embedded` handle and over `rdkafka`.
//!
//! It depends on `state-store` and `broker-embedded`, and must never depend on `streams-dsl`.
//! Nothing is public yet: there is deliberately no placeholder API.
