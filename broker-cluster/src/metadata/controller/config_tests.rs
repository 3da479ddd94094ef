//! Unit tests of the AlterConfigs / IncrementalAlterConfigs decisions.

use std::collections::BTreeMap;

use kafka_protocol::messages::{
    alter_configs_request, incremental_alter_configs_request, AlterConfigsRequest,
    IncrementalAlterConfigsRequest,
};
use kafka_protocol::ResponseError;

use super::tests::{s, Harness};
use super::*;

fn cluster() -> Harness {
    let mut h = Harness::new(ControllerConfig::default(), 11);
    for id in 0..3 {
        h.register_and_unfence(id);
    }
    let r = h.create_topic_with("t", 2, 3, &[("retention.ms", "1000")]);
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    h
}

/// (resource type, resource name, [(config, operation, value)]).
type IncrementalResource<'a> = (i8, &'a str, &'a [(&'a str, i8, Option<&'a str>)]);
/// (resource type, resource name, [(config, value)]).
type LegacyResource<'a> = (i8, &'a str, &'a [(&'a str, Option<&'a str>)]);

fn incremental(
    resources: &[IncrementalResource<'_>],
    validate_only: bool,
) -> IncrementalAlterConfigsRequest {
    IncrementalAlterConfigsRequest::default()
        .with_validate_only(validate_only)
        .with_resources(
            resources
                .iter()
                .map(|(t, name, configs)| {
                    incremental_alter_configs_request::AlterConfigsResource::default()
                        .with_resource_type(*t)
                        .with_resource_name(s(name))
                        .with_configs(
                            configs
                                .iter()
                                .map(|(k, op, v)| {
                                    incremental_alter_configs_request::AlterableConfig::default()
                                        .with_name(s(k))
                                        .with_config_operation(*op)
                                        .with_value(v.map(s))
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
}

fn legacy(resources: &[LegacyResource<'_>]) -> AlterConfigsRequest {
    AlterConfigsRequest::default().with_resources(
        resources
            .iter()
            .map(|(t, name, configs)| {
                alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(*t)
                    .with_resource_name(s(name))
                    .with_configs(
                        configs
                            .iter()
                            .map(|(k, v)| {
                                alter_configs_request::AlterableConfig::default()
                                    .with_name(s(k))
                                    .with_value(v.map(s))
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

/// Decides and commits an IncrementalAlterConfigs; returns (code, message) per resource.
fn alter_incremental(h: &mut Harness, req: &IncrementalAlterConfigsRequest) -> Vec<(i16, String)> {
    let (records, resp) = h.state.incremental_alter_configs(req);
    h.commit(records);
    resp.responses
        .iter()
        .map(|r| {
            (
                r.error_code,
                r.error_message
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_default(),
            )
        })
        .collect()
}

fn topic_configs(h: &Harness, topic: &str) -> BTreeMap<String, String> {
    h.image().configs(ConfigResourceType::Topic, topic)
}

const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;
const TOPIC: i8 = RESOURCE_TYPE_TOPIC;

#[test]
fn incremental_set_delete_append_subtract() {
    let mut h = cluster();
    let res = alter_incremental(
        &mut h,
        &incremental(
            &[(
                TOPIC,
                "t",
                &[
                    ("cleanup.policy", SET, Some("compact")),
                    ("max.message.bytes", SET, Some("2048")),
                    ("retention.ms", DELETE, None),
                ],
            )],
            false,
        ),
    );
    assert_eq!(res, vec![(0, String::new())]);
    assert_eq!(
        topic_configs(&h, "t"),
        BTreeMap::from([
            ("cleanup.policy".to_string(), "compact".to_string()),
            ("max.message.bytes".to_string(), "2048".to_string()),
        ])
    );
    // One record per changed key, and the deleted key's record has no value.
    let (_, last) = h.log.last().unwrap();
    assert_eq!(last.len(), 3);
    assert!(last.contains(&MetadataRecord::Config {
        resource_type: ConfigResourceType::Topic,
        resource_name: "t".into(),
        name: "retention.ms".into(),
        value: None,
    }));

    // APPEND to a list, SUBTRACT from it.
    let res = alter_incremental(
        &mut h,
        &incremental(
            &[(TOPIC, "t", &[("cleanup.policy", APPEND, Some("delete"))])],
            false,
        ),
    );
    assert_eq!(res[0].0, 0);
    assert_eq!(
        h.image().topic_config("t", "cleanup.policy"),
        Some("compact,delete")
    );
    let res = alter_incremental(
        &mut h,
        &incremental(
            &[(TOPIC, "t", &[("cleanup.policy", SUBTRACT, Some("compact"))])],
            false,
        ),
    );
    assert_eq!(res[0].0, 0);
    assert_eq!(
        h.image().topic_config("t", "cleanup.policy"),
        Some("delete")
    );

    // APPEND to an unset list starts from its default (delete).
    let r = h.create_topic("u", 1, 1);
    assert_eq!(r.error_code, 0);
    alter_incremental(
        &mut h,
        &incremental(
            &[(TOPIC, "u", &[("cleanup.policy", APPEND, Some("compact"))])],
            false,
        ),
    );
    assert_eq!(
        h.image().topic_config("u", "cleanup.policy"),
        Some("delete,compact")
    );

    // Setting the value already there writes nothing.
    let before = h.log.len();
    let res = alter_incremental(
        &mut h,
        &incremental(
            &[(TOPIC, "t", &[("max.message.bytes", SET, Some("2048"))])],
            false,
        ),
    );
    assert_eq!(res[0].0, 0);
    assert_eq!(h.log.len(), before);

    // The controller's own topic configs are accepted and validated too.
    let res = alter_incremental(
        &mut h,
        &incremental(
            &[(
                TOPIC,
                "t",
                &[("unclean.leader.election.enable", SET, Some("true"))],
            )],
            false,
        ),
    );
    assert_eq!(res[0].0, 0);
    assert!(h.state.unclean_enabled("t"));
}

#[test]
fn incremental_refusals_write_nothing() {
    let mut h = cluster();
    let before = h.log.len();
    let cases: Vec<(IncrementalAlterConfigsRequest, ResponseError, &str)> = vec![
        (
            incremental(&[(TOPIC, "nope", &[("retention.ms", SET, Some("5"))])], false),
            ResponseError::UnknownTopicOrPartition,
            "The topic 'nope' does not exist.",
        ),
        (
            incremental(&[(TOPIC, "t", &[("no.such.config", SET, Some("5"))])], false),
            ResponseError::InvalidConfig,
            "Unknown topic config name: no.such.config",
        ),
        (
            incremental(&[(TOPIC, "t", &[("retention.ms", SET, Some("soon"))])], false),
            ResponseError::InvalidConfig,
            "Invalid value soon for configuration retention.ms: expected a whole number (long)",
        ),
        (
            incremental(&[(TOPIC, "t", &[("min.insync.replicas", SET, Some("0"))])], false),
            ResponseError::InvalidConfig,
            "Invalid value 0 for configuration min.insync.replicas: must be at least 1",
        ),
        (
            incremental(&[(TOPIC, "t", &[("retention.ms", APPEND, Some("5"))])], false),
            ResponseError::InvalidConfig,
            "Can't APPEND to key retention.ms because its type is not LIST.",
        ),
        (
            incremental(&[(TOPIC, "t", &[("retention.ms", SET, None)])], false),
            ResponseError::InvalidRequest,
            "Null value not supported for : retention.ms",
        ),
        (
            incremental(
                &[(
                    TOPIC,
                    "t",
                    &[("retention.ms", SET, Some("1")), ("retention.ms", DELETE, None)],
                )],
                false,
            ),
            ResponseError::InvalidRequest,
            "Error due to duplicate config keys",
        ),
        (
            incremental(&[(TOPIC, "t", &[("retention.ms", 7, Some("1"))])], false),
            ResponseError::InvalidRequest,
            "Unknown operations type 7",
        ),
        (
            incremental(&[(TOPIC, "", &[("retention.ms", SET, Some("1"))])], false),
            ResponseError::InvalidRequest,
            "Default topic resources are not allowed.",
        ),
        (
            incremental(
                &[(RESOURCE_TYPE_BROKER, "1", &[("log.retention.ms", SET, Some("1"))])],
                false,
            ),
            ResponseError::InvalidRequest,
            "Dynamic broker configs are not supported by this cluster: set broker configs in each node's server.properties",
        ),
    ];
    for (req, error, message) in cases {
        let res = alter_incremental(&mut h, &req);
        assert_eq!(res, vec![(error.code(), message.to_string())], "{req:?}");
    }
    // A bad value on an unknown topic is INVALID_CONFIG: values are checked first, as Kafka.
    let res = alter_incremental(
        &mut h,
        &incremental(
            &[(TOPIC, "nope", &[("retention.ms", SET, Some("x"))])],
            false,
        ),
    );
    assert_eq!(res[0].0, ResponseError::InvalidConfig.code());
    assert_eq!(h.log.len(), before, "no refused change reached the log");
    assert_eq!(
        topic_configs(&h, "t"),
        BTreeMap::from([("retention.ms".to_string(), "1000".to_string())])
    );
}

#[test]
fn incremental_validate_only_and_per_resource_outcomes() {
    let mut h = cluster();
    let r = h.create_topic("other", 1, 1);
    assert_eq!(r.error_code, 0);
    let before = h.log.len();
    let res = alter_incremental(
        &mut h,
        &incremental(&[(TOPIC, "t", &[("retention.ms", SET, Some("5"))])], true),
    );
    assert_eq!(res, vec![(0, String::new())]);
    assert_eq!(h.log.len(), before, "validate_only writes nothing");
    assert_eq!(h.image().topic_config("t", "retention.ms"), Some("1000"));

    // One resource fails, the other is applied; a resource named twice fails both times.
    let res = alter_incremental(
        &mut h,
        &incremental(
            &[
                (TOPIC, "t", &[("retention.ms", SET, Some("bad"))]),
                (TOPIC, "other", &[("segment.ms", SET, Some("60000"))]),
            ],
            false,
        ),
    );
    assert_eq!(res[0].0, ResponseError::InvalidConfig.code());
    assert_eq!(res[1].0, 0);
    assert_eq!(h.image().topic_config("other", "segment.ms"), Some("60000"));
    let res = alter_incremental(
        &mut h,
        &incremental(
            &[
                (TOPIC, "other", &[("segment.ms", SET, Some("1"))]),
                (TOPIC, "other", &[("segment.ms", SET, Some("2"))]),
            ],
            false,
        ),
    );
    assert_eq!(
        res,
        vec![
            (
                ResponseError::InvalidRequest.code(),
                "Each resource must appear at most once.".to_string()
            );
            2
        ]
    );
    assert_eq!(h.image().topic_config("other", "segment.ms"), Some("60000"));
}

#[test]
fn legacy_alter_configs_replaces_every_override() {
    let mut h = cluster();
    let (records, resp) = h.state.alter_configs(&legacy(&[(
        TOPIC,
        "t",
        &[
            ("cleanup.policy", Some("compact")),
            ("segment.ms", Some("100")),
        ],
    )]));
    assert_eq!(resp.responses[0].error_code, 0);
    assert_eq!(
        records.len(),
        3,
        "two set, retention.ms removed: {records:?}"
    );
    h.commit(records);
    assert_eq!(
        topic_configs(&h, "t"),
        BTreeMap::from([
            ("cleanup.policy".to_string(), "compact".to_string()),
            ("segment.ms".to_string(), "100".to_string()),
        ])
    );
    // An empty list removes every override.
    let (records, resp) = h.state.alter_configs(&legacy(&[(TOPIC, "t", &[])]));
    assert_eq!(resp.responses[0].error_code, 0);
    h.commit(records);
    assert!(topic_configs(&h, "t").is_empty());

    // Refusals: null values, unknown topics, bad values, validate_only.
    let (records, resp) = h
        .state
        .alter_configs(&legacy(&[(TOPIC, "t", &[("segment.ms", None)])]));
    assert!(records.is_empty());
    assert_eq!(
        resp.responses[0].error_code,
        ResponseError::InvalidRequest.code()
    );
    let (records, resp) =
        h.state
            .alter_configs(&legacy(&[(TOPIC, "gone", &[("segment.ms", Some("5"))])]));
    assert!(records.is_empty());
    assert_eq!(
        resp.responses[0].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
    let (records, resp) = h.state.alter_configs(&legacy(&[(
        TOPIC,
        "t",
        &[("cleanup.policy", Some("shred"))],
    )]));
    assert!(records.is_empty());
    assert_eq!(
        resp.responses[0].error_code,
        ResponseError::InvalidConfig.code()
    );
    let (records, resp) = h.state.alter_configs(
        &legacy(&[(TOPIC, "t", &[("segment.ms", Some("5"))])]).with_validate_only(true),
    );
    assert!(records.is_empty());
    assert_eq!(resp.responses[0].error_code, 0);
    assert_eq!(resp.responses[0].resource_name.as_str(), "t");
    assert_eq!(resp.responses[0].resource_type, TOPIC);
}

#[test]
fn deleting_a_topic_forgets_its_configs() {
    let mut h = cluster();
    let req = DeleteTopicsRequest::default().with_topic_names(vec![TopicName(s("t"))]);
    let (records, _) = h.state.delete_topics(&req);
    h.commit(records);
    let r = h.create_topic("t", 1, 1);
    assert_eq!(r.error_code, 0);
    assert!(topic_configs(&h, "t").is_empty());
}

#[test]
fn create_topics_validates_every_config_as_kafkas_controller() {
    let mut h = cluster();
    let r = h.create_topic_with("unknown-key", 1, 3, &[("no.such.config", "1")]);
    assert_eq!(r.error_code, ResponseError::InvalidConfig.code());
    assert_eq!(
        r.error_message.as_ref().map(|m| m.to_string()).as_deref(),
        Some("Unknown topic config name: no.such.config")
    );
    let r = h.create_topic_with("bad-value", 1, 3, &[("retention.ms", "soon")]);
    assert_eq!(r.error_code, ResponseError::InvalidConfig.code());
    let r = h.create_topic_with("tiered", 1, 3, &[("remote.storage.enable", "true")]);
    assert_eq!(r.error_code, ResponseError::InvalidConfig.code());
    // Kafka's topic configs without an effect here are still accepted, and kept.
    let r = h.create_topic_with(
        "kafka-keys",
        1,
        3,
        &[
            ("preallocate", "true"),
            ("message.timestamp.after.max.ms", "60000"),
        ],
    );
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    assert_eq!(
        h.state.image.topic_config("kafka-keys", "preallocate"),
        Some("true")
    );
    assert!(h.state.image.topic_by_name("unknown-key").is_none());
}
