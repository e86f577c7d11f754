-- How far the queue's source sequences were acknowledged (by the destination's pulls or the
-- source's trims): a source compares it with `expired_through_sseq` to tell whether records
-- expired before their destination had them (federation-protocol.md §7.4).
ALTER TABLE relay_queues ADD COLUMN acked_through_sseq bigint NOT NULL DEFAULT 0;
