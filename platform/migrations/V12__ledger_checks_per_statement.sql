-- Version 12: the ledger's checks run once per insert statement instead of once per row.
--
-- What the database holds is unchanged or stronger:
--   * every entry written, or given postings, in a transaction balances (at least two
--     postings, summing to zero) when the transaction commits;
--   * an entry belongs to an existing raffle; a posting to an existing entry of its raffle and
--     to an existing account of its raffle, and (new) the account's currency is the entry's;
--   * after a seal only the draw's, claims' and payouts' entries are accepted (V8);
--   * entries, postings and (new) accounts cannot be deleted, and an account keeps its
--     identity, so what an entry or a posting refers to stays there.
--
-- Why: measured in psql on 2,000-entry batches (4,000 postings), the per-row checks were more
-- than half of the ledger's Postgres time: three foreign-key look-ups per posting pair and
-- entry (each a locked index probe), the deferred balance trigger of every entry and of every
-- posting, each a PL/pgSQL call with its own query. Now each insert statement checks its rows
-- with one set query over its transition table and queues its entry ids; one deferred query
-- per queued statement checks the balances at commit. Same batch: about half the time.
--
-- The foreign keys of entries and postings become checks in these triggers, raising
-- foreign_key_violation as before. A foreign key also locked the row it referred to against a
-- concurrent delete; nothing can delete an entry or an account now, and a raffle that has
-- entries has accounts, whose own foreign key keeps the raffle.

ALTER TABLE ledger.journal_entries DROP CONSTRAINT journal_entries_raffle_id_fkey;
ALTER TABLE ledger.postings DROP CONSTRAINT postings_entry_id_raffle_id_fkey;
ALTER TABLE ledger.postings DROP CONSTRAINT postings_account_id_raffle_id_fkey;
-- Only the composite foreign key used it; the primary key identifies an entry.
ALTER TABLE ledger.journal_entries DROP CONSTRAINT journal_entries_id_raffle_id_key;

DROP TRIGGER entries_after_seal ON ledger.journal_entries;
DROP FUNCTION ledger.check_entries_after_seal();
DROP TRIGGER entry_balances ON ledger.journal_entries;
DROP TRIGGER posting_entry_balances ON ledger.postings;
DROP FUNCTION ledger.check_entry_balances();
DROP FUNCTION ledger.check_posting_entry_balances();

-- Entry ids to check at commit: one row per insert statement, removed by its own check.
CREATE TABLE ledger.entries_to_check (
    id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    txid bigint NOT NULL DEFAULT txid_current(),
    ids  uuid[] NOT NULL
);
CREATE INDEX ON ledger.entries_to_check (txid);

CREATE FUNCTION ledger.check_queued_entries() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    -- One index look-up per entry (LATERAL with LIMIT keeps the planner from scanning the
    -- whole table, which it would prefer for a few thousand ids).
    SELECT q.entry_id, s.n, s.total INTO bad
      FROM unnest(NEW.ids) AS q(entry_id)
     CROSS JOIN LATERAL (SELECT count(*) AS n, coalesce(sum(p.amount_minor), 0) AS total
                           FROM ledger.postings p WHERE p.entry_id = q.entry_id) s
     WHERE s.n < 2 OR s.total <> 0
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'journal entry % of raffle % does not balance: % postings summing to %',
            bad.entry_id, (SELECT raffle_id FROM ledger.journal_entries WHERE id = bad.entry_id),
            bad.n, bad.total USING ERRCODE = 'check_violation';
    END IF;
    DELETE FROM ledger.entries_to_check WHERE id = NEW.id;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER queued_entries_balance AFTER INSERT ON ledger.entries_to_check
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger.check_queued_entries();

