//! Names of the internal topics, as Kafka Streams builds them. Every place that needs a
//! changelog or repartition topic name asks here.

/// The suffix of repartition topics (`<name>-repartition`).
pub const REPARTITION_TOPIC_SUFFIX: &str = "-repartition";

/// The suffix of changelog topics (`<store>-changelog`).
pub const CHANGELOG_TOPIC_SUFFIX: &str = "-changelog";

/// The changelog topic of store `store`: `<application.id>-<store>-changelog`.
///
/// ```
/// assert_eq!(streams_core::changelog_topic("app", "counts"), "app-counts-changelog");
/// ```
pub fn changelog_topic(application_id: &str, store: &str) -> String {
    format!("{application_id}-{store}{CHANGELOG_TOPIC_SUFFIX}")
}

/// The name a topology gives a repartition topic made for `prefix` (a store, a `Grouped`
/// or `Repartitioned` name): `<prefix>-repartition`, unless it already ends so.
///
/// ```
/// assert_eq!(streams_core::repartition_topic("counts"), "counts-repartition");
/// assert_eq!(streams_core::repartition_topic("x-repartition"), "x-repartition");
/// ```
pub fn repartition_topic(prefix: &str) -> String {
    if prefix.ends_with(REPARTITION_TOPIC_SUFFIX) {
        prefix.to_owned()
    } else {
        format!("{prefix}{REPARTITION_TOPIC_SUFFIX}")
    }
}

/// The name an internal topic of the topology (declared without the application id) has in
/// the cluster: `<application.id>-<topic>`.
pub(crate) fn internal_topic(application_id: &str, topic: &str) -> String {
    format!("{application_id}-{topic}")
}
