//! The relay's store on a real Postgres database of its own: deposits numbered in order and
//! de-duplicated, bounds that refuse a deposit whole, pages within their limits, acks and
//! deletes that free room, and a queue its destination closed.

use serde_json::json;
use syncropel_protocol::relay::{self as envelope, Envelope, Queue};
use syncropel_protocol::Keypair;
use syncropel_relay::store::{Limits, RelayStore, Through};
use syncropel_relay::RelayError;
use syncropel_store::testing::with_test_database;

const NOW: i64 = 1_800_000_000;

struct Source {
    key: Keypair,
    queue: Queue,
    sseq: i64,
}

impl Source {
    fn new() -> Source {
        let key = Keypair::generate();
        let queue = Queue {
            source_did: key.did_key(),
            dest_did: Keypair::generate().did_key(),
            pair_id: "fed_1".into(),
            generation: 1,
            thread: "th_inbox".into(),
            target_namespace: "default".into(),
        };
        Source {
            key,
            queue,
            sseq: 0,
        }
    }

    /// The next envelope of `n` items, checked as the relay checks a deposit.
    fn envelope(&mut self, n: i64) -> Envelope {
        let first = self.sseq + 1;
        self.sseq += n;
        let items = (first..=self.sseq)
            .map(|s| json!({"id": format!("r{s:04}"), "record": {"n": format!("{s:04}")}}))
            .collect();
        let key_id = format!("{}#key-1", self.key.did_key());
        let signed = envelope::sign(
            &self.key,
            &key_id,
            &self.queue,
            "ep1",
            (first, self.sseq),
            items,
            &Default::default(),
        );
        Envelope::check(
            signed.to_string().into_bytes(),
            &self.queue.id(),
            &self.key.did_key(),
        )
        .unwrap()
    }
}

async fn store(url: &str, limits: Limits) -> RelayStore {
    RelayStore::open(url, limits).await.unwrap()
}

#[tokio::test]
async fn deposits_are_numbered_in_order_and_a_resent_one_is_no_second_copy() {
    with_test_database(|url| async move {
        let relay = store(&url, Limits::default()).await;
        let mut source = Source::new();
        let first = source.envelope(2);
        let second = source.envelope(3);
        let a = relay.deposit(&first, NOW).await.unwrap();
        let b = relay.deposit(&second, NOW).await.unwrap();
        assert_eq!(
            (a.rseq, a.duplicate, b.rseq, b.duplicate),
            (1, false, 2, false)
        );
        let again = relay.deposit(&first, NOW).await.unwrap();
        assert_eq!((again.rseq, again.duplicate), (1, true));

        let queue_id = source.queue.id();
        let page = relay.changes(&queue_id, 0, 1000, 8 << 20).await.unwrap();
        let ids: Vec<&str> = page.iter().map(|q| q.envelope_id.as_str()).collect();
        assert_eq!(
            ids,
            [first.envelope_id.as_str(), second.envelope_id.as_str()]
        );
        assert_eq!(page[0].body, first.bytes, "the exact bytes deposited");
        assert!(relay
            .changes(&queue_id, 2, 1000, 8 << 20)
            .await
            .unwrap()
            .is_empty());
        relay.close().await;
    })
    .await;
}

#[tokio::test]
async fn a_page_keeps_within_its_limits_but_always_holds_one_envelope() {
    with_test_database(|url| async move {
        let relay = store(&url, Limits::default()).await;
        let mut source = Source::new();
        for _ in 0..3 {
            relay.deposit(&source.envelope(2), NOW).await.unwrap();
        }
        let queue_id = source.queue.id();
        let rseqs = |page: Vec<syncropel_relay::store::Queued>| -> Vec<i64> {
            page.iter().map(|q| q.rseq).collect()
        };
        assert_eq!(
            rseqs(relay.changes(&queue_id, 0, 3, 8 << 20).await.unwrap()),
            [1]
        );
        assert_eq!(
            rseqs(relay.changes(&queue_id, 0, 4, 8 << 20).await.unwrap()),
            [1, 2]
        );
        assert_eq!(
            rseqs(relay.changes(&queue_id, 1, 1, 8 << 20).await.unwrap()),
            [2]
        );
        assert_eq!(
            rseqs(relay.changes(&queue_id, 0, 1000, 1).await.unwrap()),
            [1]
        );
        relay.close().await;
    })
    .await;
}

