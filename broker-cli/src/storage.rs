//! Storage formatting as Kafka's `kafka-storage.sh`: each log directory of a cluster node holds
//! Kafka's `meta.properties` (version 1: `cluster.id`, `node.id`, `directory.id`), written
//! atomically and durably through [`durable_fs`]. A node refuses a directory formatted for
//! another cluster or another node.
//!
//! Also the `broker storage format|info|random-uuid` subcommands.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use clap::Subcommand;
use durable_fs::{OsStorage, Storage};

use crate::node_config::{NodeConfig, NodeConfigError, RawProperties};
use crate::AnyResult;

/// The file name of Kafka's per-directory metadata.
pub const META_PROPERTIES_FILE: &str = "meta.properties";

/// The only `meta.properties` version of KRaft nodes.
pub const META_PROPERTIES_VERSION: u32 = 1;

/// Formatting or checking a data directory failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An I/O error on a path.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// `meta.properties` does not parse.
    #[error("Error loading {path}: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// `meta.properties` of another version than 1.
    #[error(
        "{path} has version {version}; only version 1 (KRaft) is supported (a version 0 file \
         belongs to a ZooKeeper-mode broker)"
    )]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// Its version.
        version: u32,
    },
    /// A directory without `meta.properties` and no cluster id to format it with.
    #[error(
        "{dir} is not formatted: set CLUSTER_ID or pass --cluster-id to format it on start, or \
         run `broker storage format --cluster-id <id>` (`broker storage random-uuid` makes one)"
    )]
    NotFormatted {
        /// The directory.
        dir: PathBuf,
    },
    /// The directory belongs to another cluster.
    #[error("Invalid cluster.id in: {path}. Expected {expected}, but read {found}")]
    ClusterIdMismatch {
        /// The `meta.properties` file.
        path: PathBuf,
        /// The configured cluster id.
        expected: String,
        /// The stored cluster id.
        found: String,
    },
    /// The directory belongs to another node.
    #[error(
        "Stored node id {found} doesn't match the configured node id {expected} in {path}. If \
         you moved your data, make sure your configured node id matches. If you intend to \
         create a new node, you should remove all data in your data directories."
    )]
    NodeIdMismatch {
        /// The `meta.properties` file.
        path: PathBuf,
        /// The configured node id.
        expected: i32,
        /// The stored node id.
        found: i32,
    },
    /// `format` found a formatted directory without `--ignore-formatted`.
    #[error(
        "Log directory {0} is already formatted. Use --ignore-formatted to ignore this \
         directory and format the others."
    )]
    AlreadyFormatted(PathBuf),
    /// A cluster id that cannot be stored.
    #[error("invalid cluster id `{0}`: it must be non-empty, without spaces, `=`, `:`, `#`, `!` or `\\`")]
    InvalidClusterId(String),
    /// No directory to format.
    #[error("You must specify at least one directory to format")]
    NoDirectories,
    /// `format` given a single-node configuration (no `process.roles`).
    #[error(
        "The configuration file {0} appears to be for a single-node broker (no \
         process.roles). Formatting is only supported for cluster nodes."
    )]
    SingleNodeConfig(PathBuf),
    /// The node configuration was rejected.
    #[error(transparent)]
    Config(#[from] NodeConfigError),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The content of a version-1 `meta.properties`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaProperties {
    /// `cluster.id`.
    pub cluster_id: String,
    /// `node.id`.
    pub node_id: i32,
    /// `directory.id` (Kafka's base64 UUID of this log directory).
    pub directory_id: Option<String>,
}

impl MetaProperties {
    /// Renders the file as Java's `Properties.store` does (an empty comment line, a date
    /// comment, then `key=value` lines; ours sorted by key).
    pub fn to_file_text(&self, now: SystemTime) -> String {
        let mut props = BTreeMap::new();
        props.insert("version", META_PROPERTIES_VERSION.to_string());
        props.insert("cluster.id", self.cluster_id.clone());
        props.insert("node.id", self.node_id.to_string());
        if let Some(d) = &self.directory_id {
            props.insert("directory.id", d.clone());
        }
        let mut out = format!("#\n#{}\n", java_date(now));
        for (k, v) in props {
            out.push_str(k);
            out.push('=');
            out.push_str(&v);
            out.push('\n');
        }
        out
    }

