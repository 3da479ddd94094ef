//! # streams-dsl
//!
//! The typed DSL of the streams framework, in Kafka Streams' vocabulary:
//! [`StreamsBuilder`] creates [`KStream`]s from topics; stream operations (`map`,
//! `map_values`, `flat_map`, `flat_map_values`, `filter`, `filter_not`, `select_key`,
//! `peek`, `foreach`, `to`, `process`) each add a processor; `group_by_key` / `group_by` give
//! a [`KGroupedStream`] whose `count`, `reduce` and `aggregate` produce a [`KTable`] backed by
//! a state store (RocksDB by default, cached and change-logged).
//! [`KGroupedStream::windowed_by`] cuts a grouped stream into tumbling or hopping
//! [`TimeWindows`] for windowed `count`, `reduce` and `aggregate` into a
//! `KTable<Windowed<K>, V>` ([`TimeWindowedKStream`]), with Kafka's grace and late-record
//! rules; [`SessionWindows`] give session `count`, `reduce` and `aggregate` (with a
//! merger) through a [`SessionWindowedKStream`], and [`SlidingWindows`] (windows defined by
//! the records, Kafka's sliding-window algorithm) through a [`SlidingWindowedKStream`].
//! Each windowed stream takes an [`EmitStrategy`]: every update (the default) or only the
//! final result of each window once it closes (`emit_strategy(EmitStrategy::on_window_close())`).
//! [`KTable::suppress`] holds a table's updates in a change-logged buffer
//! ([`Suppressed::until_window_closes`]: one final result per window once its grace has
//! passed; [`Suppressed::until_time_limit`] with a bounded or unbounded [`BufferConfig`]).
//! Streams join other streams within
//! [`JoinWindows`] ([`KStream::join`], [`KStream::left_join`], [`KStream::outer_join`], with
//! Kafka's buffering in window stores and its fix for spurious left/outer results, tuned by
//! [`StreamJoined`]) and tables at processing time ([`KStream::join_table`],
//! [`KStream::left_join_table`], with [`Joined`]) or global tables through a key selector
//! ([`KStream::join_global`], [`KStream::left_join_global`]; no repartition). Tables join
//! tables on their key ([`KTable::join`], [`KTable::left_join`], [`KTable::outer_join`],
//! materialized with the `*_materialized` variants): every update of either side emits
//! the joined row's new value, the result being a table itself. Tables also join other
//! tables on a foreign key extracted from their values ([`KTable::join_on_foreign_key`],
//! [`KTable::left_join_on_foreign_key`], with [`TableJoined`]; KIP-213, through Kafka's
//! subscription and response topics, in its byte layouts, with its stale-result check).
//! A grouping or join after a
//! key-changing operation reads through a repartition topic
//! (`<application.id>-<name>-repartition`), inserted automatically.
//!
//! Streams also [`split`](KStream::split) into branches ([`Branched`],
//! [`BranchedKStream`]), [`merge`](KStream::merge), go through a repartition topic on
//! demand ([`repartition`](KStream::repartition) with [`Repartitioned`]), become tables
//! ([`to_table`](KStream::to_table)) and write to a topic chosen per record
//! ([`to_dynamic`](KStream::to_dynamic)). [`StreamsBuilder::table`] reads a topic as a
//! [`KTable`]; [`StreamsBuilder::global_table`] replicates every partition of a topic to
//! every instance as a [`GlobalKTable`], restored before processing starts and read by
//! processors with `ProcessorContext::global_store`. With `topology.optimization` set to
//! `reuse.ktable.source.topics` (`StreamsConfig::topology_optimization`), source tables
//! are restored from their source topic instead of a changelog topic.
//!
//! Operations are typed stage by stage and compile into a `streams_core::Topology`
//! (this crate depends on `streams-core` only and must not reach below it); node and store
//! names are generated as Kafka Streams generates them (`KSTREAM-MAP-0000000001`) unless
//! given with [`Named`], [`Materialized::as_store`], [`Grouped::as_name`], ...
//!
//! ## Word count
//! ```
//! use streams_core::{I64Serde, Nullable, StreamsConfig, StringSerde, VoidSerde, TopologyTestDriver};
//! use streams_dsl::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};
//!
//! let builder = StreamsBuilder::new();
//! builder
//!     .stream("lines", Consumed::with(VoidSerde, StringSerde))
//!     .flat_map_values(|line: String| {
//!         line.split(|c: char| !c.is_alphanumeric())
//!             .filter(|w| !w.is_empty())
//!             .map(str::to_lowercase)
//!             .collect::<Vec<_>>()
//!     })
//!     .group_by(|_: &(), word: &String| word.clone(), Grouped::with(StringSerde, StringSerde))
//!     .count(Materialized::as_store("counts"))
//!     .to_stream()
//!     .to("word-counts", Produced::with(StringSerde, Nullable(I64Serde)));
//!
//! let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("word-count"))?;
//! let lines = driver.create_input_topic("lines", VoidSerde, StringSerde)?;
//! lines.pipe_input((), "To be, or not to be".into())?;
//! let counts = driver
//!     .create_output_topic("word-counts", StringSerde, I64Serde)
//!     .read_key_values_to_map()?;
//! assert_eq!(counts["to"], 2);
//! assert_eq!(counts["or"], 1);
//! # Ok::<(), streams_core::StreamsError>(())
//! ```

mod branched;
mod builder;
mod changed;
mod emit;
mod fk_join;
mod global_join;
mod global_table;
mod join_windows;
mod joined;
mod kgrouped;
mod kgrouped_table;
mod kstream;
mod kstream_ops;
mod ktable;
mod options;
mod processors;
mod repartition;
mod repartitioned;
mod session_windowed;
mod sliding_windowed;
mod stream_join;
mod stream_table_join;
mod suppress;
mod table;
mod table_table_join;
mod time_windowed;
mod value_getter;
mod windows;

pub use branched::{Branched, BranchedKStream};
pub use builder::StreamsBuilder;
pub use emit::EmitStrategy;
pub use fk_join::TableJoined;
pub use global_table::GlobalKTable;
pub use join_windows::JoinWindows;
pub use joined::{Joined, StreamJoined};
pub use kgrouped::{KGroupedStream, WindowedBy};
pub use kgrouped_table::KGroupedTable;
pub use kstream::KStream;
pub use ktable::KTable;
pub use options::{Consumed, Grouped, Materialized, Named, Produced};
pub use repartitioned::Repartitioned;
pub use session_windowed::SessionWindowedKStream;
pub use sliding_windowed::SlidingWindowedKStream;
pub use streams_core::{Change, SessionWindowedSerde, TimeWindowedSerde, Window, Windowed};
pub use suppress::{BufferConfig, EagerBufferConfig, StrictBufferConfig, Suppressed};
pub use time_windowed::TimeWindowedKStream;
pub use windows::{SessionWindows, SlidingWindows, TimeWindows};
