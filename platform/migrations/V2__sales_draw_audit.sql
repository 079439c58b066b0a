-- Version 2: orders and tickets (sales), draws (draw), critical events (audit).

---------------------------------------------------------------------------------------------
-- sales
---------------------------------------------------------------------------------------------

-- An order is created pending at checkout (online) or arrives complete from an RSU. Tickets
-- are created only when payment completes (just-in-time issuance).
CREATE TABLE sales.orders (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    raffle_id           uuid NOT NULL REFERENCES catalog.raffle_events (id),
    package_id          uuid NOT NULL,
    validation_number   text NOT NULL CHECK (validation_number ~ '^[A-Z0-9-]{1,40}$'),
    ticket_count        integer NOT NULL CHECK (ticket_count > 0),
    total_amount_minor  bigint NOT NULL CHECK (total_amount_minor >= 0),
    currency            text NOT NULL CHECK (platform.is_currency(currency)),
    payment_status      text NOT NULL DEFAULT 'pending' CHECK (payment_status IN
                            ('pending', 'completed', 'failed', 'refunded', 'rejected', 'voided')),
    payment_provider    text,
    payment_reference   text,
    -- Provider event id or rsu:{rsu_id}:{local_id}: the same sale can never be recorded twice.
    idempotency_key     text UNIQUE CHECK (length(idempotency_key) BETWEEN 1 AND 200),
    customer_name       text,
    customer_email      text,
    customer_phone      text,
    source              text NOT NULL CHECK (source IN ('online', 'rsu')),
    rsu_id              uuid REFERENCES catalog.rsus (id),
    rsu_allocation_id   uuid,
    operator_id         text,
    is_offline_sale     boolean NOT NULL DEFAULT false,
    offline_sync_status text CHECK (offline_sync_status IN ('pending', 'synced', 'failed')),
    offline_created_at  timestamptz,
    rejection_reason    text,
    paid_at             timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    created_by          text,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (id, raffle_id),
    UNIQUE (raffle_id, validation_number),
    UNIQUE (payment_provider, payment_reference),
    FOREIGN KEY (package_id, raffle_id) REFERENCES catalog.ticket_packages (id, raffle_id),
    FOREIGN KEY (rsu_allocation_id, raffle_id) REFERENCES catalog.rsu_allocations (id, raffle_id),
    CHECK ((source = 'rsu') = (rsu_id IS NOT NULL AND rsu_allocation_id IS NOT NULL)),
    CHECK (payment_status <> 'rejected' OR rejection_reason IS NOT NULL)
);
CREATE INDEX ON sales.orders (raffle_id, payment_status);

-- One row per draw number sold. Unique per raffle, inside its range (and its allocation), and
-- always belonging to an order of the same raffle.
CREATE TABLE sales.tickets (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    raffle_id         uuid NOT NULL,
    order_id          uuid NOT NULL,
    range_id          uuid NOT NULL,
    rsu_allocation_id uuid,
    draw_number       bigint NOT NULL CHECK (draw_number >= 1),
    state             text NOT NULL DEFAULT 'sold' CHECK (state IN ('sold', 'voided', 'winner', 'claimed')),
    sold_at           timestamptz NOT NULL,
    sold_by           text,
    voided_at         timestamptz,
    voided_by         text,
    voided_reason     text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (raffle_id, draw_number),
    FOREIGN KEY (order_id, raffle_id) REFERENCES sales.orders (id, raffle_id),
    FOREIGN KEY (range_id, raffle_id) REFERENCES catalog.raffle_ranges (id, raffle_id),
    FOREIGN KEY (rsu_allocation_id, raffle_id) REFERENCES catalog.rsu_allocations (id, raffle_id),
    CHECK ((state = 'voided') = (voided_at IS NOT NULL))
);
CREATE INDEX ON sales.tickets (order_id);

CREATE FUNCTION sales.check_ticket_number() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    lo bigint;
    hi bigint;
BEGIN
    SELECT start_number, end_number INTO lo, hi FROM catalog.raffle_ranges WHERE id = NEW.range_id;
    IF NEW.draw_number < lo OR NEW.draw_number > hi THEN
        RAISE EXCEPTION 'draw number % of raffle % lies outside range % (%..%)',
            NEW.draw_number, NEW.raffle_id, NEW.range_id, lo, hi USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.rsu_allocation_id IS NOT NULL THEN
        SELECT start_number, end_number INTO lo, hi FROM catalog.rsu_allocations WHERE id = NEW.rsu_allocation_id;
        IF NEW.draw_number < lo OR NEW.draw_number > hi THEN
            RAISE EXCEPTION 'draw number % of raffle % lies outside allocation % (%..%)',
                NEW.draw_number, NEW.raffle_id, NEW.rsu_allocation_id, lo, hi USING ERRCODE = 'check_violation';
        END IF;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER ticket_number_in_range BEFORE INSERT OR UPDATE OF draw_number, range_id, rsu_allocation_id
    ON sales.tickets FOR EACH ROW EXECUTE FUNCTION sales.check_ticket_number();