    /// Parses a `meta.properties` file (`path` only names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<MetaProperties, StorageError> {
        let malformed = |reason: String| StorageError::Malformed {
            path: path.to_path_buf(),
            reason,
        };
        let mut props = BTreeMap::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let (k, v) = line
                .split_once(['=', ':'])
                .ok_or_else(|| malformed(format!("`{line}` is not key=value")))?;
            props.insert(k.trim().to_string(), v.trim().to_string());
        }
        let version = match props.get("version") {
            None => 0,
            Some(v) => v
                .parse()
                .map_err(|_| malformed(format!("version `{v}` is not a number")))?,
        };
        if version != META_PROPERTIES_VERSION {
            return Err(StorageError::UnsupportedVersion {
                path: path.to_path_buf(),
                version,
            });
        }
        let cluster_id = props
            .get("cluster.id")
            .cloned()
            .ok_or_else(|| malformed("cluster.id was not found.".into()))?;
        let node_id = props
            .get("node.id")
            .ok_or_else(|| malformed("node.id was not found.".into()))?;
        let node_id = node_id
            .parse()
            .map_err(|_| malformed("Unable to read node.id as a base-10 number.".into()))?;
        let directory_id = props.get("directory.id").cloned();
        if let Some(d) = &directory_id {
            if decode_uuid(d).is_none() {
                return Err(malformed(format!(
                    "Unable to read directory.id as a Uuid: `{d}`"
                )));
            }
        }
        Ok(MetaProperties {
            cluster_id,
            node_id,
            directory_id,
        })
    }
}

/// Java's `Date.toString()` in UTC: `EEE MMM dd HH:mm:ss zzz yyyy`.
fn java_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let wd = WEEKDAYS[usize::try_from(days.rem_euclid(7)).unwrap_or(0)];
    let mon = MONTHS[usize::try_from(month - 1).unwrap_or(0)];
    format!(
        "{wd} {mon} {day:02} {:02}:{:02}:{:02} UTC {year}",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// A random UUID as Kafka prints it (`Uuid.randomUuid().toString()`): 16 random bytes (a
/// type-4 UUID) in URL-safe base64 without padding, 22 characters, never starting with `-`.
pub fn random_uuid() -> String {
    loop {
        let s = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(uuid::Uuid::new_v4().as_bytes());
        if !s.starts_with('-') {
            return s;
        }
    }
}

fn decode_uuid(s: &str) -> Option<[u8; 16]> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .ok()?;
    bytes.try_into().ok()
}

fn validate_cluster_id(id: &str) -> Result<(), StorageError> {
    let bad = id.is_empty()
        || id
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "=:#!\\".contains(c));
    if bad {
        return Err(StorageError::InvalidClusterId(id.to_string()));
    }
    Ok(())
}

/// Reads `<dir>/meta.properties`; `None` when the directory or the file does not exist.
pub fn read_meta_properties(
    storage: &dyn Storage,
    dir: &Path,
) -> Result<Option<MetaProperties>, StorageError> {
    let path = dir.join(META_PROPERTIES_FILE);
    match storage.read(&path) {
        Ok(bytes) => {
            let text = String::from_utf8(bytes).map_err(|_| StorageError::Malformed {
                path: path.clone(),
                reason: "not UTF-8".into(),
            })?;
            MetaProperties::parse(&text, &path).map(Some)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(&path)(e)),
    }
}

/// Writes `<dir>/meta.properties` atomically and durably (creating the directory).
pub fn write_meta_properties(
    storage: &dyn Storage,
    dir: &Path,
    meta: &MetaProperties,
) -> Result<(), StorageError> {
    durable_fs::create_dir_all_durable(storage, dir).map_err(io_err(dir))?;
    let path = dir.join(META_PROPERTIES_FILE);
    durable_fs::write_atomic(
        storage,
        &path,
        meta.to_file_text(SystemTime::now()).as_bytes(),
    )
    .map_err(io_err(&path))
}

