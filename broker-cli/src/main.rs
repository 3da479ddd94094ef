//! `broker`: run the embedded broker as a Kafka-protocol server, and talk to any Kafka-protocol
//! cluster (this one, Apache Kafka, Redpanda) from the command line, in the spirit of Kafka's
//! own tools. Client subcommands use librdkafka, configured with the Java client's murmur2
//! partitioner so keys land where Java producers and Kafka Streams put them.
//!
//! One module per subcommand (`serve`, `topics`, `produce`, `consume`, `offsets`, `groups`,
//! `transactions`, `storage`, `cluster`); `client` holds the librdkafka connection options
//! and helpers they share; `node_config` parses a cluster node's configuration.

mod client;
pub mod cluster;
mod cluster_node;
pub mod cluster_state;
mod consume;
mod groups;
mod huge_alloc;
pub mod node_config;
mod offsets;
mod produce;
pub mod serve;
pub mod storage;
mod topics;
mod transactions;

#[global_allocator]
static ALLOC: huge_alloc::LazyHugeAlloc = huge_alloc::LazyHugeAlloc;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use cluster::{cluster, ClusterAction};
use consume::{consume, ConsumeArgs};
use groups::{groups, GroupsAction};
use offsets::{offsets, OffsetsArgs};
use produce::{produce, ProduceArgs};
use serve::{serve, ServeArgs};
use storage::{storage, StorageAction};
use topics::{topics, TopicsAction};
use transactions::{transactions, TransactionsAction};

#[derive(Parser)]
#[command(
    name = "broker",
    version,
    about = "Kafka-compatible broker and command-line client"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker that serves the Kafka protocol.
    Serve(ServeArgs),
    /// Create, list, describe, delete or alter topics.
    Topics {
        #[command(subcommand)]
        action: TopicsAction,
    },
    /// Produce lines from stdin, one record per line.
    Produce(ProduceArgs),
    /// Consume records and print them, one per line.
    Consume(ConsumeArgs),
    /// Print the earliest and latest offset of every partition of a topic.
    Offsets(OffsetsArgs),
    /// List, describe (members, committed offsets, lag) or delete consumer groups.
    Groups {
        #[command(subcommand)]
        action: GroupsAction,
    },
    /// List transactional ids, or describe one (producer, state, partitions).
    Transactions {
        #[command(subcommand)]
        action: TransactionsAction,
    },
    /// Format a cluster node's log directories (meta.properties), show them, or make a
    /// cluster id (Kafka's kafka-storage.sh).
    Storage {
        #[command(subcommand)]
        action: StorageAction,
    },
    /// Start (`up`), stop (`down`) or inspect (`status`) a local cluster of broker processes.
    Cluster {
        #[command(subcommand)]
        action: ClusterAction,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,openraft=warn".into()),
        )
        .with_writer(std::io::stderr)
        // No colour codes in log files and pipes.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(a) => serve(a),
        Command::Topics { action } => topics(action),
        Command::Produce(a) => produce(a),
        Command::Consume(a) => consume(a),
        Command::Offsets(a) => offsets(a),
        Command::Groups { action } => groups(action),
        Command::Transactions { action } => transactions(action),
        Command::Storage { action } => storage(action),
        Command::Cluster { action } => cluster(action),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

pub(crate) type AnyResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

pub(crate) fn split_kv(s: &str) -> AnyResult<(String, String)> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not KEY=VALUE"))?;
    Ok((k.trim().to_string(), v.trim().to_string()))
}

pub(crate) fn runtime() -> AnyResult<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
