//! Metadata (with topic auto-creation) and topic administration: CreateTopics, DeleteTopics,
//! CreatePartitions.

use kafka_protocol::messages::create_partitions_response::{
    CreatePartitionsResponse, CreatePartitionsTopicResult,
};
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult, CreateTopicsResponse,
};
use kafka_protocol::messages::delete_topics_response::{
    DeletableTopicResult, DeleteTopicsResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponse, MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest, MetadataRequest,
    TopicName,
};
use kafka_protocol::ResponseError;
use tracing::{debug, info};

use super::{err_code, s, Context};
use crate::{BrokerError, ConfigSource, NewTopic};

/// Creates a topic on first use when the broker allows it (`auto.create.topics.enable`).
pub(super) fn auto_create(ctx: &Context, name: &str) -> Result<(), BrokerError> {
    let b = &ctx.broker;
    if b.topic_exists(name) {
        return Ok(());
    }
    if !b.config().auto_create_topics_enable {
        return Err(BrokerError::UnknownTopicOrPartition {
            topic: name.to_string(),
            partition: -1,
        });
    }
    match b.create_topic(NewTopic::new(name, b.config().num_partitions.max(1))) {
        Ok(_) => {
            info!(topic = name, "auto-created topic");
            Ok(())
        }
        Err(BrokerError::TopicAlreadyExists(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

fn topic_metadata(ctx: &Context, name: &str, error: Option<i16>) -> MetadataResponseTopic {
    let mut t = MetadataResponseTopic::default();
    t.name = Some(TopicName(s(name)));
    t.is_internal = name.starts_with("__");
    if let Some(code) = error {
        t.error_code = code;
        return t;
    }
    match ctx.broker.describe_topic(name) {
        Ok(d) => {
            t.topic_id = d.topic_id;
            t.partitions = d
                .partitions
                .iter()
                .map(|p| {
                    let mut mp = MetadataResponsePartition::default();
                    mp.partition_index = p.partition;
                    mp.leader_id = BrokerId(p.leader);
                    mp.leader_epoch = 0;
                    mp.replica_nodes = p.replicas.iter().map(|r| BrokerId(*r)).collect();
                    mp.isr_nodes = p.isr.iter().map(|r| BrokerId(*r)).collect();
                    mp
                })
                .collect();
        }
        Err(e) => t.error_code = err_code(&e),
    }
    t
}

pub(super) fn metadata(ctx: &Context, r: MetadataRequest, version: i16) -> MetadataResponse {
    let b = &ctx.broker;
    let mut resp = MetadataResponse::default();
    let mut broker = MetadataResponseBroker::default();
    broker.node_id = BrokerId(b.config().node_id);
    broker.host = s(ctx.endpoint.host.clone());
    broker.port = ctx.endpoint.port;
    resp.brokers = vec![broker];
    resp.cluster_id = Some(s(b.cluster_id()));
    resp.controller_id = BrokerId(b.config().node_id);
    let allow_create = version < 4 || r.allow_auto_topic_creation;
    resp.topics = match r.topics {
        None => b
            .list_topics()
            .iter()
            .map(|t| topic_metadata(ctx, t, None))
            .collect(),
        Some(requested) => requested
            .into_iter()
            .map(|t| {
                let Some(name) = t.name.map(|n| n.0.as_str().to_string()) else {
                    let mut mt = MetadataResponseTopic::default();
                    mt.topic_id = t.topic_id;
                    mt.error_code = ResponseError::UnknownTopicId.code();
                    return mt;
                };
                if let Err(reason) = crate::validate_topic_name(&name) {
                    debug!(topic = name, %reason, "metadata for an invalid topic name");
                    return topic_metadata(
                        ctx,
                        &name,
                        Some(ResponseError::InvalidTopicException.code()),
                    );
                }
                if !b.topic_exists(&name) {
                    let created = if allow_create {
                        auto_create(ctx, &name)
                    } else {
                        Err(BrokerError::UnknownTopicOrPartition {
                            topic: name.clone(),
                            partition: -1,
                        })
                    };
                    if let Err(e) = created {
                        return topic_metadata(ctx, &name, Some(err_code(&e)));
                    }
                }
                topic_metadata(ctx, &name, None)
            })
            .collect(),
    };
    resp
}

pub(super) fn create_topics(ctx: &Context, r: CreateTopicsRequest) -> CreateTopicsResponse {
    let b = &ctx.broker;
    let mut resp = CreateTopicsResponse::default();
    for t in r.topics {
        let name = t.name.0.as_str().to_string();
        let mut res = CreatableTopicResult::default();
        res.name = t.name.clone();
        res.num_partitions = -1;
        res.replication_factor = -1;
        let mut new = NewTopic::new(name.clone(), 0);
        new.partitions = if t.num_partitions == -1 {
            if t.assignments.is_empty() {
                b.config().num_partitions
            } else {
                t.assignments.len() as u32
            }
        } else {
            t.num_partitions.max(0) as u32
        };
        new.replication_factor = if t.replication_factor == -1 && !t.assignments.is_empty() {
            t.assignments[0].broker_ids.len() as i16
        } else {
            t.replication_factor
        };
        let mut bad_assignment = None;
        for a in &t.assignments {
            if a.broker_ids.iter().any(|id| id.0 != b.config().node_id) {
                bad_assignment = Some(format!(
                    "partition {} is assigned to a broker that does not exist",
                    a.partition_index
                ));
            }
        }
        for c in &t.configs {
            if let Some(v) = &c.value {
                new.configs
                    .insert(c.name.as_str().to_string(), v.as_str().to_string());
            }
        }
        let outcome = if let Some(msg) = bad_assignment {
            Err((ResponseError::InvalidReplicaAssignment.code(), msg))
        } else if r.validate_only {
            b.validate_new_topic(&new)
                .map(|_| uuid::Uuid::nil())
                .map_err(|e| (err_code(&e), e.to_string()))
        } else {
            b.create_topic(new.clone())
                .map_err(|e| (err_code(&e), e.to_string()))
        };
        match outcome {
            Ok(id) => {
                res.topic_id = id;
                res.num_partitions = new.partitions as i32;
                res.replication_factor = if new.replication_factor == -1 {
                    1
                } else {
                    new.replication_factor
                };
                if let Ok(d) = b.describe_topic(&name) {
                    res.configs = Some(
                        d.configs
                            .into_iter()
                            .map(|c| {
                                let mut cc = CreatableTopicConfigs::default();
                                cc.name = s(c.name);
                                cc.value = Some(s(c.value));
                                cc.config_source = if c.source == ConfigSource::TopicOverride {
                                    1
                                } else {
                                    5
                                };
                                cc
                            })
                            .collect(),
                    );
                }
            }
            Err((code, msg)) => {
                res.error_code = code;
                res.error_message = Some(s(msg));
            }
        }
        resp.topics.push(res);
    }
    resp
}

pub(super) fn delete_topics(
    ctx: &Context,
    r: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    let b = &ctx.broker;
    let mut resp = DeleteTopicsResponse::default();
    let names: Vec<(Option<String>, uuid::Uuid)> = if version >= 6 {
        r.topics
            .into_iter()
            .map(|t| (t.name.map(|n| n.0.as_str().to_string()), t.topic_id))
            .collect()
    } else {
        r.topic_names
            .into_iter()
            .map(|n| (Some(n.0.as_str().to_string()), uuid::Uuid::nil()))
            .collect()
    };
    for (name, id) in names {
        let mut res = DeletableTopicResult::default();
        res.topic_id = id;
        let name = name.or_else(|| {
            b.list_topics()
                .into_iter()
                .find(|t| b.topic_id(t).is_ok_and(|tid| tid == id))
        });
        match name {
            None => res.error_code = ResponseError::UnknownTopicId.code(),
            Some(name) => {
                res.name = Some(TopicName(s(name.clone())));
                if let Ok(tid) = b.topic_id(&name) {
                    res.topic_id = tid;
                }
                if let Err(e) = b.delete_topic(&name) {
                    res.error_code = err_code(&e);
                    res.error_message = Some(s(e.to_string()));
                }
            }
        }
        resp.responses.push(res);
    }
    resp
}

pub(super) fn create_partitions(
    ctx: &Context,
    r: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let b = &ctx.broker;
    let mut resp = CreatePartitionsResponse::default();
    for t in r.topics {
        let name = t.name.0.as_str().to_string();
        let mut res = CreatePartitionsTopicResult::default();
        res.name = t.name.clone();
        let outcome = if t.count <= 0 {
            Err(BrokerError::InvalidPartitions(format!(
                "{} is not a valid partition count",
                t.count
            )))
        } else if r.validate_only {
            b.partition_count(&name).and_then(|n| {
                if (t.count as u32) > n {
                    Ok(())
                } else {
                    Err(BrokerError::InvalidPartitions(format!(
                        "topic `{name}` has {n} partitions; the new count must be larger"
                    )))
                }
            })
        } else {
            b.create_partitions(&name, t.count as u32)
        };
        if let Err(e) = outcome {
            res.error_code = err_code(&e);
            res.error_message = Some(s(e.to_string()));
        }
        resp.results.push(res);
    }
    resp
}