/// Checks a stored `meta.properties` against the configured ids (the cluster id only when
/// one is given).
fn check(
    dir: &Path,
    meta: &MetaProperties,
    cluster_id: Option<&str>,
    node_id: i32,
) -> Result<(), StorageError> {
    let path = dir.join(META_PROPERTIES_FILE);
    if let Some(expected) = cluster_id {
        if meta.cluster_id != expected {
            return Err(StorageError::ClusterIdMismatch {
                path,
                expected: expected.to_string(),
                found: meta.cluster_id.clone(),
            });
        }
    }
    if meta.node_id != node_id {
        return Err(StorageError::NodeIdMismatch {
            path,
            expected: node_id,
            found: meta.node_id,
        });
    }
    Ok(())
}

/// What `format` did with one directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatOutcome {
    /// `meta.properties` was written.
    Formatted(PathBuf, MetaProperties),
    /// The directory was already formatted for this cluster and node (`--ignore-formatted`).
    AlreadyFormatted(PathBuf),
}

/// Formats `dirs` for `cluster_id` and `node_id` as `kafka-storage.sh format`: every already
/// formatted directory must belong to the same cluster and node; with any formatted
/// directory the command fails unless `ignore_formatted`, which skips them.
pub fn format_dirs(
    storage: &dyn Storage,
    dirs: &[PathBuf],
    cluster_id: &str,
    node_id: i32,
    ignore_formatted: bool,
) -> Result<Vec<FormatOutcome>, StorageError> {
    validate_cluster_id(cluster_id)?;
    if dirs.is_empty() {
        return Err(StorageError::NoDirectories);
    }
    let mut existing = Vec::with_capacity(dirs.len());
    for dir in dirs {
        let meta = read_meta_properties(storage, dir)?;
        if let Some(m) = &meta {
            check(dir, m, Some(cluster_id), node_id)?;
        }
        existing.push(meta);
    }
    if !ignore_formatted {
        if let Some((dir, _)) = dirs.iter().zip(&existing).find(|(_, m)| m.is_some()) {
            return Err(StorageError::AlreadyFormatted(dir.clone()));
        }
    }
    let mut out = Vec::with_capacity(dirs.len());
    for (dir, meta) in dirs.iter().zip(existing) {
        if meta.is_some() {
            out.push(FormatOutcome::AlreadyFormatted(dir.clone()));
            continue;
        }
        let meta = MetaProperties {
            cluster_id: cluster_id.to_string(),
            node_id,
            directory_id: Some(random_uuid()),
        };
        write_meta_properties(storage, dir, &meta)?;
        tracing::info!(dir = %dir.display(), cluster_id, node_id, "formatted");
        out.push(FormatOutcome::Formatted(dir.clone(), meta));
    }
    Ok(out)
}

/// Makes sure every log directory of `node` is formatted for it, and returns the
/// `meta.properties` of its metadata log directory. A directory without `meta.properties`
/// is formatted when `cluster_id` is given (first start from `CLUSTER_ID`/`--cluster-id`),
/// else refused; a formatted directory must name the same node id and (when given) the same
/// cluster id.
pub fn ensure_formatted(
    node: &NodeConfig,
    cluster_id: Option<&str>,
) -> Result<MetaProperties, StorageError> {
    ensure_formatted_with(&OsStorage, &node.log_dirs, node.node_id, cluster_id)
}

/// [`ensure_formatted`] on any [`Storage`] and explicit directories.
pub fn ensure_formatted_with(
    storage: &dyn Storage,
    dirs: &[PathBuf],
    node_id: i32,
    cluster_id: Option<&str>,
) -> Result<MetaProperties, StorageError> {
    if let Some(id) = cluster_id {
        validate_cluster_id(id)?;
    }
    let mut first: Option<MetaProperties> = None;
    for dir in dirs {
        let meta = match read_meta_properties(storage, dir)? {
            Some(m) => {
                // All directories of a node must agree with each other too.
                let expected = cluster_id.or(first.as_ref().map(|f| f.cluster_id.as_str()));
                check(dir, &m, expected, node_id)?;
                m
            }
            None => {
                let id = cluster_id
                    .or(first.as_ref().map(|f| f.cluster_id.as_str()))
                    .ok_or_else(|| StorageError::NotFormatted { dir: dir.clone() })?;
                let m = MetaProperties {
                    cluster_id: id.to_string(),
                    node_id,
                    directory_id: Some(random_uuid()),
                };
                write_meta_properties(storage, dir, &m)?;
                tracing::info!(dir = %dir.display(), cluster_id = id, node_id, "formatted storage on first start");
                m
            }
        };
        first.get_or_insert(meta);
    }
    first.ok_or(StorageError::NoDirectories)
}

