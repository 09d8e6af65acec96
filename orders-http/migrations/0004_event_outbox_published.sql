-- Sent outbox rows by when they were sent, for the relay's prune (part of
-- event-bus's ENVELOPE_OUTBOX_DDL).
CREATE INDEX IF NOT EXISTS event_outbox_published_idx
    ON event_outbox (published_at) WHERE published_at IS NOT NULL;
