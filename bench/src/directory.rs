//! The did:sync directory, served in-process: DID creation, resolves (`GET did.json`) and signed
//! update ops, each over HTTP with keep-alive clients.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use futures_util::{stream, StreamExt, TryStreamExt};
use reqwest::StatusCode;
use serde_json::{json, Value};
use syncropel_directory::{app, AppState, Clock, Rules, Store};
use syncropel_protocol::did_sync::{self, sign_operation, OpType, Operation, Service};
use syncropel_protocol::Keypair;
use tokio::sync::Mutex;

use crate::load::{http_client, merge, round3, self_cpu_secs, short, throughput, Outcome};

/// Reads a directory answer fully (so the connection is reused) and classifies it.
async fn finish(res: reqwest::Result<reqwest::Response>, expect: StatusCode) -> Outcome {
    match res {
        Ok(r) => {
            let status = r.status();
            match r.bytes().await {
                Ok(_) if status == expect => Outcome::Ok,
                Ok(body) => Outcome::Err(short(&format!(
                    "HTTP {status}: {}",
                    String::from_utf8_lossy(&body)
                ))),
                Err(e) => Outcome::Err(format!("reading body: {e}")),
            }
        }
        Err(e) => Outcome::Err(format!("transport: {e}")),
    }
}

/// Updates a DID can take in one hour besides its genesis (the directory allows 10 ops/h).
const UPDATES_PER_DID: u64 = 9;

#[derive(Args)]
pub struct DirectoryArgs {
    /// Database of the directory; a fresh SQLite file in a temporary directory by default.
    /// A Postgres URL should name an empty database.
    #[arg(long)]
    database_url: Option<String>,
    /// DIDs created before measuring; resolves spread over all of them, and updates need one
    /// DID per 9 ops (the real per-DID limit stays on).
    #[arg(long, default_value_t = 5000)]
    dids: u64,
    /// Concurrent clients (each a closed loop over one keep-alive connection).
    #[arg(long, default_value_t = 64)]
    clients: usize,
    #[arg(long, default_value_t = 5)]
    duration_secs: u64,
    #[arg(long, default_value_t = 1)]
    warmup_secs: u64,
}

/// One benchmark DID: its rotation key and current head.
struct Did {
    hash: String,
    key: Keypair,
    handle: String,
    head: Mutex<String>,
}

fn op(kind: OpType, prev: Option<&str>, did: &Did, record: &str, endpoint: String) -> Operation {
    Operation {
        kind,
        prev: prev.map(str::to_owned),
        signing_keys: BTreeMap::from([("key-1".to_owned(), record.to_owned())]),
        rotation_keys: vec![did.key.did_key()],
        handles: vec![did.handle.clone()],
        namespaces: vec!["bench".to_owned()],
        services: BTreeMap::from([(
            "syncropel".to_owned(),
            Service {
                kind: "syncropel".to_owned(),
                endpoint,
            },
        )]),
        compromised: Vec::new(),
        created_at: "2026-05-01T12:00:00Z".to_owned(),
        sig: None,
    }
}

