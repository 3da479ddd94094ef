//! Topic and broker configs: DescribeConfigs (with sources and types), AlterConfigs
//! (replace all overrides) and IncrementalAlterConfigs. On a node of a cluster the alterations
//! go to the controller and descriptions come from the cluster's metadata.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResponse, DescribeConfigsResult,
};
use kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AlterConfigsRequest,
    AlterConfigsResponse, DescribeConfigsRequest, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{err_code, s, Context};
use crate::server::ClusterHooks;
use crate::{AlterConfigOp, BrokerError, ConfigSource, LogConfig, TOPIC_CONFIG_KEYS};

fn config_type(key: &str) -> i8 {
    // Kafka's ConfigEntry.ConfigType ids: BOOLEAN 1, STRING 2, INT 3, LONG 5, DOUBLE 6, LIST 7.
    match key {
        "cleanup.policy" => 7,
        "compression.type" | "message.timestamp.type" => 2,
        "min.cleanable.dirty.ratio" => 6,
        "index.interval.bytes"
        | "max.message.bytes"
        | "min.insync.replicas"
        | "segment.bytes"
        | "segment.index.bytes" => 3,
        "unclean.leader.election.enable" => 1,
        _ => 5,
    }
}

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

/// Kafka's `ConfigSource` ids: a topic override, a broker setting from its configuration
/// file (`log.*`), Kafka's default.
const SOURCE_DYNAMIC_TOPIC_CONFIG: i8 = 1;
const SOURCE_STATIC_BROKER_CONFIG: i8 = 4;
const SOURCE_DEFAULT_CONFIG: i8 = 5;

/// Every config of a topic whose overrides are `overrides`, on a broker whose topic defaults
/// are `defaults`: overrides as stored (`DYNAMIC_TOPIC_CONFIG`), the other keys with the
/// broker's value (`STATIC_BROKER_CONFIG` when the broker's configuration changed it from
/// Kafka's default, else `DEFAULT_CONFIG`). A null or empty `keys` means every config.
fn topic_config_entries(
    defaults: &LogConfig,
    overrides: &BTreeMap<String, String>,
    keys: Option<&Vec<StrBytes>>,
) -> Vec<DescribeConfigsResourceResult> {
    let kafka_defaults = LogConfig::default();
    let names: BTreeSet<&str> = TOPIC_CONFIG_KEYS
        .iter()
        .copied()
        .chain(overrides.keys().map(String::as_str))
        .collect();
    names
        .into_iter()
        .filter(|name| {
            keys.is_none_or(|keys| keys.is_empty() || keys.iter().any(|k| k.as_str() == *name))
        })
        .filter_map(|name| {
            let (value, source) = match overrides.get(name) {
                Some(v) => (v.clone(), SOURCE_DYNAMIC_TOPIC_CONFIG),
                None => {
                    let v = defaults.get(name)?;
                    let source = if kafka_defaults.get(name).as_ref() == Some(&v) {
                        SOURCE_DEFAULT_CONFIG
                    } else {
                        SOURCE_STATIC_BROKER_CONFIG
                    };
                    (v, source)
                }
            };
            let mut e = DescribeConfigsResourceResult::default();
            e.config_type = config_type(name);
            e.name = s(name);
            e.value = Some(s(value));
            e.config_source = source;
            Some(e)
        })
        .collect()
}

