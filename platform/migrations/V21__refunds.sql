-- Version 21: refunds the platform pays. Every sale that took a buyer's money and cannot keep
-- it (a payment rejected as sold out, after the close, for an order already paid or ended)
-- becomes a refund obligation here, in the same transaction as its rejection; the refunds
-- worker asks the provider to pay it back, and the provider's answer (and later webhooks)
-- settle it. The books follow: `refund_owed` (payment clearing against refunds payable) when
-- it is owed, `refund_paid` when the provider paid it, `refund_reopened` when a paid refund
-- later failed.
CREATE SCHEMA refunds;

CREATE TABLE refunds.obligations (
    id                 uuid PRIMARY KEY,
    raffle_id          uuid NOT NULL REFERENCES catalog.raffle_events (id),
    order_id           uuid,
    -- What made it owed, once: `sale-event:<id>` for a rejected payment.
    source_key         text NOT NULL UNIQUE,
    reason_code        text NOT NULL CHECK (reason_code ~ '^[a-z][a-z0-9_]{1,63}$'),
    reason             text NOT NULL,
    provider           text NOT NULL,
    -- The PaymentIntent the money came by; the refund goes back through it.
    payment_reference  text NOT NULL,
    amount_minor       bigint NOT NULL CHECK (amount_minor > 0),
    currency           text NOT NULL CHECK (platform.is_currency(currency)),
    state              text NOT NULL DEFAULT 'owed'
        CHECK (state IN ('owed', 'requested', 'succeeded', 'failed', 'cancelled')),
    -- The Idempotency-Key of a request is `refund-<id>-<generation>`: the same on every retry
    -- of one request, a new one only when finance retries a refund the provider failed.
    key_generation     integer NOT NULL DEFAULT 1 CHECK (key_generation >= 1),
    provider_refund_id text UNIQUE,
    provider_status    text,
    attempts           integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at    timestamptz NOT NULL DEFAULT now(),
    last_error         text,
    -- What the books hold for it: `owed` (refunds payable open) or `paid`.
    booked             text NOT NULL DEFAULT 'owed' CHECK (booked IN ('owed', 'paid')),
    cancelled_by       text,
    cancel_reason      text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    -- A cancelled obligation says who and why; a requested one has been asked for.
    CHECK (state <> 'cancelled' OR (cancelled_by IS NOT NULL AND cancel_reason IS NOT NULL))
);
CREATE INDEX ON refunds.obligations (state, next_attempt_at);
CREATE INDEX ON refunds.obligations (raffle_id, state);
CREATE INDEX ON refunds.obligations (payment_reference);

-- Every call to the provider, kept for finance and for the audit: what was asked, what came
-- back. Append-only.
CREATE TABLE refunds.attempts (
    id              bigserial PRIMARY KEY,
    obligation_id   uuid NOT NULL REFERENCES refunds.obligations (id),
    idempotency_key text NOT NULL,
    http_status     integer,
    outcome         text NOT NULL,
    detail          text NOT NULL,
    at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON refunds.attempts (obligation_id);
CREATE TRIGGER attempts_append_only BEFORE UPDATE OR DELETE ON refunds.attempts
    FOR EACH ROW EXECUTE FUNCTION platform.refuse_change();

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'raffle_refunds') THEN
        CREATE ROLE raffle_refunds NOLOGIN;
    END IF;
END $$;

GRANT USAGE ON SCHEMA refunds
    TO raffle_ingest, raffle_allocator, raffle_ledger, raffle_draw, raffle_admin, raffle_refunds;
GRANT SELECT ON ALL TABLES IN SCHEMA refunds
    TO raffle_ingest, raffle_allocator, raffle_ledger, raffle_draw, raffle_admin, raffle_refunds;
GRANT USAGE ON SCHEMA catalog, sales, ledger, draw, audit, platform TO raffle_refunds;
GRANT SELECT ON ALL TABLES IN SCHEMA catalog, sales, ledger, draw, audit, platform TO raffle_refunds;
GRANT SELECT ON public.refinery_schema_history TO raffle_refunds;

-- The allocator owes refunds as it rejects; the refunds worker asks for them and books them;
-- ingest settles them from the provider's webhooks; the admin API retries and cancels them.
-- All through the refunds crate's code, the one writer of these tables.
GRANT INSERT ON refunds.obligations TO raffle_allocator;
GRANT UPDATE ON refunds.obligations TO raffle_refunds, raffle_ingest, raffle_admin;
GRANT INSERT ON refunds.attempts TO raffle_refunds;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA refunds TO raffle_refunds;
GRANT INSERT ON audit.critical_events TO raffle_refunds;
GRANT INSERT, UPDATE ON audit.critical_event_sequences TO raffle_refunds;

-- The refunds worker books what the provider paid through the ledger's own code.
GRANT INSERT ON ALL TABLES IN SCHEMA ledger TO raffle_refunds;
GRANT UPDATE ON ledger.chain_heads, ledger.accounts TO raffle_refunds;
GRANT DELETE ON ledger.entries_to_check TO raffle_refunds;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA ledger TO raffle_refunds;

-- After a seal the books still take the refunds' entries: money captured for a rejected sale,
-- and its refund, move payment clearing and refunds payable only, never the revenue the seal
-- divided (same function as V12's, with three entry types more).
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
                                'refund_owed', 'refund_paid', 'refund_reopened')
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'raffle % is sealed: a % entry is not accepted after the seal', bad.raffle_id, bad.entry_type
            USING ERRCODE = 'check_violation';
    END IF;
    INSERT INTO ledger.entries_to_check (ids) SELECT array_agg(id) FROM new_entries HAVING count(*) > 0;
    RETURN NULL;
END $$;
