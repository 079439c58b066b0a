-- Version 25: what the provider has refunded of an order while its tickets stay (a partial
-- refund), cumulative as the provider reports it. The allocator books each increase as a
-- reversal of that amount, and a whole refund afterwards reverses only the rest, so every cent
-- that leaves the provider's clearing has its entry.
ALTER TABLE sales.orders
    ADD COLUMN refunded_minor bigint NOT NULL DEFAULT 0
        CHECK (refunded_minor >= 0 AND refunded_minor <= total_amount_minor);
