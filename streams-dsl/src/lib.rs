//! # streams-dsl
//!
//! The typed, Kafka-Streams-style DSL. This crate **will own** `StreamsBuilder`, `KStream`,
//! `KTable`, grouped and windowed streams and joins, and compiles them into a
//! `streams-core` `Topology` and nothing else.
//!
//! It depends only on `streams-core`; it must not reach into `state-store` or
//! `broker-embedded` directly. Nothing is public yet: there is deliberately no placeholder API.
