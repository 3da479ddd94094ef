//! AlterConfigs and IncrementalAlterConfigs for topics: the checks Kafka's forwarding broker
//! makes (`ConfigAdminManager.preprocess`), its controller's validation
//! (`ControllerConfigurationValidator`, `LogConfig.validate`, the existence check) and the
//! `ConfigRecord`s of `ConfigurationControlManager` (one per key whose value changes; a value
//! of `None` removes the override).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use broker_embedded::{ConfigError, LogConfig};
use kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AlterConfigsRequest,
    AlterConfigsResponse, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tracing::info;

use super::{
    str_bytes, validate_topic_config, validate_topic_name, ApiError, ControllerState,
    UNCLEAN_LEADER_ELECTION_ENABLE_CONFIG,
};
use crate::metadata::records::{ConfigResourceType, MetadataRecord};

/// Kafka's `ConfigResource.Type` id of topics.
pub const RESOURCE_TYPE_TOPIC: i8 = 2;
/// Kafka's `ConfigResource.Type` id of brokers.
pub const RESOURCE_TYPE_BROKER: i8 = 4;

/// IncrementalAlterConfigs operations (Kafka's `AlterConfigOp.OpType` ids).
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// Topic configs of type LIST (the ones APPEND and SUBTRACT apply to) among those known here.
const LIST_TOPIC_CONFIGS: &[&str] = &["cleanup.policy"];

/// Topic configs only the controller reads (the partition logs do not know them).
const CONTROLLER_TOPIC_CONFIGS: &[&str] = &[UNCLEAN_LEADER_ELECTION_ENABLE_CONFIG];

/// Checks a topic's complete set of overrides as Kafka's `LogConfig.validate` does: every name
/// must be a topic config, every value must parse and be in range. The message is Kafka's.
pub fn validate_topic_configs(configs: &BTreeMap<String, String>) -> Result<(), String> {
    let mut log = LogConfig::default();
    for (name, value) in configs {
        if CONTROLLER_TOPIC_CONFIGS.contains(&name.as_str()) {
            validate_topic_config(name, value)?;
            continue;
        }
        log.set(name, value).map_err(|e| match e {
            ConfigError::UnknownKey(k) => format!("Unknown topic config name: {k}"),
            ConfigError::InvalidValue { key, value, reason } => {
                format!("Invalid value {value} for configuration {key}: {reason}")
            }
        })?;
    }
    Ok(())
}

/// One resource of either request, as the shared decision sees it.
struct ResourceChange<'a> {
    resource_type: i8,
    resource_name: &'a str,
    /// Config names in request order (duplicates are refused).
    names: Vec<&'a str>,
}

impl ControllerState {
    /// AlterConfigs (Kafka's legacy API): each resource's overrides become exactly the given
    /// ones (overrides not given are removed). Topic resources only; `validate_only` returns the
    /// results without records.
    pub fn alter_configs(
        &self,
        request: &AlterConfigsRequest,
    ) -> (Vec<MetadataRecord>, AlterConfigsResponse) {
        let duplicates = duplicate_resources(
            request
                .resources
                .iter()
                .map(|r| (r.resource_type, r.resource_name.as_str())),
        );
        let mut records = Vec::new();
        let mut responses = Vec::with_capacity(request.resources.len());
        for r in &request.resources {
            let change = ResourceChange {
                resource_type: r.resource_type,
                resource_name: r.resource_name.as_str(),
                names: r.configs.iter().map(|c| c.name.as_str()).collect(),
            };
            let outcome = self
                .check_resource(&change, &duplicates, |i| {
                    r.configs.get(i).is_some_and(|c| c.value.is_none())
                })
                .and_then(|()| {
                    let wanted: BTreeMap<String, String> = r
                        .configs
                        .iter()
                        .filter_map(|c| {
                            Some((c.name.as_str().to_string(), c.value.as_ref()?.to_string()))
                        })
                        .collect();
                    self.topic_config_records(change.resource_name, wanted)
                });
            let mut response = alter_configs_response::AlterConfigsResourceResponse::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            if let Some((code, message)) = collect_outcome(
                &mut records,
                change.resource_name,
                request.validate_only,
                "AlterConfigs",
                outcome,
            ) {
                response = response.with_error_code(code).with_error_message(message);
            }
            responses.push(response);
        }
        if request.validate_only {
            records.clear();
        }
        (
            records,
            AlterConfigsResponse::default().with_responses(responses),
        )
    }

