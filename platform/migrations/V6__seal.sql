-- Version 6: the seal of a raffle's books.

-- One row per sealed raffle: what the draw and the auditors rely on. Append-only.
CREATE TABLE ledger.seals (
    raffle_id            uuid PRIMARY KEY REFERENCES catalog.raffle_events (id),
    head_hash            bytea NOT NULL CHECK (length(head_hash) = 32),
    entries              bigint NOT NULL CHECK (entries >= 0),
    currency             text NOT NULL CHECK (platform.is_currency(currency)),
    gross_sales_minor    bigint NOT NULL CHECK (gross_sales_minor >= 0),
    refunds_minor        bigint NOT NULL CHECK (refunds_minor >= 0),
    written_off_minor    bigint NOT NULL CHECK (written_off_minor >= 0),
    gross_receipts_minor bigint NOT NULL CHECK (gross_receipts_minor >= 0),
    prizes               jsonb NOT NULL,
    operating_fee_minor  bigint NOT NULL CHECK (operating_fee_minor >= 0),
    net_proceeds_minor   bigint NOT NULL,
    tickets_eligible     bigint NOT NULL CHECK (tickets_eligible >= 0),
    tickets_voided       bigint NOT NULL CHECK (tickets_voided >= 0),
    -- SHA-256 over "draw_number:ticket_id\n" of every eligible ticket in draw-number order.
    ticket_set_digest    bytea NOT NULL CHECK (length(ticket_set_digest) = 32),
    -- SHA-256 of the draw seed; the seed itself is revealed at the draw.
    seed_commitment      bytea NOT NULL CHECK (length(seed_commitment) = 32),
    sealed_at            timestamptz NOT NULL DEFAULT now(),
    sealed_by            text NOT NULL
);
CREATE TRIGGER seals_append_only BEFORE UPDATE OR DELETE ON ledger.seals
    FOR EACH ROW EXECUTE FUNCTION platform.refuse_change();