/// DescribeConfigs. On a node of a cluster topic configs come from the cluster's metadata
/// (`cluster`), so every broker answers the same; on a single broker, from its topics.
pub(super) fn describe_configs(
    ctx: &Context,
    cluster: Option<&ClusterHooks>,
    r: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let b = &ctx.broker;
    let mut resp = DescribeConfigsResponse::default();
    for res in r.resources {
        let mut out = DescribeConfigsResult::default();
        out.resource_type = res.resource_type;
        out.resource_name = res.resource_name.clone();
        let name = res.resource_name.as_str().to_string();
        match res.resource_type {
            RESOURCE_TOPIC => {
                let overrides = match cluster {
                    Some(c) => c.view.topic_configs(&name).ok_or_else(|| {
                        BrokerError::UnknownTopicOrPartition {
                            topic: name.clone(),
                            partition: -1,
                        }
                    }),
                    None => b.topic_configs(&name),
                };
                match overrides {
                    Ok(overrides) => {
                        out.configs = topic_config_entries(
                            &b.config().log_defaults,
                            &overrides,
                            res.configuration_keys.as_ref(),
                        );
                    }
                    Err(e) => {
                        out.error_code = err_code(&e);
                        out.error_message = Some(s(e.to_string()));
                    }
                }
            }
            RESOURCE_BROKER => {
                if name.parse::<i32>().ok() != Some(b.config().node_id) && !name.is_empty() {
                    out.error_code = ResponseError::InvalidRequest.code();
                    out.error_message = Some(s(format!("broker `{name}` is not this broker")));
                }
                // Broker-level settings are not exposed as configs yet: an empty list.
            }
            other => {
                out.error_code = ResponseError::InvalidRequest.code();
                out.error_message = Some(s(format!("resource type {other} is not supported")));
            }
        }
        resp.results.push(out);
    }
    resp
}

/// AlterConfigs on a node of a cluster: forwarded to the controller, which validates the
/// change and writes it to the metadata log; every broker applies it from there (without a
/// controller every resource gets NOT_CONTROLLER).
pub(super) async fn alter_configs_in_cluster(
    hooks: &ClusterHooks,
    r: AlterConfigsRequest,
) -> AlterConfigsResponse {
    match &hooks.admin {
        Some(admin) => admin.alter_configs(r).await,
        None => {
            let mut resp = AlterConfigsResponse::default();
            resp.responses = r
                .resources
                .into_iter()
                .map(|res| {
                    let mut out = alter_configs_response::AlterConfigsResourceResponse::default();
                    out.resource_type = res.resource_type;
                    out.resource_name = res.resource_name;
                    out.error_code = ResponseError::NotController.code();
                    out
                })
                .collect();
            resp
        }
    }
}

/// IncrementalAlterConfigs on a node of a cluster: forwarded to the controller (see
/// [`alter_configs_in_cluster`]).
pub(super) async fn incremental_alter_configs_in_cluster(
    hooks: &ClusterHooks,
    r: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    match &hooks.admin {
        Some(admin) => admin.incremental_alter_configs(r).await,
        None => {
            let mut resp = IncrementalAlterConfigsResponse::default();
            resp.responses = r
                .resources
                .into_iter()
                .map(|res| {
                    let mut out =
                        incremental_alter_configs_response::AlterConfigsResourceResponse::default();
                    out.resource_type = res.resource_type;
                    out.resource_name = res.resource_name;
                    out.error_code = ResponseError::NotController.code();
                    out
                })
                .collect();
            resp
        }
    }
}

pub(super) fn alter_configs(ctx: &Context, r: AlterConfigsRequest) -> AlterConfigsResponse {
    let b = &ctx.broker;
    let mut resp = AlterConfigsResponse::default();
    for res in r.resources {
        let mut out = alter_configs_response::AlterConfigsResourceResponse::default();
        out.resource_type = res.resource_type;
        out.resource_name = res.resource_name.clone();
        let name = res.resource_name.as_str().to_string();
        let outcome = if res.resource_type != RESOURCE_TOPIC {
            Err((
                ResponseError::InvalidRequest.code(),
                "only topic configs can be altered".to_string(),
            ))
        } else {
            let configs: BTreeMap<String, String> = res
                .configs
                .iter()
                .filter_map(|c| {
                    Some((
                        c.name.as_str().to_string(),
                        c.value.as_ref()?.as_str().to_string(),
                    ))
                })
                .collect();
            if r.validate_only {
                b.partition_count(&name)
                    .and_then(|_| {
                        b.config()
                            .log_defaults
                            .resolve(&configs)
                            .map(|_| ())
                            .map_err(Into::into)
                    })
                    .map_err(|e| (err_code(&e), e.to_string()))
            } else {
                b.set_topic_configs(&name, configs)
                    .map_err(|e| (err_code(&e), e.to_string()))
            }
        };
        if let Err((code, msg)) = outcome {
            out.error_code = code;
            out.error_message = Some(s(msg));
        }
        resp.responses.push(out);
    }
    resp
}

