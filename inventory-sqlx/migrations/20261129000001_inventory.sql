-- Inventory items, reservations, the stock ledger and the transactional outbox.
--
-- Instants are stored as BIGINT milliseconds since the Unix epoch (UTC), the unit
-- of inventory-core's `Timestamp`, so they round-trip exactly. Only
-- `outbox.published_at`, stamped by the database when a relay hands an event
-- on, is a TIMESTAMPTZ.

CREATE TABLE inventory_items (
    product_id    UUID   PRIMARY KEY,
    quantity      BIGINT NOT NULL CONSTRAINT inventory_items_quantity_non_negative CHECK (quantity >= 0),
    reserved      BIGINT NOT NULL CONSTRAINT inventory_items_reserved_non_negative CHECK (reserved >= 0),
    version       BIGINT NOT NULL CONSTRAINT inventory_items_version_positive CHECK (version >= 1),
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    CONSTRAINT inventory_items_reserved_within_quantity CHECK (reserved <= quantity)
);

CREATE TABLE reservations (
    id            UUID   PRIMARY KEY,
    order_id      UUID   NOT NULL,
    product_id    UUID   NOT NULL REFERENCES inventory_items (product_id),
    quantity      BIGINT NOT NULL CONSTRAINT reservations_quantity_positive CHECK (quantity > 0),
    status        TEXT   NOT NULL CONSTRAINT reservations_status_known
                      CHECK (status IN ('pending', 'confirmed', 'released', 'expired')),
    expires_at_ms BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    -- One reservation per order line; an order may hold many lines.
    CONSTRAINT reservations_order_product_key UNIQUE (order_id, product_id)
);

-- The expiry sweep: pending reservations by when their hold ends.
CREATE INDEX reservations_pending_expiry_idx
    ON reservations (expires_at_ms, id) WHERE status = 'pending';

-- Lazy expiry on reserve: the overdue pending reservations of one product.
CREATE INDEX reservations_pending_product_expiry_idx
    ON reservations (product_id, expires_at_ms, id) WHERE status = 'pending';

-- Every reservation of a product, by id.
CREATE INDEX reservations_product_idx ON reservations (product_id, id);

CREATE TABLE stock_adjustments (
    id              BIGSERIAL PRIMARY KEY,
    product_id      UUID   NOT NULL REFERENCES inventory_items (product_id),
    delta           BIGINT NOT NULL,
    quantity_before BIGINT NOT NULL CHECK (quantity_before >= 0),
    quantity_after  BIGINT NOT NULL CHECK (quantity_after >= 0),
    reason          TEXT   NOT NULL,
    actor           TEXT   NOT NULL,
    at_ms           BIGINT NOT NULL,
    CONSTRAINT stock_adjustments_delta_matches CHECK (quantity_after = quantity_before + delta)
);

CREATE INDEX stock_adjustments_product_idx ON stock_adjustments (product_id, id DESC);

-- Events written in the same transaction as the change that caused them.
CREATE TABLE outbox (
    sequence       BIGSERIAL   PRIMARY KEY,
    event_id       UUID        NOT NULL UNIQUE,
    event_type     TEXT        NOT NULL,
    product_id     UUID        NOT NULL,
    payload        JSONB       NOT NULL,
    correlation_id TEXT,
    occurred_at_ms BIGINT      NOT NULL,
    published_at   TIMESTAMPTZ
);

CREATE INDEX outbox_unpublished_idx ON outbox (sequence) WHERE published_at IS NULL;
