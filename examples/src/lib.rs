//! # examples
//!
//! The project's runnable examples live in `examples/examples/` and run with
//! `cargo run -p examples --example <name>`:
//!
//! - `broker-demo`: starts an embedded broker, appends records, reads them back and prints
//!   throughput (the README's main command until the word-count example lands).
//!
//! This library target is intentionally empty; it exists so the examples share one crate.