pub(super) fn incremental_alter_configs(
    ctx: &Context,
    r: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let b = &ctx.broker;
    let mut resp = IncrementalAlterConfigsResponse::default();
    for res in r.resources {
        let mut out = incremental_alter_configs_response::AlterConfigsResourceResponse::default();
        out.resource_type = res.resource_type;
        out.resource_name = res.resource_name.clone();
        let name = res.resource_name.as_str().to_string();
        let outcome = (|| -> Result<(), (i16, String)> {
            if res.resource_type != RESOURCE_TOPIC {
                return Err((
                    ResponseError::InvalidRequest.code(),
                    "only topic configs can be altered".into(),
                ));
            }
            let current = b
                .describe_topic(&name)
                .map_err(|e| (err_code(&e), e.to_string()))?;
            let mut ops = Vec::new();
            for c in &res.configs {
                let key = c.name.as_str().to_string();
                let value = c.value.as_ref().map(|v| v.as_str().to_string());
                let op = match c.config_operation {
                    0 => AlterConfigOp::Set(key.clone(), value.unwrap_or_default()),
                    1 => AlterConfigOp::Delete(key.clone()),
                    2 | 3 => {
                        if !TOPIC_CONFIG_KEYS.contains(&key.as_str()) {
                            return Err((
                                ResponseError::InvalidConfig.code(),
                                format!("unknown topic config `{key}`"),
                            ));
                        }
                        if config_type(&key) != 7 {
                            return Err((ResponseError::InvalidConfig.code(), format!("`{key}` is not a list; APPEND and SUBTRACT apply to lists only")));
                        }
                        let existing = current
                            .configs
                            .iter()
                            .find(|e| e.name == key)
                            .map(|e| e.value.clone())
                            .unwrap_or_default();
                        let mut items: Vec<String> = existing
                            .split(',')
                            .filter(|x| !x.is_empty())
                            .map(str::to_string)
                            .collect();
                        for v in value
                            .unwrap_or_default()
                            .split(',')
                            .map(str::trim)
                            .filter(|x| !x.is_empty())
                        {
                            if c.config_operation == 2 {
                                if !items.iter().any(|i| i == v) {
                                    items.push(v.to_string());
                                }
                            } else {
                                items.retain(|i| i != v);
                            }
                        }
                        AlterConfigOp::Set(key.clone(), items.join(","))
                    }
                    other => {
                        return Err((
                            ResponseError::InvalidRequest.code(),
                            format!("unknown config operation {other}"),
                        ))
                    }
                };
                ops.push(op);
            }
            if r.validate_only {
                let mut configs: BTreeMap<String, String> = current
                    .configs
                    .iter()
                    .filter(|c| c.source == ConfigSource::TopicOverride)
                    .map(|c| (c.name.clone(), c.value.clone()))
                    .collect();
                for op in &ops {
                    match op {
                        AlterConfigOp::Set(k, v) => {
                            configs.insert(k.clone(), v.clone());
                        }
                        AlterConfigOp::Delete(k) => {
                            configs.remove(k);
                        }
                    }
                }
                return b
                    .config()
                    .log_defaults
                    .resolve(&configs)
                    .map(|_| ())
                    .map_err(|e| {
                        let e: BrokerError = e.into();
                        (err_code(&e), e.to_string())
                    });
            }
            b.alter_topic_configs(&name, &ops)
                .map_err(|e| (err_code(&e), e.to_string()))
        })();
        if let Err((code, msg)) = outcome {
            out.error_code = code;
            out.error_message = Some(s(msg));
        }
        resp.responses.push(out);
    }
    resp
}