/// The report of `broker storage info` (Kafka's `kafka-storage.sh info`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageInfo {
    /// Directories that exist.
    pub found: Vec<PathBuf>,
    /// The `meta.properties` of the first formatted directory.
    pub metadata: Option<MetaProperties>,
    /// Problems found (missing, unformatted or mismatched directories).
    pub problems: Vec<String>,
}

impl StorageInfo {
    /// Renders the report as Kafka's tool prints it.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if !self.found.is_empty() {
            out.push_str(if self.found.len() == 1 {
                "Found log directory:\n"
            } else {
                "Found log directories:\n"
            });
            for d in &self.found {
                out.push_str(&format!("  {}\n", d.display()));
            }
            out.push('\n');
        }
        if let Some(m) = &self.metadata {
            let mut fields = vec![format!("cluster.id={}", m.cluster_id)];
            if let Some(d) = &m.directory_id {
                fields.push(format!("directory.id={d}"));
            }
            fields.push(format!("node.id={}", m.node_id));
            fields.push(format!("version={META_PROPERTIES_VERSION}"));
            out.push_str(&format!("Found metadata: {{{}}}\n\n", fields.join(", ")));
        }
        if !self.problems.is_empty() {
            out.push_str(if self.problems.len() == 1 {
                "Found problem:\n"
            } else {
                "Found problems:\n"
            });
            for p in &self.problems {
                out.push_str(&format!("  {p}\n"));
            }
            out.push('\n');
        }
        out
    }
}

/// Inspects the log directories as `kafka-storage.sh info`.
pub fn storage_info(storage: &dyn Storage, dirs: &[PathBuf]) -> StorageInfo {
    let mut info = StorageInfo::default();
    let mut sorted = dirs.to_vec();
    sorted.sort();
    for dir in sorted {
        if !storage.exists(&dir) {
            info.problems
                .push(format!("{} does not exist", dir.display()));
            continue;
        }
        info.found.push(dir.clone());
        match read_meta_properties(storage, &dir) {
            Ok(None) => info
                .problems
                .push(format!("{} is not formatted.", dir.display())),
            Ok(Some(m)) => match &info.metadata {
                None => info.metadata = Some(m),
                Some(prev) if prev.cluster_id != m.cluster_id => info
                    .problems
                    .push("Mismatched cluster IDs between storage directories.".into()),
                Some(prev) if prev.node_id != m.node_id => info
                    .problems
                    .push("Mismatched node IDs between storage directories.".into()),
                Some(_) => {}
            },
            Err(e) => info.problems.push(e.to_string()),
        }
    }
    info
}

/// `broker storage` subcommands (Kafka's `kafka-storage.sh`).
#[derive(Subcommand)]
pub(crate) enum StorageAction {
    /// Write meta.properties (cluster id, node id, directory id) in each log directory.
    Format {
        /// The node's server.properties (process.roles must be set).
        #[arg(long = "config-file", short = 'c', alias = "config")]
        config_file: PathBuf,
        /// The cluster id (`broker storage random-uuid` makes one).
        #[arg(long, short = 't')]
        cluster_id: String,
        /// Skip directories that are already formatted instead of failing.
        #[arg(long, short = 'g')]
        ignore_formatted: bool,
    },
    /// Print the log directories and their meta.properties, and any problem.
    Info {
        /// The node's server.properties.
        #[arg(long = "config-file", short = 'c', alias = "config")]
        config_file: PathBuf,
    },
    /// Print a random UUID in Kafka's base64 form (for --cluster-id / CLUSTER_ID).
    RandomUuid,
}

