//! `GET /v1/threads/{id}/watch` (protocol.md §11.8): server-sent events. Each event has a name, a
//! JSON `data` line and, for records, the record's sequence as its `id` (a reconnect sends it back
//! as `Last-Event-ID`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A record was committed on the thread (or is replayed).
pub const RECORD_CREATED: &str = "record.created";
/// Sent every heartbeat interval while nothing else is.
pub const HEARTBEAT: &str = "heartbeat";
/// The stream ends: the reader fell behind or the replay failed; reconnect with `Last-Event-ID`.
pub const ERROR: &str = "error";
/// The steward is stopping; reconnect after `retry_after_ms`.
pub const SERVER_SHUTDOWN: &str = "server_shutdown";

/// The data of [`RECORD_CREATED`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordCreated<R = Value> {
    pub id: String,
    pub record: R,
}

/// The data of [`HEARTBEAT`]: the steward's time in unix milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Heartbeat {
    pub ts: u64,
}

/// The data of [`ERROR`]: `lagged` or `replay_failed`, and why.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WatchError {
    pub code: String,
    pub message: String,
}

/// The data of [`SERVER_SHUTDOWN`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerShutdown {
    pub retry_after_ms: u64,
}

/// One event of a watch stream.
#[derive(Clone, Debug, PartialEq)]
pub enum WatchEvent<R = Value> {
    /// A record, with its sequence (the event id).
    Record {
        seq: i64,
        created: RecordCreated<R>,
    },
    Heartbeat(Heartbeat),
    Error(WatchError),
    ServerShutdown(ServerShutdown),
}

impl<R: serde::de::DeserializeOwned> WatchEvent<R> {
    /// Reads one event from its name, id and data; `None` for an event this version does not
    /// know (a newer steward may send more).
    pub fn parse(
        event: &str,
        id: Option<&str>,
        data: &str,
    ) -> Result<Option<WatchEvent<R>>, serde_json::Error> {
        Ok(Some(match event {
            RECORD_CREATED => WatchEvent::Record {
                seq: id.and_then(|id| id.parse().ok()).unwrap_or_default(),
                created: serde_json::from_str(data)?,
            },
            HEARTBEAT => WatchEvent::Heartbeat(serde_json::from_str(data)?),
            ERROR => WatchEvent::Error(serde_json::from_str(data)?),
            SERVER_SHUTDOWN => WatchEvent::ServerShutdown(serde_json::from_str(data)?),
            _ => return Ok(None),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_read_by_name() {
        let record: WatchEvent = WatchEvent::parse(
            RECORD_CREATED,
            Some("7"),
            r#"{"id":"abc","record":{"id":"abc","clock":1.5}}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            record,
            WatchEvent::Record {
                seq: 7,
                created: RecordCreated {
                    id: "abc".into(),
                    record: json!({"id": "abc", "clock": 1.5})
                }
            }
        );
        assert_eq!(
            WatchEvent::<Value>::parse(SERVER_SHUTDOWN, None, r#"{"retry_after_ms":1500}"#)
                .unwrap(),
            Some(WatchEvent::ServerShutdown(ServerShutdown {
                retry_after_ms: 1500
            }))
        );
        assert_eq!(
            WatchEvent::<Value>::parse("later", None, "{}").unwrap(),
            None
        );
        assert_eq!(
            serde_json::to_value(Heartbeat { ts: 5 }).unwrap(),
            json!({"ts": 5})
        );
        assert_eq!(
            serde_json::to_value(WatchError {
                code: "lagged".into(),
                message: "m".into()
            })
            .unwrap(),
            json!({"code": "lagged", "message": "m"})
        );
    }
}
