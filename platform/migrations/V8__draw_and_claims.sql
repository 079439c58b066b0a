-- Version 8: the draw, prize claims, and the books after the seal.

-- How long winners have to claim, counted from the draw time; printed on receipts as the
-- claim-by date, so it is known before the first sale.
ALTER TABLE catalog.raffle_events
    ADD COLUMN claim_period_days integer NOT NULL DEFAULT 365 CHECK (claim_period_days BETWEEN 1 AND 3650);

-- After the seal a raffle's books take only the draw's entries: prizes awarded to winners,
-- prizes paid out on a claim, unclaimed prizes returned to proceeds. Checked once per
-- statement, so the sales consumer's batched inserts pay for one lookup, not one per row.
CREATE FUNCTION ledger.check_entries_after_seal() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    SELECT n.raffle_id, n.entry_type INTO bad
      FROM new_entries n JOIN ledger.seals s ON s.raffle_id = n.raffle_id
     WHERE n.entry_type NOT IN ('prize_awarded', 'prize_payout', 'unclaimed_prize')
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'raffle % is sealed: a % entry is not accepted after the seal', bad.raffle_id, bad.entry_type
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER entries_after_seal AFTER INSERT ON ledger.journal_entries
    REFERENCING NEW TABLE AS new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger.check_entries_after_seal();

-- Every claim attempt, accepted or refused, with why: the evidence, and what the rate limit on
-- wrong claims for one number counts.
CREATE TABLE draw.claim_attempts (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    raffle_id      uuid NOT NULL REFERENCES catalog.raffle_events (id),
    winning_number bigint NOT NULL,
    claimed_by     text NOT NULL,
    outcome        text NOT NULL CHECK (outcome IN ('accepted', 'refused')),
    reason         text,
    attempted_at   timestamptz NOT NULL DEFAULT now(),
    CHECK ((outcome = 'refused') = (reason IS NOT NULL))
);
CREATE INDEX ON draw.claim_attempts (raffle_id, winning_number, attempted_at);
CREATE TRIGGER claim_attempts_append_only BEFORE UPDATE OR DELETE ON draw.claim_attempts
    FOR EACH ROW EXECUTE FUNCTION platform.refuse_change();

-- Prizes nobody claimed within the claim period, returned to the charity's proceeds once.
CREATE TABLE draw.unclaimed_prizes (
    draw_result_id uuid PRIMARY KEY REFERENCES draw.draw_results (id),
    expired_at     timestamptz NOT NULL DEFAULT now(),
    recorded_by    text NOT NULL
);
CREATE TRIGGER unclaimed_prizes_append_only BEFORE UPDATE OR DELETE ON draw.unclaimed_prizes
    FOR EACH ROW EXECUTE FUNCTION platform.refuse_change();

-- A result is claimed or expired, never both.
CREATE FUNCTION draw.check_claim_open() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'prize_claims' AND EXISTS (SELECT 1 FROM draw.unclaimed_prizes WHERE draw_result_id = NEW.draw_result_id)
       OR TG_TABLE_NAME = 'unclaimed_prizes' AND EXISTS (SELECT 1 FROM draw.prize_claims WHERE draw_result_id = NEW.draw_result_id) THEN
        RAISE EXCEPTION 'draw result % is already claimed or expired', NEW.draw_result_id USING ERRCODE = 'unique_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER claim_open BEFORE INSERT ON draw.prize_claims FOR EACH ROW EXECUTE FUNCTION draw.check_claim_open();
CREATE TRIGGER unclaimed_open BEFORE INSERT ON draw.unclaimed_prizes FOR EACH ROW EXECUTE FUNCTION draw.check_claim_open();
CREATE TRIGGER prize_claims_append_only BEFORE UPDATE OR DELETE ON draw.prize_claims
    FOR EACH ROW EXECUTE FUNCTION platform.refuse_change();