/// Log directories of a properties file (`log.dirs`, else `log.dir`, else `./broker-data`),
/// and its node configuration when it is a cluster node's.
fn config_dirs(
    config_file: &Path,
    require_cluster: bool,
) -> Result<(Vec<PathBuf>, Option<NodeConfig>), StorageError> {
    let mut raw = RawProperties::default();
    raw.add_file(config_file)?;
    let props = raw.effective();
    if raw.is_cluster_mode() {
        let node = NodeConfig::from_properties(&props, None)?;
        return Ok((node.log_dirs.clone(), Some(node)));
    }
    if require_cluster {
        return Err(StorageError::SingleNodeConfig(config_file.to_path_buf()));
    }
    let dirs = props
        .get("log.dirs")
        .or(props.get("log.dir"))
        .map_or("./broker-data", String::as_str)
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .collect();
    Ok((dirs, None))
}

pub(crate) fn storage(action: StorageAction) -> AnyResult {
    let os: Arc<dyn Storage> = OsStorage::shared();
    match action {
        StorageAction::RandomUuid => println!("{}", random_uuid()),
        StorageAction::Format {
            config_file,
            cluster_id,
            ignore_formatted,
        } => {
            let (dirs, node) = config_dirs(&config_file, true)?;
            let node_id = node.map_or(0, |n| n.node_id);
            let outcomes = format_dirs(&*os, &dirs, &cluster_id, node_id, ignore_formatted)?;
            if outcomes
                .iter()
                .all(|o| matches!(o, FormatOutcome::AlreadyFormatted(_)))
            {
                println!("All of the log directories are already formatted.");
            }
            for o in outcomes {
                if let FormatOutcome::Formatted(dir, _) = o {
                    println!(
                        "Formatting data directory {} with cluster.id {cluster_id}, node.id {node_id}.",
                        dir.display()
                    );
                }
            }
        }
        StorageAction::Info { config_file } => {
            let (dirs, _) = config_dirs(&config_file, false)?;
            let info = storage_info(&*os, &dirs);
            print!("{}", info.render());
            if !info.problems.is_empty() {
                return Err(format!("{} problem(s) found", info.problems.len()).into());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use durable_fs::sim::SimStorage;
    use std::time::Duration;

    fn meta(cluster: &str, node: i32) -> MetaProperties {
        MetaProperties {
            cluster_id: cluster.into(),
            node_id: node,
            directory_id: Some(random_uuid()),
        }
    }

    #[test]
    fn random_uuid_is_kafka_base64() {
        for _ in 0..100 {
            let u = random_uuid();
            assert_eq!(u.len(), 22, "{u}");
            assert!(!u.starts_with('-'));
            assert!(u
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
            assert!(decode_uuid(&u).is_some());
        }
    }

    #[test]
    fn java_date_format() {
        // 2026-12-02 20:18:41 UTC was a Wednesday.
        let t = UNIX_EPOCH + Duration::from_secs(1_796_242_721);
        assert_eq!(java_date(t), "Wed Dec 02 20:18:41 UTC 2026");
        assert_eq!(java_date(UNIX_EPOCH), "Thu Jan 01 00:00:00 UTC 1970");
    }

    #[test]
    fn meta_properties_round_trip() {
        let m = meta("4L6g3nShT-eMCtK--X86sw", 3);
        let text = m.to_file_text(UNIX_EPOCH);
        assert!(text.starts_with("#\n#Thu Jan 01 00:00:00 UTC 1970\n"));
        assert!(text.contains("version=1\n"));
        assert!(text.contains("cluster.id=4L6g3nShT-eMCtK--X86sw\n"));
        assert!(text.contains("node.id=3\n"));
        assert_eq!(MetaProperties::parse(&text, Path::new("m")).unwrap(), m);
        // A file as Kafka writes it (its own order).
        let kafka = "#\n#Tue Sep 03 10:00:00 UTC 2024\nnode.id=1\ndirectory.id=J8aAPcfLQt2bqs1JT_rMgQ\nversion=1\ncluster.id=abc\n";
        let parsed = MetaProperties::parse(kafka, Path::new("m")).unwrap();
        assert_eq!(parsed.node_id, 1);
        assert_eq!(parsed.cluster_id, "abc");
        assert_eq!(
            parsed.directory_id.as_deref(),
            Some("J8aAPcfLQt2bqs1JT_rMgQ")
        );
    }

    #[test]
    fn meta_properties_rejects_bad_files() {
        let p = Path::new("m");
        assert!(matches!(
            MetaProperties::parse("broker.id=1\ncluster.id=x\n", p),
            Err(StorageError::UnsupportedVersion { version: 0, .. })
        ));
        assert!(matches!(
            MetaProperties::parse("version=1\nnode.id=1\n", p),
            Err(StorageError::Malformed { .. })
        ));
        assert!(matches!(
            MetaProperties::parse("version=1\ncluster.id=x\nnode.id=one\n", p),
            Err(StorageError::Malformed { .. })
        ));
        assert!(matches!(
            MetaProperties::parse("version=1\ncluster.id=x\nnode.id=1\ndirectory.id=zz\n", p),
            Err(StorageError::Malformed { .. })
        ));
    }

    #[test]
    fn ensure_formatted_formats_once_then_checks() {
        let sim = SimStorage::new();
        let dirs = vec![PathBuf::from("/data/node-1")];
        // Not formatted and no cluster id: refused.
        assert!(matches!(
            ensure_formatted_with(&sim, &dirs, 1, None),
            Err(StorageError::NotFormatted { .. })
        ));
        let m = ensure_formatted_with(&sim, &dirs, 1, Some("clusterA")).unwrap();
        assert_eq!(m.cluster_id, "clusterA");
        assert_eq!(m.node_id, 1);
        // Durable: survives a power cut that loses everything unsynced.
        sim.power_cut_losing_all_unsynced();
        let again = ensure_formatted_with(&sim, &dirs, 1, None).unwrap();
        assert_eq!(again, m);
        assert_eq!(
            ensure_formatted_with(&sim, &dirs, 1, Some("clusterA")).unwrap(),
            m
        );
        match ensure_formatted_with(&sim, &dirs, 1, Some("clusterB")) {
            Err(StorageError::ClusterIdMismatch {
                expected, found, ..
            }) => {
                assert_eq!(expected, "clusterB");
                assert_eq!(found, "clusterA");
            }
            other => panic!("{other:?}"),
        }
        match ensure_formatted_with(&sim, &dirs, 2, Some("clusterA")) {
            Err(e @ StorageError::NodeIdMismatch { .. }) => {
                let msg = e.to_string();
                assert!(
                    msg.contains("Stored node id 1") && msg.contains("node id 2"),
                    "{msg}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn format_refuses_formatted_unless_ignored() {
        let sim = SimStorage::new();
        let dirs = vec![PathBuf::from("/d/a")];
        let out = format_dirs(&sim, &dirs, "c1", 5, false).unwrap();
        assert!(matches!(&out[0], FormatOutcome::Formatted(_, m) if m.node_id == 5));
        assert!(matches!(
            format_dirs(&sim, &dirs, "c1", 5, false),
            Err(StorageError::AlreadyFormatted(_))
        ));
        assert_eq!(
            format_dirs(&sim, &dirs, "c1", 5, true).unwrap(),
            vec![FormatOutcome::AlreadyFormatted(PathBuf::from("/d/a"))]
        );
        // Even with --ignore-formatted another cluster's directory is refused.
        assert!(matches!(
            format_dirs(&sim, &dirs, "c2", 5, true),
            Err(StorageError::ClusterIdMismatch { .. })
        ));
        assert!(matches!(
            format_dirs(&sim, &dirs, "bad id", 5, true),
            Err(StorageError::InvalidClusterId(_))
        ));
        let stored = read_meta_properties(&sim, Path::new("/d/a"))
            .unwrap()
            .unwrap();
        assert_eq!(stored.cluster_id, "c1");
        let info = storage_info(&sim, &[PathBuf::from("/d/a"), PathBuf::from("/d/missing")]);
        assert_eq!(info.metadata, Some(stored));
        assert_eq!(info.problems, vec!["/d/missing does not exist".to_string()]);
        assert!(info.render().contains("Found metadata: {cluster.id=c1"));
    }
}
