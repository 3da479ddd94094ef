//! `broker transactions list|describe`: the transactions the cluster's coordinators know,
//! as Kafka's `kafka-transactions.sh` shows them. librdkafka has no admin call for these, so
//! this speaks the Kafka protocol directly: ListTransactions to every broker of the cluster
//! (from Metadata), DescribeTransactions to the coordinator of the transactional id (from
//! FindCoordinator with key type 1).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::BytesMut;
use clap::Subcommand;
use kafka_protocol::messages::{
    ApiKey, DescribeTransactionsRequest, FindCoordinatorRequest, ListTransactionsRequest,
    MetadataRequest, RequestHeader, ResponseHeader, TransactionalId,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use kafka_protocol::ResponseError;

use crate::client::Conn;
use crate::AnyResult;

#[derive(Subcommand)]
pub(crate) enum TransactionsAction {
    /// List transactional ids with their producer id and transaction state.
    List {
        #[command(flatten)]
        conn: Conn,
        /// Only these states (Empty, Ongoing, PrepareCommit, ...; repeatable).
        #[arg(long = "state")]
        states: Vec<String>,
    },
    /// Show a transactional id's producer, state, timeout, start time and partitions.
    Describe {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        transactional_id: String,
    },
}

/// A blocking connection to one broker.
struct Connection {
    stream: TcpStream,
    correlation_id: i32,
}

const MAX_RESPONSE_BYTES: usize = 64 << 20;

impl Connection {
    fn open(address: &str, timeout: Duration) -> AnyResult<Self> {
        let stream =
            TcpStream::connect(address).map_err(|e| format!("cannot connect to {address}: {e}"))?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(Self {
            stream,
            correlation_id: 0,
        })
    }

    fn call<Req: Request + Encodable>(
        &mut self,
        request: &Req,
        version: i16,
    ) -> AnyResult<Req::Response>
    where
        Req::Response: Decodable,
    {
        let key = ApiKey::try_from(Req::KEY).map_err(|_| "unknown API key")?;
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(Req::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("broker-cli")));
        let mut body = BytesMut::new();
        body.extend_from_slice(&[0; 4]);
        header.encode(&mut body, key.request_header_version(version))?;
        request.encode(&mut body, version)?;
        let size = i32::try_from(body.len() - 4)?;
        body[..4].copy_from_slice(&size.to_be_bytes());
        self.stream.write_all(&body)?;
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len)?;
        let len = usize::try_from(i32::from_be_bytes(len))
            .ok()
            .filter(|l| (4..=MAX_RESPONSE_BYTES).contains(l))
            .ok_or("response size out of range")?;
        let mut frame = vec![0u8; len];
        self.stream.read_exact(&mut frame)?;
        let mut buf = bytes::Bytes::from(frame);
        let rh = ResponseHeader::decode(&mut buf, key.response_header_version(version))?;
        if rh.correlation_id != self.correlation_id {
            return Err("response to another request".into());
        }
        Ok(Req::Response::decode(&mut buf, version)?)
    }
}

fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        Some(e) => format!("{e:?}"),
        None => format!("error code {code}"),
    }
}

pub(crate) fn transactions(action: TransactionsAction) -> AnyResult {
    match action {
        TransactionsAction::List { conn, states } => {
            let timeout = Duration::from_millis(conn.timeout_ms);
            let mut bootstrap = Connection::open(&conn.bootstrap_server, timeout)?;
            let md =
                bootstrap.call(&MetadataRequest::default().with_topics(Some(Vec::new())), 4)?;
            let mut rows = Vec::new();
            for b in md.brokers {
                let address = format!("{}:{}", b.host.as_str(), b.port);
                let mut c = Connection::open(&address, timeout)?;
                let req = ListTransactionsRequest::default()
                    .with_state_filters(
                        states
                            .iter()
                            .map(|s| StrBytes::from_string(s.clone()))
                            .collect(),
                    )
                    .with_duration_filter(-1);
                let resp = c.call(&req, 0)?;
                if resp.error_code != 0 {
                    return Err(format!("broker {address}: {}", error_name(resp.error_code)).into());
                }
                for unknown in &resp.unknown_state_filters {
                    eprintln!("unknown state filter `{}`", unknown.as_str());
                }
                for t in resp.transaction_states {
                    rows.push((
                        t.transactional_id.0.as_str().to_string(),
                        b.node_id.0,
                        t.producer_id.0,
                        t.transaction_state.as_str().to_string(),
                    ));
                }
            }
            rows.sort();
            println!("TransactionalId\tCoordinator\tProducerId\tTransactionState");
            for (id, coordinator, pid, state) in rows {
                println!("{id}\t{coordinator}\t{pid}\t{state}");
            }
        }
        TransactionsAction::Describe {
            conn,
            transactional_id,
        } => {
            let timeout = Duration::from_millis(conn.timeout_ms);
            let mut bootstrap = Connection::open(&conn.bootstrap_server, timeout)?;
            let fc = bootstrap.call(
                &FindCoordinatorRequest::default()
                    .with_key(StrBytes::from_string(transactional_id.clone()))
                    .with_key_type(1),
                3,
            )?;
            if fc.error_code != 0 {
                return Err(format!("FindCoordinator: {}", error_name(fc.error_code)).into());
            }
            let address = format!("{}:{}", fc.host.as_str(), fc.port);
            let mut c = Connection::open(&address, timeout)?;
            let resp = c.call(
                &DescribeTransactionsRequest::default().with_transactional_ids(vec![
                    TransactionalId(StrBytes::from_string(transactional_id.clone())),
                ]),
                0,
            )?;
            let st = resp
                .transaction_states
                .into_iter()
                .next()
                .ok_or("empty DescribeTransactions response")?;
            if st.error_code != 0 {
                return Err(format!(
                    "transactional id `{transactional_id}`: {}",
                    error_name(st.error_code)
                )
                .into());
            }
            let mut partitions: Vec<String> = st
                .topics
                .iter()
                .flat_map(|t| {
                    t.partitions
                        .iter()
                        .map(move |p| format!("{}-{p}", t.topic.0.as_str()))
                })
                .collect();
            partitions.sort();
            println!("CoordinatorId\tTransactionalId\tProducerId\tProducerEpoch\tTransactionState\tTransactionTimeoutMs\tCurrentTransactionStartTimeMs\tTopicPartitions");
            println!(
                "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                fc.node_id.0,
                transactional_id,
                st.producer_id.0,
                st.producer_epoch,
                st.transaction_state.as_str(),
                st.transaction_timeout_ms,
                st.transaction_start_time_ms,
                partitions.join(",")
            );
        }
    }
    Ok(())
}
