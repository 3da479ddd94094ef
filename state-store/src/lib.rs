//! # state-store
//!
//! Key-value, window and session stores (RocksDB-backed and in-memory), with caching,
//! change-logging and restoration layers. This crate **will own** (the state-store issue fills
//! it in) the store traits, both backends, the decorator layers and `.checkpoint` files.
//!
//! It knows nothing of topologies or brokers: it talks to the outside through small traits (a
//! changelog sink and a restore entry point). It must not depend on `broker-embedded`,
//! `streams-core` or `streams-dsl`. Nothing is public yet: there is deliberately no placeholder
//! API.
