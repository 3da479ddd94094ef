//! # examples
//!
//! The project's runnable examples live in `examples/examples/` and run with
//! `cargo run -p examples --example <name>`:
//!
//! - `word-count`: the classic Kafka Streams word count on the embedded broker (the
//!   README's main command); its application logic is [`word_count`], shared with the tests
//!   and the benchmark. With `--bootstrap-server` it runs against a Kafka-protocol cluster
//!   instead, and several processes share the work ([`word_count_cluster`]).
//! - `gps-trucks`: a fleet of trucks reporting GPS positions; latest positions, distance
//!   and average speed per truck and window, speeding alerts ([`gps_trucks`]).
//! - `broker-demo`: starts an embedded broker, appends records, reads them back and prints
//!   throughput.

pub mod gps_trucks;
pub mod run;
pub mod word_count;
pub mod word_count_cluster;
