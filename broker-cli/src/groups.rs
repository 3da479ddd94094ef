//! `broker groups list|describe|delete`: consumer groups with their state, members and, per
//! partition, committed offset, log end and lag.

use std::time::Duration;

use clap::Subcommand;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::client::{admin, client_config, opts, Conn};
use crate::{runtime, AnyResult};

#[derive(Subcommand)]
pub(crate) enum GroupsAction {
    /// List consumer groups with their state.
    List {
        #[command(flatten)]
        conn: Conn,
    },
    /// Show a group's state, members and, per partition, committed offset, log end and lag.
    Describe {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        group: String,
    },
    /// Delete a group without active members, and its committed offsets.
    Delete {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        group: String,
    },
}

pub(crate) fn groups(action: GroupsAction) -> AnyResult {
    match action {
        GroupsAction::List { conn } => {
            let consumer: BaseConsumer = client_config(&conn).create()?;
            let list = consumer.fetch_group_list(None, Duration::from_millis(conn.timeout_ms))?;
            let mut rows: Vec<(String, String)> = list
                .groups()
                .iter()
                .map(|g| (g.name().to_string(), g.state().to_string()))
                .collect();
            rows.sort();
            println!("group\tstate");
            for (name, state) in rows {
                println!("{name}\t{state}");
            }
        }
        GroupsAction::Describe { conn, group } => {
            let timeout = Duration::from_millis(conn.timeout_ms);
            let consumer: BaseConsumer = client_config(&conn).set("group.id", &group).create()?;
            let list = consumer.fetch_group_list(Some(&group), timeout)?;
            let info = list
                .groups()
                .first()
                .ok_or_else(|| format!("group `{group}` not found"))?;
            println!(
                "Group: {}\tState: {}\tProtocol: {}\tMembers: {}",
                group,
                info.state(),
                info.protocol(),
                info.members().len()
            );
            for m in info.members() {
                println!(
                    "\tMember: {}\tClient: {}\tHost: {}",
                    m.id(),
                    m.client_id(),
                    m.client_host()
                );
            }
            // Committed offsets of every partition of every topic the cluster has.
            let md = consumer.fetch_metadata(None, timeout)?;
            let mut tpl = TopicPartitionList::new();
            for t in md.topics().iter().filter(|t| !t.name().starts_with("__")) {
                for p in t.partitions() {
                    tpl.add_partition(t.name(), p.id());
                }
            }
            let committed = consumer.committed_offsets(tpl, timeout)?;
            println!("topic\tpartition\tcommitted\tlog-end\tlag");
            for e in committed.elements() {
                let Offset::Offset(c) = e.offset() else {
                    continue;
                };
                let (_, hi) = consumer.fetch_watermarks(e.topic(), e.partition(), timeout)?;
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    e.topic(),
                    e.partition(),
                    c,
                    hi,
                    (hi - c).max(0)
                );
            }
        }
        GroupsAction::Delete { conn, group } => {
            let rt = runtime()?;
            let client = admin(&conn)?;
            for r in rt.block_on(client.delete_groups(&[group.as_str()], &opts(&conn)))? {
                r.map_err(|(g, e)| format!("deleting group `{g}` failed: {e}"))?;
            }
            println!("Deleted group {group}.");
        }
    }
    Ok(())
}
