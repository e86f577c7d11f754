//! The routes one steward calls on another: the changes feed and fetch-by-id (with a pair token
//! and [`Client::acting_as`] the puller's DID), the pairing handshake and the signed notices of
//! a live pair, and introductions. Stewards call them through their guarded peer client; this is
//! the same contract for tools and tests.

use std::time::Duration;

use reqwest::Method;
use serde::de::DeserializeOwned;
use syncropel_api::{
    ChangesPage, ChangesParams, FetchRecords, HandshakeAnswer, Introductions, PairConfirm,
    PairInit, PairPoll, PairRefresh, PairRefreshed, PairRevoked, RevokeNotice, SyncRecords,
};

use crate::{decode, with_json, Client, ClientError, Reply};

/// A longpoll is held up to 30 s by the steward; the request may take a little longer.
const LONGPOLL_TIMEOUT: Duration = Duration::from_secs(40);

impl Client {
    /// `GET /v1/sync/changes`: a page of a thread after `params.since`.
    pub async fn sync_changes<I: DeserializeOwned>(
        &self,
        params: &ChangesParams,
    ) -> Result<ChangesPage<I>, ClientError> {
        let limit = params.limit.map(|l| l.to_string());
        let mut query = vec![
            ("thread", params.thread.as_str()),
            ("since", params.since.as_str()),
        ];
        if let Some(limit) = &limit {
            query.push(("limit", limit));
        }
        query.push((
            "feed",
            if params.longpoll {
                "longpoll"
            } else {
                "normal"
            },
        ));
        if let Some(namespace) = &params.target_namespace {
            query.push(("target_namespace", namespace));
        }
        let url = self.url("/v1/sync/changes", &query);
        let request = if params.longpoll {
            self.open(Method::GET, url).timeout(LONGPOLL_TIMEOUT)
        } else {
            self.request(Method::GET, url)
        };
        let (_, body) = self.call(request).await?;
        decode(&body)
    }

    /// `POST /v1/sync/records`: specific records, for the puller's `target_namespace`.
    pub async fn sync_records<I: DeserializeOwned>(
        &self,
        request: &FetchRecords,
        target_namespace: Option<&str>,
    ) -> Result<SyncRecords<I>, ClientError> {
        let query: Vec<(&str, &str)> = target_namespace
            .map(|ns| ("target_namespace", ns))
            .into_iter()
            .collect();
        self.post(self.url("/v1/sync/records", &query), request)
            .await
    }

    /// `POST /v1/federation/pair`: a signed request to pair with this steward.
    pub async fn pair_init(
        &self,
        request: &PairInit,
    ) -> Result<Reply<HandshakeAnswer>, ClientError> {
        self.post_reply(self.url("/v1/federation/pair", &[]), request)
            .await
    }

    /// `POST /v1/federation/pair/poll`: the decision on a request, by its nonce.
    pub async fn pair_poll(
        &self,
        request: &PairPoll,
    ) -> Result<Reply<HandshakeAnswer>, ClientError> {
        self.post_reply(self.url("/v1/federation/pair/poll", &[]), request)
            .await
    }

    /// `POST /v1/federation/pair/confirm`: the signed confirmation that activates the pair.
    pub async fn pair_confirm(
        &self,
        request: &PairConfirm,
    ) -> Result<Reply<HandshakeAnswer>, ClientError> {
        self.post_reply(self.url("/v1/federation/pair/confirm", &[]), request)
            .await
    }

    /// `POST /v1/federation/pair/notify-revoke` (with the pair token): the signed notice that we
    /// revoked the pair.
    pub async fn notify_revoke(&self, notice: &RevokeNotice) -> Result<PairRevoked, ClientError> {
        self.post(self.url("/v1/federation/pair/notify-revoke", &[]), notice)
            .await
    }

    /// `POST /v1/federation/pair/refresh` (with the token being renewed): swaps the pair's tokens.
    pub async fn refresh_pair_tokens(
        &self,
        request: &PairRefresh,
    ) -> Result<PairRefreshed, ClientError> {
        let request = with_json(
            self.request(Method::POST, self.url("/v1/federation/pair/refresh", &[])),
            request,
        )?;
        let (_, body) = self.call(request).await?;
        decode(&body)
    }

    /// `GET /v1/federation/peers` (with the pair token): the peers this steward introduces.
    pub async fn introductions_for_peer(&self) -> Result<Introductions, ClientError> {
        self.get(self.url("/v1/federation/peers", &[])).await
    }
}
