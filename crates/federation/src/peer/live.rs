//! The puller's end of a continuous changes feed (`feed=continuous`, federation-protocol.md
//! §5.1): server-sent events read one at a time, each bounded in size, the stream in silence (no
//! heartbeat either) for long.

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde_json::Value;

use super::error::PeerError;

/// An open continuous feed.
pub struct LiveFeed {
    body: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    buffer: Vec<u8>,
    /// How much of `buffer` holds no event end: chunks are searched once.
    scanned: usize,
    /// Longest silence taken: the source sends a heartbeat every 30 s.
    idle: Duration,
    /// Largest event taken.
    max_event: usize,
}

/// One record of the feed: its sync item and the cursor just after it.
pub struct LiveRecord {
    pub item: Value,
    pub cursor: String,
}

impl LiveFeed {
    pub(super) fn new(response: reqwest::Response, idle: Duration, max_event: usize) -> LiveFeed {
        LiveFeed {
            body: Box::pin(response.bytes_stream()),
            buffer: Vec::new(),
            scanned: 0,
            idle,
            max_event,
        }
    }

    /// The next record; `None` when the source ends the stream (`server_shutdown`, or closed).
    /// An `error` event is the error the source would have answered a page with.
    pub async fn next(&mut self) -> Result<Option<LiveRecord>, PeerError> {
        loop {
            let Some(frame) = self.frame().await? else {
                return Ok(None);
            };
            match frame.event.as_str() {
                "record.created" => {
                    let item = serde_json::from_str(&frame.data).map_err(|e| {
                        PeerError::Parse(format!("a record.created event is not JSON: {e}"))
                    })?;
                    let cursor = frame.id.ok_or_else(|| {
                        PeerError::Parse("a record.created event without an id".into())
                    })?;
                    return Ok(Some(LiveRecord { item, cursor }));
                }
                "error" => return Err(refusal(&frame.data)),
                "server_shutdown" => return Ok(None),
                // Heartbeats, and events this steward does not know.
                _ => continue,
            }
        }
    }

    /// The next event's fields, `None` at the end of the stream.
    async fn frame(&mut self) -> Result<Option<Frame>, PeerError> {
        loop {
            let from = self.scanned.saturating_sub(1);
            if let Some(at) = self.buffer[from..].windows(2).position(|w| w == b"\n\n") {
                let end = from + at;
                let raw: Vec<u8> = self.buffer.drain(..end + 2).collect();
                self.scanned = 0;
                if let Some(frame) = Frame::parse(&raw[..end])? {
                    return Ok(Some(frame));
                }
                continue;
            }
            self.scanned = self.buffer.len();
            if self.buffer.len() > self.max_event {
                return Err(PeerError::Parse(format!(
                    "an event of the feed is over {} bytes",
                    self.max_event
                )));
            }
            match tokio::time::timeout(self.idle, self.body.next()).await {
                Err(_) => {
                    return Err(PeerError::Timeout(format!(
                        "the continuous feed was silent for {:?}",
                        self.idle
                    )))
                }
                Ok(None) => return Ok(None),
                Ok(Some(Err(e))) => {
                    return Err(PeerError::ConnectRefused(format!("the feed broke: {e}")))
                }
                Ok(Some(Ok(chunk))) => self.buffer.extend_from_slice(&chunk),
            }
        }
    }
}

struct Frame {
    event: String,
    id: Option<String>,
    data: String,
}

impl Frame {
    /// A frame's fields (`\r` ignored, comments skipped); `None` for one without any.
    fn parse(raw: &[u8]) -> Result<Option<Frame>, PeerError> {
        let text = std::str::from_utf8(raw)
            .map_err(|_| PeerError::Parse("an event of the feed is not UTF-8".into()))?;
        let mut frame = Frame {
            event: "message".into(),
            id: None,
            data: String::new(),
        };
        let mut any = false;
        for line in text.split('\n').map(|l| l.trim_end_matches('\r')) {
            if line.is_empty() || line.starts_with(':') {
                continue;
            }
            let (name, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            any = true;
            match name {
                "event" => frame.event = value.to_string(),
                "id" => frame.id = Some(value.to_string()),
                "data" => {
                    if !frame.data.is_empty() {
                        frame.data.push('\n');
                    }
                    frame.data.push_str(value);
                }
                _ => {}
            }
        }
        Ok(any.then_some(frame))
    }
}

/// An `error` event as the error a page request would have met: credentials refused are a 401
/// (so the pair degrades as for a page), anything else a 403.
fn refusal(data: &str) -> PeerError {
    let value: Value = serde_json::from_str(data).unwrap_or(Value::Null);
    let code = value["code"].as_str().unwrap_or("error").to_string();
    let message = value["message"].as_str().unwrap_or(data).to_string();
    let status = match code.as_str() {
        "AUTH_INVALID"
        | "AUTH_REQUIRED"
        | "GRANT_REVOKED"
        | "GRANT_EXPIRED"
        | "token_expired_renew_pair" => 401,
        _ => 403,
    };
    PeerError::Http4xx {
        status,
        code: Some(code),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_parse_as_the_sdk_reads_them() {
        let frame = Frame::parse(b"event: record.created\r\nid: c1\ndata: {\"a\":1}")
            .unwrap()
            .unwrap();
        assert_eq!(
            (
                frame.event.as_str(),
                frame.id.as_deref(),
                frame.data.as_str()
            ),
            ("record.created", Some("c1"), "{\"a\":1}")
        );
        assert!(Frame::parse(b": a comment").unwrap().is_none());
        assert!(Frame::parse(&[0xff, 0xfe]).is_err());
        let PeerError::Http4xx { status, code, .. } =
            refusal(r#"{"code":"pair_paused","message":"paused"}"#)
        else {
            panic!("a 4xx")
        };
        assert_eq!((status, code.as_deref()), (403, Some("pair_paused")));
        assert!(matches!(
            refusal(r#"{"code":"AUTH_INVALID"}"#),
            PeerError::Http4xx { status: 401, .. }
        ));
    }
}
