//! `GET /v1/threads/{id}/watch`: the server-sent events of a thread, read into
//! [`WatchEvent`]s.

use futures_util::{Stream, StreamExt};
use reqwest::Method;
use serde::de::DeserializeOwned;
use syncropel_api::WatchEvent;

use crate::{encode_segment, Client, ClientError};

/// Where a watch stream starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WatchStart {
    /// Only records committed from now on.
    #[default]
    Live,
    /// First the thread's records with `clock >= C`, then live ones.
    SinceClock(i64),
    /// Records after this sequence (an event id; sent as `Last-Event-ID`), then live ones.
    AfterSeq(i64),
}

impl Client {
    /// `GET /v1/threads/{thread}/watch`: events until the steward ends the stream (after an
    /// `error` or `server_shutdown` event) or the connection drops. Events this version does not
    /// know are skipped.
    pub async fn watch<R: DeserializeOwned + Send + 'static>(
        &self,
        thread: &str,
        start: WatchStart,
    ) -> Result<impl Stream<Item = Result<WatchEvent<R>, ClientError>> + Send + 'static, ClientError>
    {
        let path = format!("/v1/threads/{}/watch", encode_segment(thread));
        let clock = match start {
            WatchStart::SinceClock(clock) => Some(clock.to_string()),
            _ => None,
        };
        let query: Vec<(&str, &str)> = clock.iter().map(|c| ("since_clock", c.as_str())).collect();
        let mut request = self.open(Method::GET, self.url(&path, &query));
        if let WatchStart::AfterSeq(seq) = start {
            request = request.header("last-event-id", seq.to_string());
        }
        let (_, response) = self.exchange(request).await?;
        let frames = Frames {
            body: Box::pin(response.bytes_stream()),
            buffer: Vec::new(),
        };
        Ok(futures_util::stream::unfold(
            frames,
            |mut frames| async move { frames.next_event().await.map(|event| (event, frames)) },
        ))
    }
}

/// The body of a stream, cut into frames (blocks of lines ending with a blank line).
struct Frames<S> {
    body: std::pin::Pin<Box<S>>,
    /// Bytes received and not yet cut, without carriage returns.
    buffer: Vec<u8>,
}

impl<S, B> Frames<S>
where
    S: Stream<Item = reqwest::Result<B>>,
    B: AsRef<[u8]>,
{
    /// The next event this version knows; `None` when the stream ends.
    async fn next_event<R: DeserializeOwned>(
        &mut self,
    ) -> Option<Result<WatchEvent<R>, ClientError>> {
        loop {
            while let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let frame: Vec<u8> = self.buffer.drain(..end + 2).collect();
                match parse_frame(&String::from_utf8_lossy(&frame)) {
                    Ok(Some(event)) => return Some(Ok(event)),
                    Ok(None) => continue,
                    Err(e) => return Some(Err(e)),
                }
            }
            match self.body.next().await? {
                Ok(chunk) => self
                    .buffer
                    .extend(chunk.as_ref().iter().filter(|b| **b != b'\r')),
                Err(e) => return Some(Err(e.into())),
            }
        }
    }
}

/// One frame's event; `None` for comments, unknown events and frames without data.
fn parse_frame<R: DeserializeOwned>(frame: &str) -> Result<Option<WatchEvent<R>>, ClientError> {
    let (mut event, mut id, mut data) = ("message", None, Vec::new());
    for line in frame.lines() {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => event = value,
            "id" => id = Some(value),
            "data" => data.push(value),
            _ => {}
        }
    }
    if data.is_empty() {
        return Ok(None);
    }
    WatchEvent::parse(event, id, &data.join("\n"))
        .map_err(|e| ClientError::Decode(format!("watch event `{event}`: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use syncropel_api::watch::{RecordCreated, ServerShutdown};

    #[test]
    fn frames_read_as_events() {
        let record: Option<WatchEvent> = parse_frame(
            "event: record.created\nid: 12\ndata: {\"id\":\"a\",\"record\":{\"id\":\"a\"}}\n\n",
        )
        .unwrap();
        assert_eq!(
            record,
            Some(WatchEvent::Record {
                seq: 12,
                created: RecordCreated {
                    id: "a".into(),
                    record: json!({"id": "a"})
                }
            })
        );
        assert_eq!(
            parse_frame::<Value>("event:server_shutdown\ndata:{\"retry_after_ms\":1000}\n\n")
                .unwrap(),
            Some(WatchEvent::ServerShutdown(ServerShutdown {
                retry_after_ms: 1000
            }))
        );
        assert_eq!(parse_frame::<Value>(": keep-alive\n\n").unwrap(), None);
        assert_eq!(
            parse_frame::<Value>("event: later\ndata: {}\n\n").unwrap(),
            None
        );
        assert!(parse_frame::<Value>("event: heartbeat\ndata: [\n\n").is_err());
    }
}
