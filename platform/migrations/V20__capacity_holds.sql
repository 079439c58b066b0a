-- Version 20: capacity is held for a payment in progress. Checkout holds the order's tickets
-- (counted with the sold ones against the raffle's maximum) for the life of the payment
-- attempt, answers "sold out" before anyone pays once sold + held reaches it, and the
-- allocator releases the hold when it decides the order (paid, failed, rejected); a hold
-- whose time ran out is released by the allocator's sweeper. Before, a sell-out took 23,832
-- payments for numbers that no longer existed.
CREATE TABLE sales.capacity_holds (
    raffle_id    uuid PRIMARY KEY REFERENCES catalog.raffle_events (id),
    held_tickets bigint NOT NULL DEFAULT 0 CHECK (held_tickets >= 0)
);
-- Until when the order's tickets are held; NULL once the hold is released (or never held).
ALTER TABLE sales.orders ADD COLUMN hold_expires_at timestamptz;
CREATE INDEX orders_hold_expiry ON sales.orders (hold_expires_at) WHERE hold_expires_at IS NOT NULL;

GRANT SELECT, INSERT, UPDATE ON sales.capacity_holds TO raffle_ingest, raffle_allocator;
GRANT SELECT ON sales.capacity_holds TO raffle_ledger, raffle_draw, raffle_admin;
