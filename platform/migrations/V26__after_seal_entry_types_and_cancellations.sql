-- Version 26: three things the refunds work left.
--
-- 1. The entry types a sealed raffle's books still take were a list written into
--    ledger.check_new_entries, copied and extended by V21, V23 and V24. They are now rows of a
--    table, each with the reason it does not touch what the seal divided, and the function
--    reads them: the next entry type is one INSERT, not a fourth copy of the function.
CREATE TABLE ledger.entry_types_after_seal (
    entry_type text PRIMARY KEY CHECK (entry_type ~ '^[a-z][a-z0-9_]{1,63}$'),
    why        text NOT NULL
);
INSERT INTO ledger.entry_types_after_seal (entry_type, why) VALUES
    ('prize_awarded',   'the draw awards what the seal set aside'),
    ('prize_payout',    'a claimed prize paid from what the seal set aside'),
    ('unclaimed_prize', 'an unclaimed prize handled as the rules say'),
    ('refund_owed',     'money the provider holds for a sale that was never issued: clearing and refunds payable only'),
    ('refund_paid',     'a refund the provider paid: refunds payable and clearing only'),
    ('refund_reopened', 'a paid refund that failed later: clearing and refunds payable only'),
    ('cash_deposit',    'counted cash taken to the bank: undeposited cash and bank only'),
    ('provider_fee',    'the provider''s processing fees on sales already booked'),
    ('provider_payout', 'the provider paying out what it holds: clearing and bank only');
GRANT SELECT ON ledger.entry_types_after_seal
    TO raffle_ingest, raffle_allocator, raffle_ledger, raffle_draw, raffle_admin, raffle_refunds;
CREATE TRIGGER entry_types_after_seal_append_only BEFORE UPDATE OR DELETE ON ledger.entry_types_after_seal
    FOR EACH ROW EXECUTE FUNCTION platform.refuse_change();

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
     WHERE NOT EXISTS (SELECT 1 FROM ledger.entry_types_after_seal a WHERE a.entry_type = n.entry_type)
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'raffle % is sealed: a % entry is not accepted after the seal', bad.raffle_id, bad.entry_type
            USING ERRCODE = 'check_violation';
    END IF;
    INSERT INTO ledger.entries_to_check (ids) SELECT array_agg(id) FROM new_entries HAVING count(*) > 0;
    RETURN NULL;
END $$;

-- 2. The seal records the refunds still owed when it was made: the refunds payable balance
--    (re-derivable from the entries, like every other figure of the seal) and how many
--    obligations it stands for. Zero for the raffles sealed before this version.
ALTER TABLE ledger.seals
    ADD COLUMN refunds_owed_minor bigint NOT NULL DEFAULT 0 CHECK (refunds_owed_minor >= 0),
    ADD COLUMN refunds_owed_count bigint NOT NULL DEFAULT 0 CHECK (refunds_owed_count >= 0);

-- 3. A cancelled raffle owes every paid order back: the refunds worker owes them (source
--    `cancel:<order>`) and books them, as it books what it pays.
GRANT INSERT ON refunds.obligations TO raffle_refunds;
