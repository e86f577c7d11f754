//! Star and mesh (section 4): five stewards converge on one thread, each copy keeping its
//! signature.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::json;
use syncropel_protocol::Keypair;
use syncropel_testkit::Node;

use super::{approving, ms};

/// Starts `n` stewards that approve each other's pair requests.
async fn fleet(n: usize) -> Vec<Node> {
    let keys: Vec<Keypair> = (0..n).map(|_| Keypair::generate()).collect();
    let dids: Vec<String> = keys.iter().map(Keypair::did_key).collect();
    let mut nodes = Vec::new();
    for key in keys {
        nodes.push(approving(Some(key), &dids).await);
    }
    nodes
}

/// Every node emits `count` records on `thread` as its own actor, from clock `from`.
async fn emit_all(nodes: &[Node], thread: &str, from: i64, count: i64) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for (i, node) in nodes.iter().enumerate() {
        for clock in from..from + count {
            let actor = format!("did:sync:user:n{i}");
            let record = node
                .emit(thread, &actor, clock, json!({"from": i, "c": clock}))
                .await;
            ids.insert(record["id"].as_str().unwrap().to_string());
        }
    }
    ids
}

async fn converge(nodes: &[Node], thread: &str, expected: &BTreeSet<String>) {
    let start = Instant::now();
    for (i, node) in nodes.iter().enumerate() {
        loop {
            let ids = node.ids(thread).await;
            if &ids == expected {
                break;
            }
            assert!(
                ids.is_subset(expected),
                "node {i} holds records nobody emitted"
            );
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "node {i} holds {} of {} records",
                ids.len(),
                expected.len()
            );
            tokio::time::sleep(ms(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_star_converges_through_its_hub() {
    let nodes = fleet(5).await;
    let (hub, leaves) = nodes.split_first().unwrap();
    let thread = "th_fed_star";
    for leaf in leaves {
        leaf.pair_with(hub.url()).await;
    }
    let mut expected = emit_all(&nodes, thread, 1, 3).await;
    for leaf in leaves {
        hub.pull(thread, &leaf.did()).await;
        leaf.pull(thread, &hub.did()).await;
    }
    expected.extend(emit_all(&nodes, thread, 4, 2).await);
    converge(&nodes, thread, &expected).await;
    // Every copy keeps its author's signature.
    for leaf in leaves {
        for record in leaf.records(thread).await {
            let from = record["body"]["from"].as_u64().unwrap() as usize;
            assert_eq!(record["signer"], nodes[from].did(), "{record}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mesh_of_five_converges() {
    let nodes = fleet(5).await;
    let thread = "th_fed_mesh";
    for i in 0..nodes.len() {
        for j in i + 1..nodes.len() {
            nodes[i].pair_with(nodes[j].url()).await;
        }
    }
    let mut expected = emit_all(&nodes, thread, 1, 3).await;
    for (i, node) in nodes.iter().enumerate() {
        for (j, peer) in nodes.iter().enumerate() {
            if i != j {
                node.pull(thread, &peer.did()).await;
            }
        }
    }
    expected.extend(emit_all(&nodes, thread, 4, 2).await);
    converge(&nodes, thread, &expected).await;
}