    /// IncrementalAlterConfigs: SET, DELETE, and APPEND / SUBTRACT for list configs (an unset
    /// list starts from its default), on topic resources; `validate_only` returns the results
    /// without records.
    pub fn incremental_alter_configs(
        &self,
        request: &IncrementalAlterConfigsRequest,
    ) -> (Vec<MetadataRecord>, IncrementalAlterConfigsResponse) {
        let duplicates = duplicate_resources(
            request
                .resources
                .iter()
                .map(|r| (r.resource_type, r.resource_name.as_str())),
        );
        let mut records = Vec::new();
        let mut responses = Vec::with_capacity(request.resources.len());
        for r in &request.resources {
            let change = ResourceChange {
                resource_type: r.resource_type,
                resource_name: r.resource_name.as_str(),
                names: r.configs.iter().map(|c| c.name.as_str()).collect(),
            };
            let outcome = self
                .check_resource(&change, &duplicates, |i| {
                    r.configs
                        .get(i)
                        .is_some_and(|c| c.config_operation != OP_DELETE && c.value.is_none())
                })
                .and_then(|()| {
                    let topic = change.resource_name;
                    let mut wanted = self
                        .image
                        .configs(ConfigResourceType::Topic, topic)
                        .into_iter()
                        .collect::<BTreeMap<_, _>>();
                    for c in &r.configs {
                        let key = c.name.as_str();
                        let value = c.value.as_ref().map(StrBytes::as_str).unwrap_or_default();
                        match c.config_operation {
                            OP_SET => {
                                wanted.insert(key.to_string(), value.to_string());
                            }
                            OP_DELETE => {
                                wanted.remove(key);
                            }
                            op @ (OP_APPEND | OP_SUBTRACT) => {
                                let op_name = if op == OP_APPEND { "APPEND" } else { "SUBTRACT" };
                                if !LIST_TOPIC_CONFIGS.contains(&key) {
                                    return Err(ApiError::new(
                                        ResponseError::InvalidConfig,
                                        format!("Can't {op_name} to key {key} because its type is not LIST."),
                                    ));
                                }
                                let current = wanted
                                    .get(key)
                                    .cloned()
                                    .or_else(|| LogConfig::default().get(key))
                                    .unwrap_or_default();
                                let mut items: Vec<String> = current
                                    .split(',')
                                    .filter(|x| !x.is_empty())
                                    .map(str::to_string)
                                    .collect();
                                for v in value.split(',').filter(|x| !x.is_empty()) {
                                    if op == OP_APPEND {
                                        if !items.iter().any(|i| i == v) {
                                            items.push(v.to_string());
                                        }
                                    } else {
                                        items.retain(|i| i != v);
                                    }
                                }
                                wanted.insert(key.to_string(), items.join(","));
                            }
                            other => {
                                return Err(ApiError::new(
                                    ResponseError::InvalidRequest,
                                    format!("Unknown operations type {other}"),
                                ))
                            }
                        }
                    }
                    self.topic_config_records(topic, wanted)
                });
            let mut response =
                incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                    .with_resource_type(r.resource_type)
                    .with_resource_name(r.resource_name.clone());
            if let Some((code, message)) = collect_outcome(
                &mut records,
                change.resource_name,
                request.validate_only,
                "IncrementalAlterConfigs",
                outcome,
            ) {
                response = response.with_error_code(code).with_error_message(message);
            }
            responses.push(response);
        }
        if request.validate_only {
            records.clear();
        }
        (
            records,
            IncrementalAlterConfigsResponse::default().with_responses(responses),
        )
    }

