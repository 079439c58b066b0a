-- Version 4: what the sales pipeline needs beyond the seed.

-- Every sale that was refused, with the reason, so a refund can follow and finance and the
-- operator can see it: refused at the HTTP edge (ingest) or by the allocator.
CREATE TABLE sales.rejected_sales (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    raffle_id       uuid,
    order_id        uuid,
    source          text NOT NULL CHECK (source IN ('online', 'rsu')),
    rsu_id          uuid,
    local_id        text,
    sale_event_id   uuid UNIQUE,
    idempotency_key text,
    reason_code     text NOT NULL CHECK (reason_code ~ '^[a-z][a-z0-9_]{1,63}$'),
    reason          text NOT NULL,
    amount_minor    bigint CHECK (amount_minor >= 0),
    currency        text CHECK (currency IS NULL OR platform.is_currency(currency)),
    rejected_by     text NOT NULL CHECK (rejected_by IN ('ingest', 'allocator')),
    rejected_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON sales.rejected_sales (raffle_id, rejected_at);
CREATE TRIGGER rejected_sales_append_only BEFORE UPDATE OR DELETE ON sales.rejected_sales
    FOR EACH ROW EXECUTE FUNCTION platform.refuse_change();

-- The RSU's own id of a sale, so a batch upload can answer "duplicate" per record.
ALTER TABLE sales.orders ADD COLUMN rsu_local_id text;
ALTER TABLE sales.orders ADD CONSTRAINT orders_rsu_local_unique UNIQUE (rsu_id, rsu_local_id);
