-- Version 18: least privilege. One group role per service (NOLOGIN; a deployment gives each
-- service a login role that is a member of its group, and the migration owner alone owns the
-- tables). A member of a service role reads what it needs and writes only the tables its
-- service owns (README "Database", "Roles"); it cannot change another owner's schema, cannot
-- disable triggers (only a table's owner can) and cannot skip them (session_replication_role
-- needs a superuser). In development everything runs as the one superuser, which is none of
-- this; tests/database.rs holds the grants.
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['raffle_ingest', 'raffle_allocator', 'raffle_ledger', 'raffle_draw', 'raffle_admin'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', r);
        END IF;
    END LOOP;
END $$;

-- Every service reads every schema: checks span owners (the allocator reads the catalog,
-- the seal reads sales, the report reads everything). Reading is not writing.
GRANT USAGE ON SCHEMA catalog, sales, ledger, draw, audit, platform
    TO raffle_ingest, raffle_allocator, raffle_ledger, raffle_draw, raffle_admin;
GRANT SELECT ON ALL TABLES IN SCHEMA catalog, sales, ledger, draw, audit, platform
    TO raffle_ingest, raffle_allocator, raffle_ledger, raffle_draw, raffle_admin;
GRANT SELECT ON public.refinery_schema_history
    TO raffle_ingest, raffle_allocator, raffle_ledger, raffle_draw, raffle_admin;

-- Every service writes critical events (numbered by a trigger through their sequence table).
GRANT INSERT ON audit.critical_events
    TO raffle_ingest, raffle_allocator, raffle_ledger, raffle_draw, raffle_admin;
GRANT INSERT, UPDATE ON audit.critical_event_sequences
    TO raffle_ingest, raffle_allocator, raffle_ledger, raffle_draw, raffle_admin;

-- The consumers' plumbing: leases, offsets, processed events, the outbox.
GRANT INSERT, UPDATE ON ALL TABLES IN SCHEMA platform TO raffle_allocator, raffle_ledger;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA platform TO raffle_allocator, raffle_ledger;

-- ingest: pending orders, refusals, RSU receipts; a device's own number blocks.
GRANT INSERT, UPDATE ON sales.orders TO raffle_ingest;
GRANT INSERT ON sales.rejected_sales, sales.rsu_receipts TO raffle_ingest;
GRANT UPDATE ON catalog.rsu_api_keys, catalog.raffle_ranges TO raffle_ingest;
GRANT INSERT, UPDATE ON catalog.rsu_allocations, catalog.validation_number_blocks TO raffle_ingest;

-- allocator: orders, tickets, refusals, and the counters.
GRANT INSERT, UPDATE ON sales.orders, sales.tickets TO raffle_allocator;
GRANT INSERT ON sales.rejected_sales TO raffle_allocator;
GRANT UPDATE ON catalog.raffle_events, catalog.raffle_ranges, catalog.rsu_allocations,
    catalog.validation_number_blocks TO raffle_allocator;

-- ledger (the consumer and the seal): the books, the raffle's state, written-off blocks, the
-- draw's pending execution with its seed.
GRANT INSERT ON ALL TABLES IN SCHEMA ledger TO raffle_ledger, raffle_draw;
-- ensure_account's INSERT … ON CONFLICT DO UPDATE (a no-op update) needs UPDATE.
GRANT UPDATE ON ledger.chain_heads, ledger.accounts TO raffle_ledger, raffle_draw;
GRANT DELETE ON ledger.entries_to_check TO raffle_ledger, raffle_draw;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA ledger TO raffle_ledger, raffle_draw;
GRANT UPDATE ON catalog.raffle_events, catalog.rsu_allocations TO raffle_ledger;
GRANT INSERT ON catalog.raffle_transitions TO raffle_ledger, raffle_draw, raffle_admin;
GRANT INSERT, UPDATE ON draw.draw_executions TO raffle_ledger;

-- draw engine: draws, results, claims; winning tickets marked; its prize entries go through
-- the ledger's own code (above).
GRANT INSERT, UPDATE ON ALL TABLES IN SCHEMA draw TO raffle_draw;
GRANT UPDATE ON sales.tickets, catalog.raffle_events TO raffle_draw;

-- admin API: the catalog, perk claims, failed authentications.
GRANT INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA catalog TO raffle_admin;
GRANT INSERT ON sales.perk_claims TO raffle_admin;
GRANT INSERT, UPDATE ON audit.authentication_failures TO raffle_admin;

GRANT USAGE ON ALL SEQUENCES IN SCHEMA catalog, sales, draw, audit
    TO raffle_ingest, raffle_allocator, raffle_ledger, raffle_draw, raffle_admin;
