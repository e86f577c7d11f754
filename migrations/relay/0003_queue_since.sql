-- The source cursor a destination held when it opened a queue itself: the source, listing its
-- queues, deposits from there (federation-protocol.md §7.2).
ALTER TABLE relay_queues ADD COLUMN since text;
