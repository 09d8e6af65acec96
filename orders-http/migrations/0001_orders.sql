-- Orders, their lines, saga progress, idempotency keys, payments, refunds and
-- the product catalog of the orders service. Money is in integer minor units.

CREATE TABLE products (
    id             uuid PRIMARY KEY,
    name           text    NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    price_minor    bigint  NOT NULL CHECK (price_minor >= 0),
    currency       text    NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    active         boolean NOT NULL,
    updated_at_ms  bigint  NOT NULL
);

CREATE TABLE orders (
    id                uuid PRIMARY KEY,
    user_id           text    NOT NULL,
    status            text    NOT NULL CHECK (status IN ('pending', 'confirmed', 'cancelled')),
    cancel_reason     text,
    total_minor       bigint  NOT NULL CHECK (total_minor >= 0),
    currency          text    NOT NULL,
    idempotency_key   text,
    fingerprint       text    NOT NULL,
    cancel_requested  boolean NOT NULL DEFAULT false,
    created_at_ms     bigint  NOT NULL,
    updated_at_ms     bigint  NOT NULL,
    CHECK ((status = 'cancelled') = (cancel_reason IS NOT NULL))
);

CREATE INDEX orders_by_user ON orders (user_id, created_at_ms DESC, id DESC);
CREATE INDEX orders_pending ON orders (id) WHERE status = 'pending';

CREATE TABLE order_lines (
    order_id          uuid    NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    line_no           integer NOT NULL,
    product_id        uuid    NOT NULL,
    name              text    NOT NULL,
    quantity          integer NOT NULL CHECK (quantity > 0),
    unit_price_minor  bigint  NOT NULL CHECK (unit_price_minor >= 0),
    line_total_minor  bigint  NOT NULL CHECK (line_total_minor >= 0),
    PRIMARY KEY (order_id, line_no)
);

CREATE TABLE saga_states (
    order_id       uuid   PRIMARY KEY REFERENCES orders (id) ON DELETE CASCADE,
    step           text   NOT NULL,
    state          jsonb  NOT NULL,
    updated_at_ms  bigint NOT NULL
);

CREATE TABLE idempotency_keys (
    user_id        text   NOT NULL,
    key            text   NOT NULL,
    order_id       uuid   NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    created_at_ms  bigint NOT NULL,
    PRIMARY KEY (user_id, key)
);

CREATE TABLE payments (
    order_id       uuid   PRIMARY KEY REFERENCES orders (id) ON DELETE CASCADE,
    payment_id     text   NOT NULL,
    amount_minor   bigint NOT NULL CHECK (amount_minor >= 0),
    currency       text   NOT NULL,
    created_at_ms  bigint NOT NULL
);

CREATE TABLE refunds (
    order_id       uuid   PRIMARY KEY REFERENCES orders (id) ON DELETE CASCADE,
    refund_id      text   NOT NULL,
    payment_id     text   NOT NULL,
    amount_minor   bigint NOT NULL CHECK (amount_minor >= 0),
    created_at_ms  bigint NOT NULL
);
