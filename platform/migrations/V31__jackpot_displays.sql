-- Version 31: what the displays show (the displays crate; README "Live jackpot").
--
-- The running tallies of each raffle's ticket events, kept by the displays' consumer of
-- raffle.tickets.v1 in the transaction of its offsets: money of tickets issued and of tickets
-- voided, and their counts. The jackpot estimate is computed from them by the seal's own split
-- rules; a batch may hold a void without its issue (a partial refund voids money, not tickets),
-- so the tallies are not checked against each other. `changes` counts the batches that moved them (the feeds' version and ETag).
CREATE SCHEMA displays;

CREATE TABLE displays.jackpots (
    raffle_id        uuid PRIMARY KEY REFERENCES catalog.raffle_events (id),
    currency         text NOT NULL CHECK (platform.is_currency(currency)),
    issued_minor     bigint NOT NULL DEFAULT 0 CHECK (issued_minor >= 0),
    voided_minor     bigint NOT NULL DEFAULT 0 CHECK (voided_minor >= 0),
    tickets_issued   bigint NOT NULL DEFAULT 0 CHECK (tickets_issued >= 0),
    tickets_voided   bigint NOT NULL DEFAULT 0 CHECK (tickets_voided >= 0),
    changes          bigint NOT NULL DEFAULT 0,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'raffle_displays') THEN
        CREATE ROLE raffle_displays NOLOGIN;
    END IF;
END $$;

GRANT USAGE ON SCHEMA displays
    TO raffle_ingest, raffle_allocator, raffle_ledger, raffle_draw, raffle_admin, raffle_refunds,
       raffle_notifier, raffle_displays;
GRANT SELECT ON displays.jackpots
    TO raffle_ingest, raffle_allocator, raffle_ledger, raffle_draw, raffle_admin, raffle_refunds,
       raffle_notifier, raffle_displays;
GRANT USAGE ON SCHEMA catalog, sales, ledger, draw, audit, platform, refunds, notify TO raffle_displays;
GRANT SELECT ON ALL TABLES IN SCHEMA catalog, sales, ledger, draw, audit, platform, refunds, notify
    TO raffle_displays;
GRANT SELECT ON public.refinery_schema_history TO raffle_displays;
GRANT INSERT, UPDATE ON displays.jackpots TO raffle_displays;
GRANT INSERT, UPDATE ON ALL TABLES IN SCHEMA platform TO raffle_displays;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA platform TO raffle_displays;
