//! Identity and discovery costs a steward pays per peer: a cached DID resolution (the hit every
//! verified record takes) and LAN discovery over mDNS on loopback (announce to roster entry, and
//! a fresh browse against a steward that is already announcing).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use axum::routing::get;
use axum::{Json, Router};
use clap::Args;
use serde_json::{json, Value};
use syncropel_discovery::{
    discover, Announcement, Announcer, Browser, MdnsConfig, MdnsInterfaces, MdnsPeer,
};
use syncropel_federation::{DidResolver, PeerClient, PeerClientOptions};
use syncropel_protocol::did_doc::{did_web_document, did_web_for};
use syncropel_protocol::Keypair;

use crate::load::round3;

/// How long one mDNS sample may take before the run is declared broken.
const MDNS_SAMPLE_LIMIT: Duration = Duration::from_secs(10);
/// A responder multicasts a record at most once a second (RFC 6762 §6): fresh browses are
/// spaced further apart so each measures an answer, not that rate limit.
const RESPONDER_SPACING: Duration = Duration::from_millis(1100);
/// Past an announcer's probing and initial announcements, so a browse meets a settled responder.
const ANNOUNCER_SETTLE: Duration = Duration::from_secs(3);

#[derive(Args)]
pub struct DiscoveryArgs {
    /// Cache hits timed per round.
    #[arg(long, default_value_t = 1_000_000)]
    hits: u64,
    /// Rounds of cache hits; min and median are reported.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// mDNS samples per measurement.
    #[arg(long, default_value_t = 10)]
    samples: usize,
    /// First of the two UDP ports the loopback mDNS daemons use, away from a real responder
    /// on 5353.
    #[arg(long, default_value_t = 25_391)]
    mdns_port: u16,
    /// Listening time of each one-shot `discover`.
    #[arg(long, default_value_t = 500)]
    discover_timeout_ms: u64,
}

pub async fn discovery(a: DiscoveryArgs) -> Result<Value> {
    ensure!(
        a.rounds > 0 && a.samples > 0 && a.hits > 0,
        "hits, rounds and samples must be positive"
    );
    let hits = resolve_hits(a.hits, a.rounds).await?;
    let samples = a.samples;
    let port = a.mdns_port;
    let second_port = port
        .checked_add(1)
        .context("--mdns-port leaves no room for its second port")?;
    let timeout = Duration::from_millis(a.discover_timeout_ms);
    let (announce, (browse, found)) = tokio::task::spawn_blocking(move || -> Result<_> {
        Ok((
            announce_to_roster(&loopback(port), samples)?,
            browse_running(&loopback(second_port), samples, timeout)?,
        ))
    })
    .await??;

    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let announce = spread_ms(announce);
    let browse = spread_ms(browse);
    eprintln!("machine: nproc {nproc}");
    eprintln!("{:<44} {:>10} {:>10} {:>10}", "", "min", "median", "max");
    eprintln!(
        "{:<44} {:>10} {:>10} {:>10}",
        "did:web resolve, cache hit (ns/hit)",
        hits["min"].to_string(),
        hits["median"].to_string(),
        "-"
    );
    for (name, s) in [
        ("mDNS announce -> roster entry (ms)", &announce),
        ("mDNS fresh browse -> running peer (ms)", &browse),
    ] {
        eprintln!(
            "{name:<44} {:>10} {:>10} {:>10}",
            s["min"].to_string(),
            s["median"].to_string(),
            s["max"].to_string()
        );
    }
    eprintln!(
        "{:<44} {found}/{samples}",
        format!("mDNS discover({} ms) found the peer", a.discover_timeout_ms)
    );

    Ok(json!({
        "resolve_cache_hit_ns": hits,
        "mdns_announce_to_roster_ms": announce,
        "mdns_browse_to_running_peer_ms": browse,
        "mdns_discover": {
            "timeout_ms": a.discover_timeout_ms,
            "found": found,
            "runs": samples,
        },
        "samples": samples,
        "nproc": nproc,
    }))
}

