-- The record of applied events is pruned by age (after a window longer than
-- any redelivery): an index on when each was processed keeps the prune a
-- range read instead of a walk of the whole table.
CREATE INDEX IF NOT EXISTS processed_events_processed_at_idx
    ON processed_events (processed_at);