pub async fn directory(a: DirectoryArgs) -> Result<Value> {
    let temp = tempfile::tempdir().context("creating a temporary directory")?;
    let (url, backend) = match &a.database_url {
        Some(url) if url.starts_with("postgres") => (url.clone(), "postgres"),
        Some(url) => (url.clone(), "sqlite"),
        None => (
            format!(
                "sqlite://{}?mode=rwc",
                temp.path().join("directory.db").display()
            ),
            "sqlite",
        ),
    };
    let store = Store::open(&url).await.context("opening the directory")?;
    let state = AppState::new(
        Arc::new(store),
        Rules::default(),
        Clock::system(),
        Default::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app(state)).await });

    // Keys derive from the index, so runs are repeatable.
    let record = Keypair::from_seed(&[0xEE; 32]).did_key()["did:key:".len()..].to_owned();
    let seed = |i: u64| {
        let mut seed = [7u8; 32];
        seed[..8].copy_from_slice(&i.to_le_bytes());
        seed
    };
    let started = Instant::now();
    // The directory has its own API, outside the steward's contract: plain HTTP here.
    let client = http_client(a.clients)?;
    let dids: Vec<Did> = stream::iter(0..a.dids.max(1))
        .map(|i| {
            let (client, base, record) = (client.clone(), base.clone(), record.clone());
            async move {
                let mut did = Did {
                    hash: String::new(),
                    key: Keypair::from_seed(&seed(i)),
                    handle: format!("bench-{i}"),
                    head: Mutex::default(),
                };
                let genesis = op(
                    OpType::Genesis,
                    None,
                    &did,
                    &record,
                    format!("https://{i}.example"),
                );
                let genesis = sign_operation(&genesis, &did.key);
                let response = client
                    .post(format!("{base}/directory/genesis"))
                    .body(genesis.to_string())
                    .send()
                    .await?;
                if response.status() != StatusCode::CREATED {
                    bail!("genesis answered {}", response.status());
                }
                let body: Value = response.json().await?;
                did.hash = body["did"].as_str().unwrap_or_default()["did:sync:".len()..].to_owned();
                did.head = Mutex::new(did_sync::cid(&genesis));
                Ok(did)
            }
        })
        .buffer_unordered(a.clients.max(1))
        .try_collect()
        .await?;
    let create_secs = started.elapsed().as_secs_f64();
    let dids = Arc::new(dids);

    // Server and clients share this process, so its CPU per request bounds what the machine
    // would do for both; useful when other load skews the rates.
    let cpu0 = self_cpu_secs();
    let resolve = {
        let (client, base, dids) = (client.clone(), base.clone(), dids.clone());
        throughput(
            "resolves",
            a.clients,
            a.warmup_secs,
            a.duration_secs,
            move |i: u64| {
                let url = format!(
                    "{base}/directory/{}/did.json",
                    dids[(i % dids.len() as u64) as usize].hash
                );
                let request = client.get(url);
                async move { finish(request.send().await, StatusCode::OK).await }
            },
        )
        .await?
    };

    let cpu1 = self_cpu_secs();
    let resolve = with_cpu(resolve, "resolves", cpu0, cpu1, &a);

    // Op i goes to DID i mod N, so concurrent ops are on distinct DIDs; the per-DID lock only
    // guards the (unlikely) case of one DID coming round again while its last op is in flight.
    let capacity = dids.len() as u64 * UPDATES_PER_DID;
    let update = throughput(
        "ops",
        a.clients,
        a.warmup_secs,
        a.duration_secs,
        move |i: u64| {
            let (client, base, dids, record) =
                (client.clone(), base.clone(), dids.clone(), record.clone());
            async move {
                if i >= capacity {
                    return Outcome::Err("every DID took its 9 updates; pass more --dids".into());
                }
                let did = &dids[(i % dids.len() as u64) as usize];
                let mut head = did.head.lock().await;
                let update = op(
                    OpType::Update,
                    Some(&head),
                    did,
                    &record,
                    format!("https://{i}.example"),
                );
                let signed = sign_operation(&update, &did.key);
                let cid = did_sync::cid(&signed);
                let response = client
                    .post(format!("{base}/directory/update/{}", did.hash))
                    .body(signed.to_string())
                    .send()
                    .await;
                let outcome = finish(response, StatusCode::OK).await;
                if matches!(outcome, Outcome::Ok) {
                    *head = cid;
                }
                outcome
            }
        },
    )
    .await?;
    let update = with_cpu(update, "ops", cpu1, self_cpu_secs(), &a);

    Ok(json!({
        "backend": backend,
        "dids": a.dids,
        "create_secs": round3(create_secs),
        "creates_per_sec": round3(a.dids as f64 / create_secs),
        "resolve": resolve,
        "update": merge(update, json!({"signed": true})),
        "nproc": std::thread::available_parallelism().map_or(0, |n| n.get()),
    }))
}

/// Adds `cpu_us_per_request`: this process's CPU (server and clients) over the phase divided by
/// the requests completed in it (warm-up included on both sides).
fn with_cpu(
    report: Value,
    unit: &str,
    before: Option<f64>,
    after: Option<f64>,
    a: &DirectoryArgs,
) -> Value {
    let rate = report[format!("{unit}_per_sec")].as_f64().unwrap_or(0.0);
    let requests = rate * (a.duration_secs + a.warmup_secs) as f64;
    let per_request = match (before, after) {
        (Some(b), Some(e)) if requests > 0.0 => Some(round3((e - b) * 1e6 / requests)),
        _ => None,
    };
    merge(report, json!({"cpu_us_per_request": per_request}))
}
