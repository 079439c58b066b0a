-- Version 19: what the payment provider told us that moved no tickets, kept once per provider
-- event for finance: payments that are no raffle order's (another product on the same Stripe
-- account, or no order id), failed attempts, partial refunds, refund status changes, disputes.
-- A provider retries an event until it is acknowledged; each is recorded once (its id is the
-- key), not once per retry.
CREATE TABLE sales.provider_events (
    provider          text NOT NULL,
    provider_event_id text NOT NULL,
    event_type        text NOT NULL,
    note              text NOT NULL CHECK (note ~ '^[a-z][a-z0-9_]{1,63}$'),
    detail            text NOT NULL,
    order_id          uuid,
    raffle_id         uuid,
    payment_reference text,
    amount_minor      bigint CHECK (amount_minor >= 0),
    currency          text CHECK (currency IS NULL OR platform.is_currency(currency)),
    received_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, provider_event_id)
);
CREATE INDEX ON sales.provider_events (note, received_at);
CREATE INDEX ON sales.provider_events (payment_reference);
CREATE TRIGGER provider_events_append_only BEFORE UPDATE OR DELETE ON sales.provider_events
    FOR EACH ROW EXECUTE FUNCTION platform.refuse_change();

-- The allocator looks up what it already rejected, to record a rejection once per event.
CREATE INDEX ON sales.rejected_sales (idempotency_key);

GRANT SELECT, INSERT ON sales.provider_events TO raffle_ingest;
GRANT SELECT ON sales.provider_events TO raffle_allocator, raffle_ledger, raffle_draw, raffle_admin;
