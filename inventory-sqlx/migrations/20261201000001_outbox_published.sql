-- Sent outbox rows by when they were sent: the relay prunes the oldest sent
-- rows past their retention, and without this index every prune read the
-- whole table, however few rows were due.
CREATE INDEX outbox_published_idx ON outbox (published_at) WHERE published_at IS NOT NULL;