    /// The checks shared by both APIs, in Kafka's order: duplicate resources and keys, null
    /// values (`is_null(i)` for the i-th config), the resource type (topics only here) and the
    /// topic name.
    fn check_resource(
        &self,
        change: &ResourceChange<'_>,
        duplicates: &BTreeSet<(i8, String)>,
        is_null: impl Fn(usize) -> bool,
    ) -> Result<(), ApiError> {
        if duplicates.contains(&(change.resource_type, change.resource_name.to_string())) {
            return Err(ApiError::new(
                ResponseError::InvalidRequest,
                "Each resource must appear at most once.",
            ));
        }
        let mut seen = BTreeSet::new();
        if !change.names.iter().all(|n| seen.insert(*n)) {
            return Err(ApiError::new(
                ResponseError::InvalidRequest,
                "Error due to duplicate config keys",
            ));
        }
        let nulls: Vec<&str> = change
            .names
            .iter()
            .enumerate()
            .filter(|(i, _)| is_null(*i))
            .map(|(_, n)| *n)
            .collect();
        if !nulls.is_empty() {
            return Err(ApiError::new(
                ResponseError::InvalidRequest,
                format!("Null value not supported for : {}", nulls.join(", ")),
            ));
        }
        match change.resource_type {
            RESOURCE_TYPE_TOPIC => {}
            RESOURCE_TYPE_BROKER => {
                return Err(ApiError::new(
                    ResponseError::InvalidRequest,
                    "Dynamic broker configs are not supported by this cluster: set broker configs in each node's server.properties",
                ))
            }
            other => {
                return Err(ApiError::new(
                    ResponseError::InvalidRequest,
                    format!("Unknown resource type {other}"),
                ))
            }
        }
        let name = change.resource_name;
        if name.is_empty() {
            return Err(ApiError::new(
                ResponseError::InvalidRequest,
                "Default topic resources are not allowed.",
            ));
        }
        validate_topic_name(name)
            .map_err(|m| ApiError::new(ResponseError::InvalidTopicException, m))
    }

    /// The records that make `wanted` the overrides of `topic`, after validating them and
    /// checking that the topic exists (in that order, as Kafka).
    fn topic_config_records(
        &self,
        topic: &str,
        wanted: BTreeMap<String, String>,
    ) -> Result<Vec<MetadataRecord>, ApiError> {
        validate_topic_configs(&wanted)
            .map_err(|m| ApiError::new(ResponseError::InvalidConfig, m))?;
        if self.image.topic_id(topic).is_none() {
            return Err(ApiError::new(
                ResponseError::UnknownTopicOrPartition,
                format!("The topic '{topic}' does not exist."),
            ));
        }
        let current = self.image.configs(ConfigResourceType::Topic, topic);
        let record = |name: &str, value: Option<String>| MetadataRecord::Config {
            resource_type: ConfigResourceType::Topic,
            resource_name: topic.to_string(),
            name: name.to_string(),
            value,
        };
        let mut records: Vec<MetadataRecord> = wanted
            .iter()
            .filter(|(k, v)| current.get(*k) != Some(*v))
            .map(|(k, v)| record(k, Some(v.clone())))
            .collect();
        records.extend(
            current
                .keys()
                .filter(|k| !wanted.contains_key(*k))
                .map(|k| record(k, None)),
        );
        Ok(records)
    }
}

/// The (type, name) pairs that appear more than once in a request.
fn duplicate_resources<'a>(
    resources: impl Iterator<Item = (i8, &'a str)>,
) -> BTreeSet<(i8, String)> {
    let mut counts: HashMap<(i8, &str), usize> = HashMap::new();
    for r in resources {
        *counts.entry(r).or_default() += 1;
    }
    counts
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|((t, n), _)| (t, n.to_string()))
        .collect()
}

/// Adds a resource's records to `records` (logging the change), or returns the error code and
/// message of its refusal (logged), for either AlterConfigs API.
fn collect_outcome(
    records: &mut Vec<MetadataRecord>,
    resource: &str,
    validate_only: bool,
    api: &str,
    outcome: Result<Vec<MetadataRecord>, ApiError>,
) -> Option<(i16, Option<StrBytes>)> {
    match outcome {
        Ok(rs) => {
            if !rs.is_empty() {
                info!(
                    topic = resource,
                    changes = rs.len(),
                    validate_only,
                    "altering topic configs"
                );
            }
            records.extend(rs);
            None
        }
        Err(e) => {
            info!(resource, error = ?e.error, message = ?e.message, api, "config change refused");
            Some((e.error.code(), e.message.map(str_bytes)))
        }
    }
}