-- New entries: of an existing raffle (was a foreign key), and after a seal only the draw's,
-- claims' and payouts' (was V8's trigger); then queued for the balance check at commit.
CREATE FUNCTION ledger.check_new_entries() RETURNS trigger LANGUAGE plpgsql AS $$
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
     WHERE n.entry_type NOT IN ('prize_awarded', 'prize_payout', 'unclaimed_prize')
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'raffle % is sealed: a % entry is not accepted after the seal', bad.raffle_id, bad.entry_type
            USING ERRCODE = 'check_violation';
    END IF;
    INSERT INTO ledger.entries_to_check (ids) SELECT array_agg(id) FROM new_entries HAVING count(*) > 0;
    RETURN NULL;
END $$;
CREATE TRIGGER entries_checked AFTER INSERT ON ledger.journal_entries
    REFERENCING NEW TABLE AS new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger.check_new_entries();

CREATE FUNCTION ledger.check_new_postings() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    SELECT p.entry_id, p.raffle_id, p.account_id, e.id IS NULL AS no_entry, e.raffle_id AS entry_raffle,
           a.id IS NULL AS no_account, a.raffle_id AS account_raffle, a.currency AS account_currency,
           e.currency AS entry_currency INTO bad
      FROM new_postings p
      LEFT JOIN LATERAL (SELECT e.id, e.raffle_id, e.currency FROM ledger.journal_entries e
                          WHERE e.id = p.entry_id LIMIT 1) e ON true
      LEFT JOIN LATERAL (SELECT a.id, a.raffle_id, a.currency FROM ledger.accounts a
                          WHERE a.id = p.account_id LIMIT 1) a ON true
     WHERE e.id IS NULL OR a.id IS NULL OR e.raffle_id <> p.raffle_id OR a.raffle_id <> p.raffle_id
        OR a.currency <> e.currency
     LIMIT 1;
    IF FOUND THEN
        IF bad.no_entry THEN
            RAISE EXCEPTION 'posting of raffle % refers to journal entry %, which does not exist',
                bad.raffle_id, bad.entry_id USING ERRCODE = 'foreign_key_violation';
        ELSIF bad.no_account THEN
            RAISE EXCEPTION 'posting of journal entry % refers to account %, which does not exist',
                bad.entry_id, bad.account_id USING ERRCODE = 'foreign_key_violation';
        ELSIF bad.entry_raffle <> bad.raffle_id OR bad.account_raffle <> bad.raffle_id THEN
            RAISE EXCEPTION 'posting of journal entry % says raffle %, but the entry is of raffle % and account % of raffle %',
                bad.entry_id, bad.raffle_id, bad.entry_raffle, bad.account_id, bad.account_raffle
                USING ERRCODE = 'foreign_key_violation';
        ELSE
            RAISE EXCEPTION 'posting of journal entry % (%) is to account % in %',
                bad.entry_id, bad.entry_currency, bad.account_id, bad.account_currency
                USING ERRCODE = 'check_violation';
        END IF;
    END IF;
    -- Entries this transaction wrote are queued already and checked at commit, after every
    -- posting; only older entries given new postings need queueing.
    INSERT INTO ledger.entries_to_check (ids)
        SELECT array_agg(DISTINCT p.entry_id) FROM new_postings p
         WHERE p.entry_id NOT IN (SELECT unnest(q.ids) FROM ledger.entries_to_check q WHERE q.txid = txid_current())
        HAVING count(*) > 0;
    RETURN NULL;
END $$;
CREATE TRIGGER postings_refer_and_balance AFTER INSERT ON ledger.postings
    REFERENCING NEW TABLE AS new_postings
    FOR EACH STATEMENT EXECUTE FUNCTION ledger.check_new_postings();

-- Accounts stay: no delete, no truncate, and an account keeps its identity. (The consumer's
-- upsert rewrites `kind` with its own value to return the id, which changes nothing.)
CREATE FUNCTION ledger.refuse_account_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND (NEW.id, NEW.raffle_id, NEW.code, NEW.kind, NEW.currency)
                            IS NOT DISTINCT FROM (OLD.id, OLD.raffle_id, OLD.code, OLD.kind, OLD.currency) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'ledger account % of raffle % cannot be changed or removed: % refused',
        OLD.id, OLD.raffle_id, TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER accounts_keep_identity BEFORE UPDATE OR DELETE ON ledger.accounts
    FOR EACH ROW EXECUTE FUNCTION ledger.refuse_account_change();
CREATE TRIGGER accounts_no_truncate BEFORE TRUNCATE ON ledger.accounts
    FOR EACH STATEMENT EXECUTE FUNCTION platform.refuse_change();
