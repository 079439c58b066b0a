-- Version 22: finance confirms a raffle's reconciliation. The seed's reconciliationConfirmedAt
-- and reconciliationConfirmedBy (V1) are written once, with the digest of the report that was
-- confirmed, and never changed afterwards: a confirmation is evidence.
ALTER TABLE catalog.raffle_events
    ADD COLUMN reconciliation_report_sha256 text
        CHECK (reconciliation_report_sha256 ~ '^[0-9a-f]{64}$'),
    ADD CONSTRAINT reconciliation_confirmed_whole CHECK (
        (reconciliation_confirmed_at IS NULL) = (reconciliation_confirmed_by IS NULL)
        AND (reconciliation_confirmed_at IS NULL) = (reconciliation_report_sha256 IS NULL));

CREATE FUNCTION catalog.keep_reconciliation_confirmed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.reconciliation_confirmed_at IS NOT NULL AND (
           NEW.reconciliation_confirmed_at IS DISTINCT FROM OLD.reconciliation_confirmed_at
        OR NEW.reconciliation_confirmed_by IS DISTINCT FROM OLD.reconciliation_confirmed_by
        OR NEW.reconciliation_report_sha256 IS DISTINCT FROM OLD.reconciliation_report_sha256) THEN
        RAISE EXCEPTION 'raffle %: its reconciliation was confirmed by % at %; a confirmation is not changed',
            OLD.id, OLD.reconciliation_confirmed_by, OLD.reconciliation_confirmed_at
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER reconciliation_confirmed_once BEFORE UPDATE ON catalog.raffle_events
    FOR EACH ROW EXECUTE FUNCTION catalog.keep_reconciliation_confirmed();