/// Serves one did:web document on 127.0.0.1, warms a resolver with it, then times `hits`
/// resolves per round. The host must see exactly one fetch, or the rounds were not all hits.
async fn resolve_hits(hits: u64, rounds: usize) -> Result<Value> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let did = did_web_for(&listener.local_addr()?.to_string(), None);
    let key = Keypair::generate().did_key();
    let multibase = key.trim_start_matches("did:key:").to_owned();
    let document = did_web_document(
        &did,
        &[("key-1".into(), multibase)],
        &["key-1".into()],
        Some("http://127.0.0.1:7070"),
        &[],
    );
    let fetches = Arc::new(AtomicU64::new(0));
    let served = Arc::clone(&fetches);
    let app = Router::new().route(
        "/.well-known/did.json",
        get(move || {
            served.fetch_add(1, Ordering::Relaxed);
            let document = document.clone();
            async move { Json(document) }
        }),
    );
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let resolver = DidResolver::new(
        PeerClient::new(PeerClientOptions {
            allow_private: true,
            ..Default::default()
        }),
        Vec::new(),
    );
    let warm = resolver
        .resolve(&did)
        .await
        .context("warming the resolver")?;
    ensure!(warm.accepts(&key), "the resolved document lost its key");

    let mut per_hit_ns = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        for _ in 0..hits {
            std::hint::black_box(resolver.resolve(std::hint::black_box(&did)).await?);
        }
        per_hit_ns.push(started.elapsed().as_nanos() as f64 / hits as f64);
    }
    server.abort();
    let fetched = fetches.load(Ordering::Relaxed);
    if fetched != 1 {
        bail!("the document was fetched {fetched} times: not every resolve was a cache hit");
    }
    per_hit_ns.sort_by(f64::total_cmp);
    Ok(json!({
        "min": round3(per_hit_ns[0]),
        "median": round3(per_hit_ns[per_hit_ns.len() / 2]),
        "hits_per_round": hits,
        "rounds": rounds,
    }))
}

fn loopback(port: u16) -> MdnsConfig {
    MdnsConfig {
        interfaces: MdnsInterfaces::Loopback,
        port,
    }
}

fn announcement(did: &str, handle: &str) -> Announcement {
    Announcement {
        did: did.to_owned(),
        endpoint: "http://127.0.0.1:7070".to_owned(),
        namespace: None,
        handle: Some(handle.to_owned()),
        capabilities: vec!["sync".to_owned()],
        manifest_fingerprint: None,
    }
}

/// Polls `browser` until `did` is in its roster; how long that took from `since`.
fn wait_for(browser: &Browser, did: &str, since: Instant) -> Result<Duration> {
    let has = |peers: Vec<MdnsPeer>| peers.iter().any(|p| p.did == did);
    while since.elapsed() < MDNS_SAMPLE_LIMIT {
        if has(browser.peers()) {
            return Ok(since.elapsed());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    bail!("{did} never reached the roster within {MDNS_SAMPLE_LIMIT:?}")
}

/// A running browser; each sample starts a new announcer (own instance name and DID, so no
/// sample sees an earlier one's records) and times it to its roster entry.
fn announce_to_roster(config: &MdnsConfig, samples: usize) -> Result<Vec<Duration>> {
    let browser = Browser::start(config, None)?;
    let mut took = Vec::with_capacity(samples);
    for i in 0..samples {
        let did = format!("did:key:z6MkBenchAnnounce{i:04}");
        let started = Instant::now();
        let _announcer = Announcer::start(config, &announcement(&did, &format!("bench-a{i}")))?;
        took.push(wait_for(&browser, &did, started)?);
    }
    Ok(took)
}

/// One settled announcer; each sample is a fresh browser (what a one-shot `discover` starts)
/// timed to the peer's entry, then a real one-shot `discover`, which always listens for its
/// whole timeout, so only whether it found the peer is counted.
fn browse_running(
    config: &MdnsConfig,
    samples: usize,
    timeout: Duration,
) -> Result<(Vec<Duration>, usize)> {
    let did = "did:key:z6MkBenchRunningPeer";
    let _announcer = Announcer::start(config, &announcement(did, "bench-running"))?;
    std::thread::sleep(ANNOUNCER_SETTLE);
    let mut took = Vec::with_capacity(samples);
    let mut found = 0;
    for _ in 0..samples {
        let started = Instant::now();
        let browser = Browser::start(config, None)?;
        took.push(wait_for(&browser, did, started)?);
        drop(browser);
        std::thread::sleep(RESPONDER_SPACING);
        if discover(config, timeout)?.iter().any(|p| p.did == did) {
            found += 1;
        }
        std::thread::sleep(RESPONDER_SPACING);
    }
    Ok((took, found))
}

/// Min, median and max in milliseconds.
fn spread_ms(mut samples: Vec<Duration>) -> Value {
    samples.sort();
    let ms = |d: Duration| round3(d.as_secs_f64() * 1000.0);
    json!({
        "min": ms(samples[0]),
        "median": ms(samples[samples.len() / 2]),
        "max": ms(samples[samples.len() - 1]),
    })
}
