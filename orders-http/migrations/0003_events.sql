-- Events: the outbox of order.* events (written in the transaction of the
-- change they describe, drained by event-bus's relay), the ids of inventory
-- events already applied (deduplicated in the transaction of their effect),
-- and the holds inventory's events report for each order. The first two
-- tables are event-bus's ENVELOPE_OUTBOX_DDL and PROCESSED_EVENTS_DDL.

CREATE TABLE IF NOT EXISTS event_outbox (
    sequence     BIGSERIAL   PRIMARY KEY,
    event_id     UUID        NOT NULL UNIQUE,
    event_type   TEXT        NOT NULL,
    ordering_key TEXT        NOT NULL,
    envelope     JSONB       NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at TIMESTAMPTZ);
CREATE INDEX IF NOT EXISTS event_outbox_unpublished_idx
    ON event_outbox (sequence) WHERE published_at IS NULL;

CREATE TABLE IF NOT EXISTS processed_events (
    consumer     TEXT        NOT NULL,
    event_id     UUID        NOT NULL,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id));

CREATE TABLE order_holds (
    order_id        uuid    NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    reservation_id  uuid    NOT NULL,
    product_id      uuid    NOT NULL,
    quantity        integer NOT NULL CHECK (quantity > 0),
    status          text    NOT NULL CHECK (status IN ('reserved', 'confirmed', 'released', 'expired')),
    updated_at_ms   bigint  NOT NULL,
    PRIMARY KEY (order_id, reservation_id)
);

-- Inventory's events name the saga's current inventory order id.
CREATE INDEX saga_states_inventory_order ON saga_states ((state ->> 'inventory_order_id'));
