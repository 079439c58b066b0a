-- Version 24: the provider's payouts, imported from its itemized payout reconciliation report
-- and matched to the books line by line. A line is kept once (its balance transaction id);
-- its fee is booked to processing fees (or dispute fees), and each payout moves what it paid
-- out from payment clearing to the bank.
CREATE TABLE ledger.payout_lines (
    raffle_id              uuid NOT NULL REFERENCES catalog.raffle_events (id),
    balance_transaction_id text PRIMARY KEY CHECK (length(balance_transaction_id) BETWEEN 1 AND 255),
    payout_id              text NOT NULL CHECK (length(payout_id) BETWEEN 1 AND 255),
    payout_effective_at    text,
    reporting_category     text NOT NULL,
    currency               text NOT NULL CHECK (platform.is_currency(currency)),
    gross_minor            bigint NOT NULL,
    fee_minor              bigint NOT NULL,
    net_minor              bigint NOT NULL CHECK (net_minor = gross_minor - fee_minor),
    payment_intent         text,
    order_id               uuid,
    source_id              text,
    -- What it matched in the books, in words (an order's sale, a refund paid, a dispute).
    matched                text NOT NULL,
    file_sha256            text NOT NULL CHECK (file_sha256 ~ '^[0-9a-f]{64}$'),
    imported_by            text NOT NULL,
    imported_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON ledger.payout_lines (raffle_id, payout_id);
CREATE INDEX ON ledger.payout_lines (payment_intent);
CREATE TRIGGER payout_lines_append_only BEFORE UPDATE OR DELETE ON ledger.payout_lines
    FOR EACH ROW EXECUTE FUNCTION platform.refuse_change();

GRANT SELECT ON ledger.payout_lines
    TO raffle_ingest, raffle_allocator, raffle_ledger, raffle_draw, raffle_admin, raffle_refunds;
GRANT INSERT ON ledger.payout_lines TO raffle_ledger;

-- Payouts come days after the sale, so after the seal too: fees and payouts move clearing, the
-- bank and the fee accounts, never the revenue the seal divided.
CREATE OR REPLACE FUNCTION ledger.check_new_entries() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    SELECT n.raffle_id INTO bad
      FROM (SELECT DISTINCT raffle_id FROM new_entries) n
     WHERE NOT EXISTS (SELECT 1 FROM catalog.raffle_events r WHERE r.id = n.raffle_id)
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'journal entry of raffle %, which does not exist', bad.raffle_id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    SELECT n.raffle_id, n.entry_type INTO bad
      FROM new_entries n JOIN ledger.seals s ON s.raffle_id = n.raffle_id
     WHERE n.entry_type NOT IN ('prize_awarded', 'prize_payout', 'unclaimed_prize',
                                'refund_owed', 'refund_paid', 'refund_reopened', 'cash_deposit',
                                'provider_fee', 'provider_payout')
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'raffle % is sealed: a % entry is not accepted after the seal', bad.raffle_id, bad.entry_type
            USING ERRCODE = 'check_violation';
    END IF;
    INSERT INTO ledger.entries_to_check (ids) SELECT array_agg(id) FROM new_entries HAVING count(*) > 0;
    RETURN NULL;
END $$;
