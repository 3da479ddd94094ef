//! # tests
//!
//! Cross-crate integration tests live in `tests/tests/`: scenarios that exercise several
//! crates together (multi-instance runs, crash and exactly-once tests, compatibility with
//! external Kafka clients). Tests of a single crate live next to that crate's code.
//!
//! This library target is intentionally empty.
