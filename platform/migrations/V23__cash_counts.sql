-- Version 23: the cash a device took, counted by two people and deposited. A count moves the
-- device's float account (the value of its sales) into undeposited cash, the difference
-- booked as over or short; a deposit moves undeposited cash to the bank, with its slip.
CREATE TABLE ledger.cash_counts (
    id               uuid PRIMARY KEY,
    raffle_id        uuid NOT NULL REFERENCES catalog.raffle_events (id),
    rsu_id           uuid NOT NULL REFERENCES catalog.rsus (id),
    -- The seller whose cash box it was, when the device was one seller's.
    seller_id        text CHECK (seller_id IS NULL OR length(seller_id) BETWEEN 1 AND 100),
    currency         text NOT NULL CHECK (platform.is_currency(currency)),
    -- The starting cash the device was handed (not the raffle's money).
    float_minor      bigint NOT NULL CHECK (float_minor >= 0),
    counted_minor    bigint NOT NULL CHECK (counted_minor >= 0),
    -- The value of its sales since its last count, as the books held it.
    expected_minor   bigint NOT NULL CHECK (expected_minor >= 0),
    over_short_minor bigint NOT NULL,
    counted_by       text NOT NULL CHECK (length(trim(counted_by)) BETWEEN 1 AND 200),
    witnessed_by     text NOT NULL CHECK (length(trim(witnessed_by)) BETWEEN 1 AND 200),
    counted_at       timestamptz NOT NULL DEFAULT now(),
    deposit_due_by   date NOT NULL,
    note             text,
    -- Two people count, in each other's presence.
    CHECK (lower(trim(counted_by)) <> lower(trim(witnessed_by))),
    CHECK (over_short_minor = counted_minor - float_minor - expected_minor)
);
CREATE INDEX ON ledger.cash_counts (raffle_id, rsu_id, counted_at);
CREATE TRIGGER cash_counts_append_only BEFORE UPDATE OR DELETE ON ledger.cash_counts
    FOR EACH ROW EXECUTE FUNCTION platform.refuse_change();

CREATE TABLE ledger.cash_deposits (
    id            uuid PRIMARY KEY,
    raffle_id     uuid NOT NULL REFERENCES catalog.raffle_events (id),
    slip_number   text NOT NULL CHECK (length(trim(slip_number)) BETWEEN 1 AND 100),
    deposited_on  date NOT NULL,
    amount_minor  bigint NOT NULL CHECK (amount_minor > 0),
    currency      text NOT NULL CHECK (platform.is_currency(currency)),
    recorded_by   text NOT NULL,
    recorded_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (raffle_id, slip_number)
);
CREATE TRIGGER cash_deposits_append_only BEFORE UPDATE OR DELETE ON ledger.cash_deposits
    FOR EACH ROW EXECUTE FUNCTION platform.refuse_change();

-- Counts and deposits are recorded through the ledger's code (`raffle cash …`, as the ledger's
-- role); every service reads them.
GRANT SELECT ON ledger.cash_counts, ledger.cash_deposits
    TO raffle_ingest, raffle_allocator, raffle_ledger, raffle_draw, raffle_admin, raffle_refunds;
GRANT INSERT ON ledger.cash_counts, ledger.cash_deposits TO raffle_ledger;

-- After a seal the books still take deposits (they move undeposited cash to the bank only)
-- and the refunds' entries (V21).
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
                                'refund_owed', 'refund_paid', 'refund_reopened', 'cash_deposit')
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'raffle % is sealed: a % entry is not accepted after the seal', bad.raffle_id, bad.entry_type
            USING ERRCODE = 'check_violation';
    END IF;
    INSERT INTO ledger.entries_to_check (ids) SELECT array_agg(id) FROM new_entries HAVING count(*) > 0;
    RETURN NULL;
END $$;
