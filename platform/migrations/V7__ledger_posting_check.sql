-- Version 7: the posting-level balance check skips entries written in the same transaction,
-- which the entry-level check already covers at commit; it still catches a posting added to
-- an older entry. Halves the deferred checks of a posting batch.
CREATE OR REPLACE FUNCTION ledger.check_posting_entry_balances() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    total numeric;
    n     bigint;
BEGIN
    IF EXISTS (SELECT 1 FROM ledger.journal_entries e
                WHERE e.id = NEW.entry_id AND e.xmin::text::bigint = txid_current() % 4294967296) THEN
        RETURN NULL;
    END IF;
    SELECT coalesce(sum(amount_minor), 0), count(*) INTO total, n FROM ledger.postings WHERE entry_id = NEW.entry_id;
    IF n < 2 OR total <> 0 THEN
        RAISE EXCEPTION 'journal entry % does not balance: % postings summing to %', NEW.entry_id, n, total
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
