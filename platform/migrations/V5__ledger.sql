-- Version 5: the double-entry ledger of each raffle.
--
-- Sign convention: a posting's amount is positive for a debit and negative for a credit, in
-- minor units of the entry's currency. The postings of an entry sum to zero (checked by a
-- deferred constraint trigger at commit, so an entry is written as a whole). Entries and
-- postings are append-only. Each entry carries the SHA-256 of its canonical text chained to the
-- previous entry of its raffle (computed and verified by the ledger crate; `raffle audit
-- verify` recomputes it from the rows alone).

CREATE TABLE ledger.accounts (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    raffle_id  uuid NOT NULL REFERENCES catalog.raffle_events (id),
    code       text NOT NULL CHECK (code ~ '^[a-z_]+(/[0-9a-f-]{36})?$'),
    kind       text NOT NULL CHECK (kind IN ('asset', 'liability', 'revenue', 'expense', 'equity')),
    currency   text NOT NULL CHECK (platform.is_currency(currency)),
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (raffle_id, code, currency),
    UNIQUE (id, raffle_id)
);

CREATE TABLE ledger.journal_entries (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    raffle_id     uuid NOT NULL REFERENCES catalog.raffle_events (id),
    sequence      bigint NOT NULL CHECK (sequence >= 1),
    entry_type    text NOT NULL CHECK (entry_type ~ '^[a-z_]{2,40}$'),
    -- The event that caused it (a raffle.tickets.v1 event id): an event posts once.
    event_id      uuid NOT NULL UNIQUE,
    order_id      uuid,
    description   text NOT NULL,
    currency      text NOT NULL CHECK (platform.is_currency(currency)),
    occurred_at   timestamptz NOT NULL,
    recorded_at   timestamptz NOT NULL DEFAULT now(),
    previous_hash bytea NOT NULL CHECK (length(previous_hash) = 32),
    hash          bytea NOT NULL UNIQUE CHECK (length(hash) = 32),
    UNIQUE (raffle_id, sequence),
    UNIQUE (id, raffle_id)
);
CREATE INDEX ON ledger.journal_entries (raffle_id, occurred_at);
CREATE INDEX ON ledger.journal_entries (order_id);

CREATE TABLE ledger.postings (
    entry_id     uuid NOT NULL,
    raffle_id    uuid NOT NULL,
    account_id   uuid NOT NULL,
    amount_minor bigint NOT NULL CHECK (amount_minor <> 0),
    PRIMARY KEY (entry_id, account_id),
    FOREIGN KEY (entry_id, raffle_id) REFERENCES ledger.journal_entries (id, raffle_id),
    FOREIGN KEY (account_id, raffle_id) REFERENCES ledger.accounts (id, raffle_id)
);
CREATE INDEX ON ledger.postings (account_id);

-- The newest entry of each raffle's chain: where the next entry links.
CREATE TABLE ledger.chain_heads (
    raffle_id uuid PRIMARY KEY REFERENCES catalog.raffle_events (id),
    sequence  bigint NOT NULL,
    hash      bytea NOT NULL CHECK (length(hash) = 32)
);

CREATE FUNCTION ledger.check_entry_balances() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    total numeric;
    n     bigint;
BEGIN
    SELECT coalesce(sum(amount_minor), 0), count(*) INTO total, n FROM ledger.postings WHERE entry_id = NEW.id;
    IF n < 2 OR total <> 0 THEN
        RAISE EXCEPTION 'journal entry % of raffle % does not balance: % postings summing to %',
            NEW.id, NEW.raffle_id, n, total USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER entry_balances AFTER INSERT ON ledger.journal_entries
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger.check_entry_balances();

-- A posting added later, in another transaction, would unbalance its entry: the same check
-- runs for every entry a transaction touches through its postings.
CREATE FUNCTION ledger.check_posting_entry_balances() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    total numeric;
    n     bigint;
BEGIN
    SELECT coalesce(sum(amount_minor), 0), count(*) INTO total, n FROM ledger.postings WHERE entry_id = NEW.entry_id;
    IF n < 2 OR total <> 0 THEN
        RAISE EXCEPTION 'journal entry % does not balance: % postings summing to %', NEW.entry_id, n, total
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER posting_entry_balances AFTER INSERT ON ledger.postings
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger.check_posting_entry_balances();

CREATE TRIGGER entries_append_only BEFORE UPDATE OR DELETE ON ledger.journal_entries
    FOR EACH ROW EXECUTE FUNCTION platform.refuse_change();
CREATE TRIGGER postings_append_only BEFORE UPDATE OR DELETE ON ledger.postings
    FOR EACH ROW EXECUTE FUNCTION platform.refuse_change();
CREATE TRIGGER entries_no_truncate BEFORE TRUNCATE ON ledger.journal_entries
    FOR EACH STATEMENT EXECUTE FUNCTION platform.refuse_change();
CREATE TRIGGER postings_no_truncate BEFORE TRUNCATE ON ledger.postings
    FOR EACH STATEMENT EXECUTE FUNCTION platform.refuse_change();
