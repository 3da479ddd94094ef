//! The instance's process id, kept in the state directory as Kafka Streams'
//! `kafka-streams-process-metadata` file, so that a restarted instance keeps its identity:
//! its task-offset sums are matched to it by the assignor, and under exactly-once its
//! producers' `transactional.id`s (`<application.id>-<process id>-<thread>`) stay the same,
//! so the first thing a restarted thread does is fence its previous incarnation and abort
//! that one's open transaction.

use std::path::Path;

use durable_fs::{OsStorage, Storage};
use uuid::Uuid;

use crate::error::{Result, StreamsError};

/// Kafka Streams' name of the file.
pub(crate) const PROCESS_FILE_NAME: &str = "kafka-streams-process-metadata";

/// The process id stored in `app_dir` (`<state.dir>/<application.id>`), or a new one written
/// there (atomically and durably) when there is none or it cannot be read, as Kafka's
/// `StateDirectory#initializeProcessId`.
pub(crate) fn load_or_create(app_dir: &Path) -> Result<Uuid> {
    let storage = OsStorage;
    let path = app_dir.join(PROCESS_FILE_NAME);
    if storage.exists(&path) {
        let parsed = storage
            .read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
            .and_then(|v| {
                v.get("processId")?
                    .as_str()
                    .and_then(|s| Uuid::parse_str(s).ok())
            });
        match parsed {
            Some(id) => {
                tracing::info!(process_id = %id, "process id read from the state directory");
                return Ok(id);
            }
            None => {
                tracing::warn!(path = %path.display(), "unreadable process file; writing a new process id")
            }
        }
    }
    let id = Uuid::new_v4();
    let io = |e| StreamsError::Io {
        path: path.display().to_string(),
        source: e,
    };
    durable_fs::create_dir_all_durable(&storage, app_dir).map_err(io)?;
    let json = serde_json::json!({ "processId": id.to_string() }).to_string();
    durable_fs::write_atomic(&storage, &path, json.as_bytes()).map_err(io)?;
    tracing::info!(process_id = %id, "new process id written to the state directory");
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_id_survives_a_restart_and_a_garbled_file_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path().join("app");
        let first = load_or_create(&app).unwrap();
        assert_eq!(load_or_create(&app).unwrap(), first);
        let text = std::fs::read_to_string(app.join(PROCESS_FILE_NAME)).unwrap();
        assert_eq!(text, format!("{{\"processId\":\"{first}\"}}"));
        std::fs::write(app.join(PROCESS_FILE_NAME), b"{\"processId\":").unwrap();
        let replaced = load_or_create(&app).unwrap();
        assert_ne!(replaced, first);
        assert_eq!(load_or_create(&app).unwrap(), replaced);
    }
}
