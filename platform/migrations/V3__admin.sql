-- Version 3: what the admin API needs beyond the seed.

-- Platform administrators keep the shared reference data (jurisdictions, their regulations,
-- system configuration); everything else is per organisation, through memberships.
ALTER TABLE catalog.users ADD COLUMN is_platform_admin boolean NOT NULL DEFAULT false;

-- A short per-organisation RSU number, used in validation numbers (RSU001-2025-0001).
ALTER TABLE catalog.rsus ADD COLUMN rsu_number integer NOT NULL CHECK (rsu_number BETWEEN 1 AND 999);
ALTER TABLE catalog.rsus ADD CONSTRAINT rsus_number_unique UNIQUE (organization_id, rsu_number);

-- Perk claims carry the perk's organisation through the order's raffle; a claim per order and
-- perk is already unique. Claims are counted into the perk's inventory in the same transaction.

-- Raffle lifecycle transitions, one row each, with who and why: the critical events say the
-- same in words, this table lets code and reports ask "when did sales close".
CREATE TABLE catalog.raffle_transitions (
    id          bigserial PRIMARY KEY,
    raffle_id   uuid NOT NULL REFERENCES catalog.raffle_events (id),
    from_state  text NOT NULL,
    to_state    text NOT NULL,
    reason      text NOT NULL,
    actor       text NOT NULL,
    occurred_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON catalog.raffle_transitions (raffle_id, occurred_at);
CREATE TRIGGER raffle_transitions_append_only BEFORE UPDATE OR DELETE ON catalog.raffle_transitions
    FOR EACH ROW EXECUTE FUNCTION platform.refuse_change();