CREATE TABLE sales.perk_claims (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    perk_id    uuid NOT NULL REFERENCES catalog.perks (id),
    order_id   uuid NOT NULL REFERENCES sales.orders (id),
    claimed_at timestamptz,
    claimed_by text,
    status     text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'claimed', 'expired')),
    claim_code text NOT NULL UNIQUE,
    metadata   jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (perk_id, order_id)
);

---------------------------------------------------------------------------------------------
-- draw
---------------------------------------------------------------------------------------------

CREATE TABLE draw.draw_executions (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    raffle_event_id     uuid NOT NULL REFERENCES catalog.raffle_events (id),
    method              text NOT NULL CHECK (method IN ('rng', 'manual')),
    state               text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'in_progress', 'completed', 'failed')),
    started_at          timestamptz,
    completed_at        timestamptz,
    -- Commit-reveal: the commitment is published at the seal; the seed only at the draw.
    rng_seed_commitment bytea CHECK (length(rng_seed_commitment) = 32),
    rng_seed            bytea CHECK (length(rng_seed) = 32),
    conducted_by        text NOT NULL,
    system_checksum     text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
-- A raffle is drawn once.
CREATE UNIQUE INDEX one_completed_draw ON draw.draw_executions (raffle_event_id) WHERE state = 'completed';

CREATE TABLE draw.draw_results (
    id                       uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    draw_execution_id        uuid NOT NULL REFERENCES draw.draw_executions (id),
    prize_id                 uuid NOT NULL REFERENCES catalog.prizes (id),
    position                 integer NOT NULL CHECK (position >= 1),
    winner_index             integer NOT NULL DEFAULT 1 CHECK (winner_index >= 1),
    winning_ticket_id        uuid NOT NULL REFERENCES sales.tickets (id),
    winning_number           bigint NOT NULL CHECK (winning_number >= 1),
    prize_value_at_draw_minor bigint NOT NULL CHECK (prize_value_at_draw_minor >= 0),
    currency                 text NOT NULL CHECK (platform.is_currency(currency)),
    selected_at              timestamptz NOT NULL DEFAULT now(),
    UNIQUE (draw_execution_id, prize_id, winner_index),
    UNIQUE (draw_execution_id, winning_ticket_id)
);
CREATE TRIGGER draw_results_append_only BEFORE UPDATE OR DELETE ON draw.draw_results
    FOR EACH ROW EXECUTE FUNCTION platform.refuse_change();

CREATE TABLE draw.prize_claims (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    draw_result_id      uuid NOT NULL UNIQUE REFERENCES draw.draw_results (id),
    claimed_at          timestamptz NOT NULL DEFAULT now(),
    claimed_by          text NOT NULL,
    verification_method text NOT NULL CHECK (verification_method IN ('validation_number', 'manual')),
    verified_by         text
);

---------------------------------------------------------------------------------------------
-- audit
---------------------------------------------------------------------------------------------

-- Per-organisation consecutive numbering that never resets or skips: the counter row is
-- updated in the transaction that inserts the event, so a rolled-back event rolls back its
-- number too. Platform-wide events use the nil UUID as their scope.
CREATE TABLE audit.critical_event_sequences (
    scope_id      uuid PRIMARY KEY,
    last_sequence bigint NOT NULL CHECK (last_sequence >= 0)
);

CREATE TABLE audit.critical_events (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid REFERENCES catalog.organizations (id),
    sequence_number bigint NOT NULL,
    event_type      text NOT NULL CHECK (event_type ~ '^[A-Z][A-Z0-9_]{1,63}$'),
    raffle_id       uuid,
    rsu_id          uuid,
    user_id         text,
    severity        text NOT NULL CHECK (severity IN ('INFO', 'WARNING', 'CRITICAL')),
    description     text NOT NULL,
    metadata        jsonb NOT NULL DEFAULT '{}'::jsonb,
    occurred_at     timestamptz NOT NULL DEFAULT now(),
    retain_until    timestamptz NOT NULL,
    UNIQUE NULLS NOT DISTINCT (organization_id, sequence_number)
);
CREATE INDEX ON audit.critical_events (raffle_id, occurred_at);

CREATE FUNCTION audit.number_critical_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit.critical_event_sequences AS s (scope_id, last_sequence)
    VALUES (coalesce(NEW.organization_id, '00000000-0000-0000-0000-000000000000'), 1)
    ON CONFLICT (scope_id) DO UPDATE SET last_sequence = s.last_sequence + 1
    RETURNING last_sequence INTO NEW.sequence_number;
    RETURN NEW;
END $$;
CREATE TRIGGER critical_event_number BEFORE INSERT ON audit.critical_events
    FOR EACH ROW EXECUTE FUNCTION audit.number_critical_event();
CREATE TRIGGER critical_events_append_only BEFORE UPDATE OR DELETE ON audit.critical_events
    FOR EACH ROW EXECUTE FUNCTION platform.refuse_change();
CREATE TRIGGER critical_events_no_truncate BEFORE TRUNCATE ON audit.critical_events
    FOR EACH STATEMENT EXECUTE FUNCTION platform.refuse_change();
