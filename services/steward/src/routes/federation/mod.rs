//! The federation routes under `/v1`: thin handlers over `syncropel_federation`, which makes
//! every decision. Handlers check scopes, parse what the request carries and render answers.

mod consent;
mod discovery;
mod feed;
mod handshake;
mod pairs;
mod relay;
mod sync_pairs;

use axum::routing::{delete, get, post};
use axum::Router;

use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/sync/changes", get(feed::changes))
        .route("/federation/sync/changes", get(feed::changes))
        .route("/sync/records", post(feed::fetch))
        .route("/sync/pull", post(pairs::pull))
        .route(
            "/sync/pairs",
            post(sync_pairs::create).get(sync_pairs::list),
        )
        .route(
            "/sync/pairs/{id}",
            get(sync_pairs::get_one).delete(sync_pairs::remove),
        )
        .route("/sync/pairs/{id}/pause", post(sync_pairs::pause))
        .route("/sync/pairs/{id}/resume", post(sync_pairs::resume))
        .route("/sync/pairs/{id}/kick", post(sync_pairs::kick))
        .route("/sync/pairs/{id}/stats", get(sync_pairs::stats))
        .route("/sync/pairs/{id}/trace", get(sync_pairs::trace))
        .route("/sync/health", get(sync_pairs::health))
        .route("/sync/quarantine", get(sync_pairs::quarantine))
        // The same routes under `/v1/federation/sync` (federation-protocol.md §5.7).
        .route("/federation/sync/records", post(feed::fetch))
        .route("/federation/sync/pull", post(pairs::pull))
        .route(
            "/federation/sync/pairs",
            post(sync_pairs::create).get(sync_pairs::list),
        )
        .route(
            "/federation/sync/pairs/{id}",
            get(sync_pairs::get_one).delete(sync_pairs::remove),
        )
        .route("/federation/sync/pairs/{id}/pause", post(sync_pairs::pause))
        .route(
            "/federation/sync/pairs/{id}/resume",
            post(sync_pairs::resume),
        )
        .route("/federation/sync/pairs/{id}/kick", post(sync_pairs::kick))
        .route("/federation/sync/pairs/{id}/stats", get(sync_pairs::stats))
        .route("/federation/sync/pairs/{id}/trace", get(sync_pairs::trace))
        .route("/federation/sync/health", get(sync_pairs::health))
        .route("/federation/pair", post(handshake::init))
        .route("/federation/pair/init", post(handshake::init))
        .route("/federation/pair/poll", post(handshake::poll))
        .route("/federation/pair/confirm", post(handshake::confirm))
        .route("/federation/pair/notify-revoke", post(pairs::notify_revoke))
        .route("/federation/pair/refresh", post(pairs::refresh))
        .route("/federation/pairs/{id}/refresh", post(pairs::refresh_now))
        .route("/federation/pairs/{id}/url", post(pairs::set_url))
        .route("/federation/pairs", post(handshake::start).get(pairs::list))
        .route("/federation/pairs/{id}", get(pairs::get_one))
        .route(
            "/federation/pairs/{id}/poll",
            post(handshake::continue_pairing),
        )
        .route("/federation/pairs/{id}/config", post(pairs::config))
        .route("/federation/pairs/{id}/push", post(pairs::push))
        .route("/federation/pairs/{id}/pause", post(pairs::pause))
        .route("/federation/pairs/{id}/resume", post(pairs::resume))
        .route("/federation/pairs/{id}/revoke", post(pairs::revoke))
        .route(
            "/federation/pairs/{id}/grants",
            post(consent::grant_to_pair),
        )
        .route(
            "/federation/pairs/{id}/grants/{grant_id}",
            delete(consent::revoke_pair_grant),
        )
        .route(
            "/federation/pairs/{id}/introducible",
            post(discovery::set_introducible),
        )
        .route("/federation/pending", get(handshake::pending))
        .route("/federation/pending/{id}/approve", post(handshake::approve))
        .route("/federation/pending/{id}/reject", post(handshake::reject))
        .route("/federation/peers", get(discovery::introductions_for_peer))
        .route("/federation/actor-keys", get(feed::actor_keys))
        .route(
            "/federation/introductions",
            get(discovery::introductions_via),
        )
        .route("/discovery/mdns", get(discovery::mdns_roster))
        .route("/federation/relay", get(relay::status))
        .route("/federation/relay/queues", get(relay::queues))
        .route("/federation/relay/kick", post(relay::kick))
        .route("/federation/relay/purge", post(relay::purge))
        .route("/consent/grants", post(consent::grant).get(consent::list))
        .route("/consent/grants/{id}", delete(consent::revoke))
}
