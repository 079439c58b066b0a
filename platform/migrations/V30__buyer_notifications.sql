-- Version 30: the e-mails buyers get (the notifier crate; README "Buyer e-mails").
--
-- One row per message the platform owes a buyer: their draw numbers once issued, a refused or
-- voided sale, a win, and a copy sent again on request. The notifier writes a row in the same
-- transaction as the consumer offsets of the ticket event it comes from, so a crash neither
-- loses one nor makes two; `dedupe_key` says what the message is about (`issued:<order>`,
-- `voided:<event>`, `rejected:<order>`, `won:<order>`, `resend:<id>`) and is unique. The sender
-- then delivers each row over SMTP with its own `message_id`, fixed when the row is written,
-- so a delivery repeated after a crash carries the same Message-ID and mail systems fold it.
CREATE SCHEMA notify;

CREATE TABLE notify.messages (
    id               uuid PRIMARY KEY,
    raffle_id        uuid NOT NULL REFERENCES catalog.raffle_events (id),
    order_id         uuid NOT NULL REFERENCES sales.orders (id),
    kind             text NOT NULL CHECK (kind IN
                         ('tickets_issued', 'sale_rejected', 'tickets_voided', 'won', 'resend')),
    dedupe_key       text NOT NULL UNIQUE CHECK (length(dedupe_key) BETWEEN 1 AND 200),
    -- NULL: the buyer left no address; the row says so and nothing is sent.
    to_address       text CHECK (to_address IS NULL OR to_address ~ '^[^@\s]+@[^@\s]+$'),
    subject          text NOT NULL,
    text_body        text NOT NULL,
    html_body        text NOT NULL,
    message_id       text NOT NULL UNIQUE CHECK (message_id ~ '^<[^<>@\s]+@[^<>@\s]+>$'),
    -- pending → sending → sent; back to pending (with a later next_attempt_at) when the SMTP
    -- server could not be reached or refused for now; failed after max attempts (reported).
    state            text NOT NULL DEFAULT 'pending'
                         CHECK (state IN ('pending', 'sending', 'sent', 'failed', 'no_address')),
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    smtp_reply       text,
    requested_by     text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz,
    CHECK ((state = 'no_address') = (to_address IS NULL)),
    CHECK ((state = 'sent') = (sent_at IS NOT NULL))
);
CREATE INDEX messages_due ON notify.messages (next_attempt_at) WHERE state IN ('pending', 'sending');
CREATE INDEX messages_of_order ON notify.messages (order_id, created_at);

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'raffle_notifier') THEN
        CREATE ROLE raffle_notifier NOLOGIN;
    END IF;
END $$;

-- Everyone reads; the notifier reads everything it composes from.
GRANT USAGE ON SCHEMA notify
    TO raffle_ingest, raffle_allocator, raffle_ledger, raffle_draw, raffle_admin, raffle_refunds, raffle_notifier;
GRANT SELECT ON notify.messages
    TO raffle_ingest, raffle_allocator, raffle_ledger, raffle_draw, raffle_admin, raffle_refunds, raffle_notifier;
GRANT USAGE ON SCHEMA catalog, sales, ledger, draw, audit, platform, refunds TO raffle_notifier;
GRANT SELECT ON ALL TABLES IN SCHEMA catalog, sales, ledger, draw, audit, platform, refunds TO raffle_notifier;
GRANT SELECT ON public.refinery_schema_history TO raffle_notifier;

-- The notifier: its messages, and the consumer's plumbing (leases, offsets, processed events).
GRANT INSERT, UPDATE ON notify.messages TO raffle_notifier;
GRANT INSERT, UPDATE ON ALL TABLES IN SCHEMA platform TO raffle_notifier;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA platform TO raffle_notifier;
-- A copy sent again on request: the buyer asks through ingest, staff through the admin API,
-- both through the notifier crate's code.
GRANT INSERT ON notify.messages TO raffle_ingest, raffle_admin;
