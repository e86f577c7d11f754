//! Records, threads, query and search; the open routes (health, readiness, manifest, metrics,
//! did:web documents) and the authenticated health report.

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use syncropel_api::{
    BatchResult, CreateRecords, DidDocument, Health, HealthReport, ListPage, ListParams,
    QueryAnswer, QueryRequest, Ready, SearchAnswer, SearchRequest, ThreadSummary, WellKnown,
};

use crate::{decode, encode_segment, with_json, Client, ClientError, Reply};

/// The answer to `POST /v1/records`: the stored record, and whether this request stored it
/// (`201`) or found it stored already (`200`, a replay of the same envelope).
#[derive(Clone, Debug, PartialEq)]
pub struct Emitted<R = Value> {
    pub record: R,
    pub created: bool,
}

impl Client {
    /// `POST /v1/records`: emits one envelope (with the record's claimed actor, when this client
    /// names one).
    pub async fn emit<R: DeserializeOwned>(
        &self,
        envelope: &impl Serialize,
    ) -> Result<Emitted<R>, ClientError> {
        let request = with_json(
            self.request(Method::POST, self.inner.records_url.clone()),
            envelope,
        )?;
        let (status, body) = self.call(request).await?;
        Ok(Emitted {
            record: decode(&body)?,
            created: status == StatusCode::CREATED,
        })
    }

    /// `POST /v1/records/batch`: each envelope gets its own result, in order.
    pub async fn emit_batch<R: DeserializeOwned>(
        &self,
        batch: &CreateRecords<impl Serialize>,
    ) -> Result<BatchResult<R>, ClientError> {
        self.post(self.inner.batch_url.clone(), batch).await
    }

    /// `GET /v1/records/{id}`.
    pub async fn get_record<R: DeserializeOwned>(&self, id: &str) -> Result<R, ClientError> {
        self.get(self.url(&format!("/v1/records/{}", encode_segment(id)), &[]))
            .await
    }

    /// `GET /v1/records`, filtered by `params`.
    pub async fn list_records<R: DeserializeOwned>(
        &self,
        params: &ListParams,
    ) -> Result<ListPage<R>, ClientError> {
        let query = list_query(params, true);
        self.get(self.url("/v1/records", &pairs(&query))).await
    }

    /// `GET /v1/threads/{thread}/records`. `params.thread` and `params.actor` are ignored: the
    /// thread is in the path and this route has no actor filter.
    pub async fn thread_records<R: DeserializeOwned>(
        &self,
        thread: &str,
        params: &ListParams,
    ) -> Result<ListPage<R>, ClientError> {
        let path = format!("/v1/threads/{}/records", encode_segment(thread));
        let query = list_query(params, false);
        self.get(self.url(&path, &pairs(&query))).await
    }

    /// `GET /v1/threads`: threads, most recently written first.
    pub async fn threads(
        &self,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<ListPage<ThreadSummary>, ClientError> {
        let limit = limit.map(|l| l.to_string());
        let mut query = Vec::new();
        if let Some(limit) = &limit {
            query.push(("limit", limit.as_str()));
        }
        if let Some(cursor) = cursor {
            query.push(("cursor", cursor));
        }
        self.get(self.url("/v1/threads", &query)).await
    }

    /// `POST /v1/records/query` (rich filter).
    pub async fn query<R: DeserializeOwned>(
        &self,
        request: &QueryRequest,
    ) -> Result<Reply<QueryAnswer<R>>, ClientError> {
        self.post_reply(self.url("/v1/records/query", &[]), request)
            .await
    }

    /// `POST /v1/records/search` (lexical search).
    pub async fn search<R: DeserializeOwned>(
        &self,
        request: &SearchRequest,
    ) -> Result<Reply<SearchAnswer<R>>, ClientError> {
        self.post_reply(self.url("/v1/records/search", &[]), request)
            .await
    }

    /// `GET /health`: open liveness report. Answers whether a steward is there at all.
    pub async fn health(&self) -> Result<Health, ClientError> {
        self.get(self.inner.health_url.clone()).await
    }

    /// `GET /health` as a probe: succeeds when a steward answers, reading nothing of the answer
    /// (a load generator's baseline, a readiness wait).
    pub async fn probe(&self) -> Result<(), ClientError> {
        self.call(self.request(Method::GET, self.inner.health_url.clone()))
            .await
            .map(drop)
    }

    /// `GET /ready`: open readiness (not draining, store migrated).
    pub async fn ready(&self) -> Result<Ready, ClientError> {
        self.get(self.url("/ready", &[])).await
    }

    /// `GET /v1/health`: the authenticated full report.
    pub async fn health_report(&self) -> Result<HealthReport, ClientError> {
        self.get(self.url("/v1/health", &[])).await
    }

    /// `GET /.well-known/syncropel`: the signed federation manifest.
    pub async fn manifest(&self) -> Result<WellKnown, ClientError> {
        self.get(self.url("/.well-known/syncropel", &[])).await
    }

    /// `GET /metrics` (local stewards): the Prometheus text exposition.
    pub async fn metrics(&self) -> Result<String, ClientError> {
        let (_, body) = self
            .call(self.request(Method::GET, self.url("/metrics", &[])))
            .await?;
        String::from_utf8(body.into()).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// The did:web document at `path`: `/.well-known/did.json`, or `/<path>/did.json` for a
    /// did:web with a path (the path of `syncropel_protocol::did_doc::did_web_url`).
    pub async fn did_document(&self, path: &str) -> Result<DidDocument, ClientError> {
        let path = path
            .split('/')
            .map(encode_segment)
            .collect::<Vec<_>>()
            .join("/");
        self.get(self.url(&path, &[])).await
    }
}

/// The query pairs of a listing; the route of a thread takes no `thread` or `actor`.
fn list_query(params: &ListParams, with_filters: bool) -> Vec<(&'static str, String)> {
    let mut query = Vec::new();
    if with_filters {
        if let Some(thread) = &params.thread {
            query.push(("thread", thread.clone()));
        }
        if let Some(actor) = &params.actor {
            query.push(("actor", actor.clone()));
        }
    }
    if let Some(since) = params.since {
        query.push(("since", since.to_string()));
    }
    if let Some(limit) = params.limit {
        query.push(("limit", limit.to_string()));
    }
    if let Some(cursor) = &params.cursor {
        query.push(("cursor", cursor.clone()));
    }
    query
}

fn pairs<'a>(query: &'a [(&'static str, String)]) -> Vec<(&'a str, &'a str)> {
    query.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_params_become_query_pairs() {
        let params = ListParams {
            thread: Some("th_x".into()),
            actor: Some("did:key:z6Mk+1".into()),
            since: Some(5),
            limit: Some(10),
            cursor: Some("AAA=".into()),
        };
        let c = Client::new("http://h:1", None).unwrap();
        assert_eq!(
            c.url("/v1/records", &pairs(&list_query(&params, true))).as_str(),
            "http://h:1/v1/records?thread=th_x&actor=did%3Akey%3Az6Mk%2B1&since=5&limit=10&cursor=AAA%3D"
        );
        assert_eq!(
            c.url(
                "/v1/threads/th_x/records",
                &pairs(&list_query(&params, false))
            )
            .as_str(),
            "http://h:1/v1/threads/th_x/records?since=5&limit=10&cursor=AAA%3D"
        );
        assert_eq!(
            c.url(
                "/v1/records",
                &pairs(&list_query(&ListParams::default(), true))
            )
            .as_str(),
            "http://h:1/v1/records"
        );
    }
}
