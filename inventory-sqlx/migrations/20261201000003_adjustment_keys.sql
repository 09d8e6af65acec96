-- Stock adjustments may carry an idempotency key (an HTTP Idempotency-Key):
-- at most one ledger entry per product and key, so a client that lost the
-- answer to an adjustment can send it again without counting it twice.
ALTER TABLE stock_adjustments ADD COLUMN idempotency_key TEXT;

CREATE UNIQUE INDEX stock_adjustments_key_idx
    ON stock_adjustments (product_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