#[tokio::test]
async fn a_deposit_past_a_bound_is_refused_whole_until_acks_free_room() {
    with_test_database(|url| async move {
        let limits = Limits {
            items_per_destination: 4,
            ..Limits::default()
        };
        let relay = store(&url, limits).await;
        let mut source = Source::new();
        relay.deposit(&source.envelope(3), NOW).await.unwrap();
        let refused = relay.deposit(&source.envelope(2), NOW).await.unwrap_err();
        assert!(
            matches!(
                refused,
                RelayError::QueueFull {
                    limit: "items",
                    queued: 3,
                    max: 4,
                    ..
                }
            ),
            "{refused}"
        );
        let queue_id = source.queue.id();
        assert_eq!(
            relay
                .changes(&queue_id, 0, 1000, 8 << 20)
                .await
                .unwrap()
                .len(),
            1
        );

        let acked = relay
            .ack_through(&queue_id, Through::Rseq(1))
            .await
            .unwrap();
        assert_eq!((acked.envelopes, acked.items), (1, 3));
        source.sseq -= 2;
        let retried = relay.deposit(&source.envelope(2), NOW).await.unwrap();
        assert_eq!((retried.rseq, retried.duplicate), (2, false));
        relay.close().await;
    })
    .await;
}

#[tokio::test]
async fn a_queue_its_destination_deleted_takes_no_deposit_until_it_reopens_it() {
    with_test_database(|url| async move {
        let relay = store(&url, Limits::default()).await;
        let mut source = Source::new();
        relay.deposit(&source.envelope(2), NOW).await.unwrap();
        let queue_id = source.queue.id();
        let deleted = relay.delete_queue(&queue_id, true, NOW).await.unwrap();
        assert_eq!((deleted.envelopes, deleted.items), (1, 2));
        let refused = relay.deposit(&source.envelope(1), NOW).await.unwrap_err();
        assert!(matches!(refused, RelayError::QueueClosed), "{refused}");

        let dest = source.queue.dest_did.clone();
        relay
            .open_queue(&source.queue, &dest, None, None)
            .await
            .unwrap();
        relay.deposit(&source.envelope(1), NOW).await.unwrap();
        // From the source the queue goes altogether.
        relay.delete_queue(&queue_id, false, NOW).await.unwrap();
        let gone = relay
            .ack_through(&queue_id, Through::Rseq(10))
            .await
            .unwrap_err();
        assert!(matches!(gone, RelayError::NotFound), "{gone}");
        relay.close().await;
    })
    .await;
}

/// The source's bytes are summed over all its destinations; deposits race to the bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_deposits_to_several_destinations_never_pass_the_sources_bound() {
    with_test_database(|url| async move {
        let mut first = Source::new();
        let mut second = Source::new();
        second.key = Keypair::from_seed(&first.key.seed());
        second.queue = Queue {
            dest_did: Keypair::generate().did_key(),
            ..first.queue.clone()
        };
        let mut envelopes = Vec::new();
        for _ in 0..40 {
            envelopes.push(first.envelope(1));
            envelopes.push(second.envelope(1));
        }
        // Room for ten of the eighty (of one size: they differ only in their queues' digests).
        let size = envelopes.iter().map(|e| e.bytes.len()).max().unwrap() as i64;
        let limits = Limits {
            bytes_per_source: 10 * size,
            ..Limits::default()
        };
        let relay = std::sync::Arc::new(store(&url, limits).await);
        let deposits = envelopes.into_iter().map(|envelope| {
            let relay = relay.clone();
            tokio::spawn(async move { relay.deposit(&envelope, NOW).await })
        });
        let mut stored = 0;
        for deposit in deposits {
            match deposit.await.unwrap() {
                Ok(_) => stored += 1,
                Err(RelayError::QueueFull {
                    limit: "source_bytes",
                    ..
                }) => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(stored, 10, "exactly the bound, over both destinations");
        relay.close().await;
    })
    .await;
}

#[tokio::test]
async fn expired_envelopes_go_counted_and_free_their_room() {
    with_test_database(|url| async move {
        let limits = Limits {
            items_per_destination: 3,
            ..Limits::default()
        };
        let relay = store(&url, limits).await;
        let mut source = Source::new();
        let short = Some(3600);
        let dest = source.queue.dest_did.clone();
        relay
            .open_queue(&source.queue, &dest, short, None)
            .await
            .unwrap();
        relay.deposit(&source.envelope(2), NOW).await.unwrap();
        relay
            .deposit(&source.envelope(1), NOW + 1800)
            .await
            .unwrap();
        assert_eq!(
            relay.sweep_expired(NOW + 3599).await.unwrap(),
            0,
            "none is due yet"
        );
        assert_eq!(relay.sweep_expired(NOW + 3601).await.unwrap(), 2);
        let queue = relay.queue(&source.queue.id()).await.unwrap().unwrap();
        assert_eq!(
            (queue.items, queue.expired_items, queue.expired_through_sseq),
            (1, 2, 2)
        );
        let held = relay.totals().await.unwrap();
        assert_eq!((held.items, held.oldest_enqueued_at), (1, Some(NOW + 1800)));
        // Their room is free again.
        relay
            .deposit(&source.envelope(2), NOW + 3601)
            .await
            .unwrap();
        relay.close().await;
    })
    .await;
}
