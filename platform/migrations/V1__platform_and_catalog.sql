-- Version 1: the owners' schemas, the platform tables (offsets, leases, outbox) and the
-- catalog of the seed (organisations to RSUs). Each schema has one owner:
--   catalog  admin API        organisations, venues, jurisdictions, raffles, packages, prizes, RSUs
--   sales    ingest/allocator orders, tickets, perk claims
--   ledger   ledger           journal entries and postings (issue 5)
--   draw     draw engine      executions, results, prize claims
--   audit    every stage      critical events, append-only
--   platform plumbing         consumer offsets, partition leases, processed events, outbox
-- Money is bigint minor units (never negative) beside a three-letter ISO currency; percentages
-- are numeric; timestamps are timestamptz in UTC.

CREATE EXTENSION IF NOT EXISTS btree_gist;

CREATE SCHEMA catalog;
CREATE SCHEMA sales;
CREATE SCHEMA ledger;
CREATE SCHEMA draw;
CREATE SCHEMA audit;
CREATE SCHEMA platform;

-- A table whose rows are evidence refuses UPDATE and DELETE (and TRUNCATE, via its own trigger).
CREATE FUNCTION platform.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'table %.% is append-only: % refused', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE FUNCTION platform.is_currency(code text) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT code ~ '^[A-Z]{3}$'
$$;

---------------------------------------------------------------------------------------------
-- platform: exactly-once plumbing
---------------------------------------------------------------------------------------------

-- Who owns a partition of a topic for a consumer group. The session advisory lock is the
-- live lease; `epoch` is the fencing token, bumped on every takeover.
CREATE TABLE platform.partition_leases (
    consumer_group text NOT NULL,
    topic          text NOT NULL,
    partition      integer NOT NULL CHECK (partition >= 0),
    epoch          bigint NOT NULL CHECK (epoch >= 1),
    owner          text NOT NULL,
    acquired_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, partition)
);

-- The next offset to consume, written in the same transaction as the effects of the messages
-- before it. Updated only by compare-and-set on (next_offset, lease_epoch).
CREATE TABLE platform.consumer_offsets (
    consumer_group text NOT NULL,
    topic          text NOT NULL,
    partition      integer NOT NULL CHECK (partition >= 0),
    next_offset    bigint NOT NULL CHECK (next_offset >= 0),
    lease_epoch    bigint NOT NULL CHECK (lease_epoch >= 1),
    committed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, partition),
    FOREIGN KEY (consumer_group, topic, partition)
        REFERENCES platform.partition_leases (consumer_group, topic, partition)
);

-- Event ids a consumer has applied: a re-delivered event is a no-op.
CREATE TABLE platform.processed_events (
    consumer_group text NOT NULL,
    event_id       text NOT NULL CHECK (length(event_id) BETWEEN 1 AND 200),
    topic          text NOT NULL,
    partition      integer NOT NULL,
    "offset"       bigint NOT NULL,
    processed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, event_id)
);

-- Messages written in a Postgres transaction and relayed to Kafka after it commits.
CREATE TABLE platform.outbox (
    id           bigserial PRIMARY KEY,
    topic        text NOT NULL,
    message_key  bytea,
    payload      bytea NOT NULL,
    headers      jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX outbox_unpublished ON platform.outbox (id) WHERE published_at IS NULL;

---------------------------------------------------------------------------------------------
-- catalog: who sells what, where, under which rules
---------------------------------------------------------------------------------------------

CREATE TABLE catalog.addresses (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    street     text NOT NULL,
    city       text NOT NULL,
    state      text,
    zip_code   text,
    country    text NOT NULL CHECK (country ~ '^[A-Z]{2}$'),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE catalog.jurisdictions (
    id                     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name                   text NOT NULL,
    code                   text NOT NULL UNIQUE,
    jurisdiction_type      text NOT NULL CHECK (jurisdiction_type IN ('country', 'state', 'province', 'local')),
    parent_jurisdiction_id uuid REFERENCES catalog.jurisdictions (id),
    is_active              boolean NOT NULL DEFAULT true,
    created_at             timestamptz NOT NULL DEFAULT now(),
    created_by             text NOT NULL,
    updated_at             timestamptz NOT NULL DEFAULT now(),
    updated_by             text NOT NULL,
    CHECK (parent_jurisdiction_id IS DISTINCT FROM id)
);

CREATE TABLE catalog.jurisdiction_regulations (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    jurisdiction_id uuid NOT NULL REFERENCES catalog.jurisdictions (id),
    name            text NOT NULL,
    regulation_type text NOT NULL CHECK (regulation_type IN ('prize_limit', 'ticket_price_limit',
                        'event_duration', 'sales_method', 'reporting_requirement', 'data_retention')),
    value           jsonb NOT NULL,
    effective_date  timestamptz NOT NULL,
    expiration_date timestamptz CHECK (expiration_date IS NULL OR expiration_date > effective_date),
    overridable     boolean NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON catalog.jurisdiction_regulations (jurisdiction_id, regulation_type);

CREATE TABLE catalog.organizations (
    id                                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name                               text NOT NULL,
    description                        text,
    license_number                     text,
    primary_currency                   text NOT NULL CHECK (platform.is_currency(primary_currency)),
    contact_email                      text,
    contact_phone                      text,
    address_id                         uuid REFERENCES catalog.addresses (id),
    default_revenue_calculation_method text NOT NULL DEFAULT 'gross_revenue'
        CHECK (default_revenue_calculation_method IN ('gross_revenue', 'net_revenue')),
    tax_rate_percent                   numeric(7, 4) NOT NULL DEFAULT 0 CHECK (tax_rate_percent BETWEEN 0 AND 100),
    tax_included                       boolean NOT NULL DEFAULT false,
    rsu_validation_block_size_default  integer NOT NULL DEFAULT 100 CHECK (rsu_validation_block_size_default > 0),
    rsu_validation_number_prefix       text NOT NULL DEFAULT 'RSU' CHECK (rsu_validation_number_prefix ~ '^[A-Z0-9]{1,12}$'),
    rsu_offline_sync_timeout_minutes   integer NOT NULL DEFAULT 30 CHECK (rsu_offline_sync_timeout_minutes > 0),
    operating_fee_type                 text NOT NULL DEFAULT 'percentage' CHECK (operating_fee_type IN ('percentage', 'fixed')),
    operating_fee_percent              numeric(7, 4) CHECK (operating_fee_percent BETWEEN 0 AND 100),
    operating_fee_minor                bigint CHECK (operating_fee_minor >= 0),
    default_venue_id                   uuid,
    is_active                          boolean NOT NULL DEFAULT true,
    created_at                         timestamptz NOT NULL DEFAULT now(),
    created_by                         text NOT NULL,
    updated_at                         timestamptz NOT NULL DEFAULT now(),
    updated_by                         text NOT NULL,
    CHECK ((operating_fee_type = 'percentage' AND operating_fee_percent IS NOT NULL AND operating_fee_minor IS NULL)
        OR (operating_fee_type = 'fixed' AND operating_fee_minor IS NOT NULL AND operating_fee_percent IS NULL))
);

CREATE TABLE catalog.contacts (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL REFERENCES catalog.organizations (id),
    name            text NOT NULL,
    email           text,
    phone           text,
    address_id      uuid REFERENCES catalog.addresses (id),
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE catalog.venues (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id     uuid NOT NULL REFERENCES catalog.organizations (id),
    name                text NOT NULL,
    description         text,
    address_id          uuid REFERENCES catalog.addresses (id),
    capacity            integer CHECK (capacity >= 0),
    amenities           text[] NOT NULL DEFAULT '{}',
    jurisdiction_id     uuid NOT NULL REFERENCES catalog.jurisdictions (id),
    accepted_currencies text[] NOT NULL CHECK (cardinality(accepted_currencies) >= 1
                            AND array_to_string(accepted_currencies, ',') ~ '^[A-Z]{3}(,[A-Z]{3})*$'),
    timezone            text NOT NULL CHECK (length(timezone) BETWEEN 1 AND 64),
    is_active           boolean NOT NULL DEFAULT true,
    created_at          timestamptz NOT NULL DEFAULT now(),
    created_by          text NOT NULL,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    updated_by          text NOT NULL,
    UNIQUE (id, organization_id)
);

ALTER TABLE catalog.organizations
    ADD FOREIGN KEY (default_venue_id, id) REFERENCES catalog.venues (id, organization_id);

-- A user is the `sub` claim of a bearer JWT (the seed's Cognito sub).
CREATE TABLE catalog.users (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    cognito_sub  text NOT NULL UNIQUE CHECK (length(cognito_sub) BETWEEN 1 AND 255),
    display_name text,
    last_login   timestamptz,
    is_active    boolean NOT NULL DEFAULT true,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE catalog.organization_memberships (
    user_id         uuid NOT NULL REFERENCES catalog.users (id),
    organization_id uuid NOT NULL REFERENCES catalog.organizations (id),
    role            text NOT NULL CHECK (role IN ('admin', 'operator', 'finance', 'auditor')),
    is_default      boolean NOT NULL DEFAULT false,
    joined_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, organization_id)
);
CREATE UNIQUE INDEX one_default_organization ON catalog.organization_memberships (user_id) WHERE is_default;

CREATE TABLE catalog.package_templates (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL REFERENCES catalog.organizations (id),
    name            text NOT NULL,
    description     text,
    ticket_count    integer NOT NULL CHECK (ticket_count > 0),
    price_minor     bigint NOT NULL CHECK (price_minor >= 0),
    currency        text NOT NULL CHECK (platform.is_currency(currency)),
    display_order   integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    created_by      text NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    updated_by      text NOT NULL
);

CREATE TABLE catalog.prize_templates (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL REFERENCES catalog.organizations (id),
    name            text NOT NULL,
    description     text,
    prize_type      text NOT NULL CHECK (prize_type IN ('fixed', 'percentage')),
    value_minor     bigint CHECK (value_minor >= 0),
    percentage      numeric(7, 4) CHECK (percentage > 0 AND percentage <= 100),
    currency        text NOT NULL CHECK (platform.is_currency(currency)),
    created_at      timestamptz NOT NULL DEFAULT now(),
    created_by      text NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    updated_by      text NOT NULL,
    CHECK ((prize_type = 'fixed' AND value_minor IS NOT NULL AND percentage IS NULL)
        OR (prize_type = 'percentage' AND percentage IS NOT NULL AND value_minor IS NULL))
);

CREATE TABLE catalog.perks (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id     uuid NOT NULL REFERENCES catalog.organizations (id),
    name                text NOT NULL,
    description         text,
    perk_type           text NOT NULL CHECK (perk_type IN ('benefit', 'physical_item', 'digital_item', 'experience')),
    category            text,
    requires_inventory  boolean NOT NULL,
    inventory_total     integer NOT NULL DEFAULT 0 CHECK (inventory_total >= 0),
    inventory_allocated integer NOT NULL DEFAULT 0 CHECK (inventory_allocated >= 0),
    inventory_claimed   integer NOT NULL DEFAULT 0 CHECK (inventory_claimed >= 0),
    -- Never negative, also under concurrent claims: the CHECK below is evaluated per row update.
    inventory_available integer GENERATED ALWAYS AS (inventory_total - inventory_allocated - inventory_claimed) STORED,
    is_active           boolean NOT NULL DEFAULT true,
    metadata            jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at          timestamptz NOT NULL DEFAULT now(),
    CHECK (NOT requires_inventory OR inventory_allocated + inventory_claimed <= inventory_total)
);

-- Versioned platform settings; periods never overlap, so "the configuration at time t" is one row.
CREATE TABLE catalog.system_configurations (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    version        text NOT NULL UNIQUE,
    effective_from timestamptz NOT NULL,
    effective_to   timestamptz CHECK (effective_to IS NULL OR effective_to > effective_from),
    settings       jsonb NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    created_by     text NOT NULL,
    EXCLUDE USING gist (tstzrange(effective_from, effective_to) WITH &&)
);

INSERT INTO catalog.system_configurations (version, effective_from, settings, created_by)
VALUES ('1.0.0', '2025-01-01T00:00:00Z', '{
    "verification": {"scheduleIntervalHours": 24, "requiredBeforeDraw": true},
    "dataRetention": {"criticalEventsDays": 1095, "ticketDataDays": 2555},
    "rsu": {"defaultMaxOfflineTickets": 100, "defaultSyncIntervalMinutes": 5, "apiKeyRotationDays": 90,
            "validationNumberBlockSize": 100, "offlineSaleExpirationMinutes": 1440},
    "ticketGeneration": {"strategy": "just_in_time", "batchSize": 1000}
}'::jsonb, 'system');

---------------------------------------------------------------------------------------------
-- catalog: raffles, their number ranges, packages, prizes
---------------------------------------------------------------------------------------------

CREATE TABLE catalog.raffle_events (
    id                           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id              uuid NOT NULL REFERENCES catalog.organizations (id),
    venue_id                     uuid NOT NULL,
    name                         text NOT NULL,
    description                  text,
    event_identifier             text NOT NULL,
    state                        text NOT NULL DEFAULT 'draft' CHECK (state IN ('draft', 'active',
                                     'sales_closed', 'sealed', 'drawn', 'completed', 'cancelled')),
    sales_start_time             timestamptz NOT NULL,
    sales_end_time               timestamptz NOT NULL,
    draw_time                    timestamptz NOT NULL,
    currency                     text NOT NULL CHECK (platform.is_currency(currency)),
    jackpot_seed_minor           bigint NOT NULL DEFAULT 0 CHECK (jackpot_seed_minor >= 0),
    jackpot_starting_minor       bigint NOT NULL DEFAULT 0 CHECK (jackpot_starting_minor >= 0),
    revenue_calculation_method   text NOT NULL DEFAULT 'gross_revenue'
                                     CHECK (revenue_calculation_method IN ('gross_revenue', 'net_revenue')),
    max_tickets                  bigint NOT NULL CHECK (max_tickets > 0),
    -- Running counters, kept exact by the allocator in the transaction that issues tickets.
    total_sold                   bigint NOT NULL DEFAULT 0 CHECK (total_sold >= 0),
    total_voided                 bigint NOT NULL DEFAULT 0 CHECK (total_voided >= 0),
    first_sale_at                timestamptz,
    reconciliation_confirmed_at  timestamptz,
    reconciliation_confirmed_by  text,
    created_at                   timestamptz NOT NULL DEFAULT now(),
    created_by                   text NOT NULL,
    updated_at                   timestamptz NOT NULL DEFAULT now(),
    updated_by                   text NOT NULL,
    UNIQUE (organization_id, event_identifier),
    UNIQUE (id, organization_id),
    FOREIGN KEY (venue_id, organization_id) REFERENCES catalog.venues (id, organization_id),
    CHECK (sales_start_time < sales_end_time AND sales_end_time <= draw_time),
    CHECK (total_sold <= max_tickets)
);

-- The seed's ticketAllocation.ranges. One cursor per range: every number below `next_number`
-- has been issued directly (online) or handed to an allocation (rsu, reserve); so
-- available = end - next + 1 and, per range, sold + voided + unsold = total.
-- A range can be split into sub-ranges (parent_range_id) when one consumer cannot keep up:
-- sub-ranges of a range do not overlap each other, top-level ranges of a raffle neither.
CREATE TABLE catalog.raffle_ranges (
    id                      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    raffle_id               uuid NOT NULL REFERENCES catalog.raffle_events (id),
    parent_range_id         uuid REFERENCES catalog.raffle_ranges (id),
    range_type              text NOT NULL CHECK (range_type IN ('rsu', 'online', 'reserve')),
    start_number            bigint NOT NULL CHECK (start_number >= 1),
    end_number              bigint NOT NULL,
    default_allocation_size integer NOT NULL DEFAULT 1 CHECK (default_allocation_size > 0),
    next_number             bigint NOT NULL,
    allocated               bigint NOT NULL DEFAULT 0 CHECK (allocated >= 0),
    sold                    bigint NOT NULL DEFAULT 0 CHECK (sold >= 0),
    voided                  bigint NOT NULL DEFAULT 0 CHECK (voided >= 0),
    total                   bigint GENERATED ALWAYS AS (end_number - start_number + 1) STORED,
    available               bigint GENERATED ALWAYS AS (end_number - next_number + 1) STORED,
    created_at              timestamptz NOT NULL DEFAULT now(),
    UNIQUE (id, raffle_id),
    CHECK (end_number >= start_number),
    CHECK (next_number BETWEEN start_number AND end_number + 1),
    CHECK (sold + voided <= end_number - start_number + 1),
    CHECK (allocated <= next_number - start_number),
    EXCLUDE USING gist (raffle_id WITH =, int8range(start_number, end_number, '[]') WITH &&)
        WHERE (parent_range_id IS NULL),
    EXCLUDE USING gist (parent_range_id WITH =, int8range(start_number, end_number, '[]') WITH &&)
        WHERE (parent_range_id IS NOT NULL)
);

CREATE TABLE catalog.ticket_packages (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    raffle_id     uuid NOT NULL REFERENCES catalog.raffle_events (id),
    template_id   uuid REFERENCES catalog.package_templates (id),
    name          text NOT NULL,
    description   text,
    ticket_count  integer NOT NULL CHECK (ticket_count > 0),
    price_minor   bigint NOT NULL CHECK (price_minor >= 0),
    currency      text NOT NULL CHECK (platform.is_currency(currency)),
    is_active     boolean NOT NULL DEFAULT true,
    display_order integer NOT NULL DEFAULT 0,
    active_from   timestamptz,
    active_to     timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    created_by    text NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    updated_by    text NOT NULL,
    UNIQUE (id, raffle_id),
    CHECK (active_from IS NULL OR active_to IS NULL OR active_from < active_to)
);

CREATE TABLE catalog.package_perks (
    package_id uuid NOT NULL REFERENCES catalog.ticket_packages (id),
    perk_id    uuid NOT NULL REFERENCES catalog.perks (id),
    PRIMARY KEY (package_id, perk_id)
);

CREATE TABLE catalog.prizes (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    raffle_id    uuid NOT NULL REFERENCES catalog.raffle_events (id),
    template_id  uuid REFERENCES catalog.prize_templates (id),
    name         text NOT NULL,
    description  text,
    prize_type   text NOT NULL CHECK (prize_type IN ('fixed', 'percentage')),
    value_minor  bigint CHECK (value_minor >= 0),
    percentage   numeric(7, 4) CHECK (percentage > 0 AND percentage <= 100),
    currency     text NOT NULL CHECK (platform.is_currency(currency)),
    position     integer NOT NULL CHECK (position >= 1),
    winner_count integer NOT NULL DEFAULT 1 CHECK (winner_count >= 1),
    created_at   timestamptz NOT NULL DEFAULT now(),
    created_by   text NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    updated_by   text NOT NULL,
    UNIQUE (raffle_id, position),
    UNIQUE (id, raffle_id),
    CHECK ((prize_type = 'fixed' AND value_minor IS NOT NULL AND percentage IS NULL)
        OR (prize_type = 'percentage' AND percentage IS NOT NULL AND value_minor IS NULL))
);

---------------------------------------------------------------------------------------------
-- catalog: RSUs, their keys, allocations and validation number blocks
---------------------------------------------------------------------------------------------

CREATE TABLE catalog.rsus (
    id                    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id       uuid NOT NULL REFERENCES catalog.organizations (id),
    venue_id              uuid REFERENCES catalog.venues (id),
    name                  text NOT NULL,
    description           text,
    device_identifier     text NOT NULL,
    state                 text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'suspended', 'retired')),
    max_offline_tickets   integer NOT NULL CHECK (max_offline_tickets >= 0),
    sync_interval_minutes integer NOT NULL CHECK (sync_interval_minutes > 0),
    printer_settings      jsonb NOT NULL DEFAULT '{}'::jsonb,
    last_sync             timestamptz,
    last_validation       timestamptz,
    validation_status     text NOT NULL DEFAULT 'valid' CHECK (validation_status IN ('valid', 'invalid', 'unknown')),
    is_active             boolean NOT NULL DEFAULT true,
    current_operator_id   text,
    created_at            timestamptz NOT NULL DEFAULT now(),
    created_by            text NOT NULL,
    updated_at            timestamptz NOT NULL DEFAULT now(),
    updated_by            text NOT NULL,
    UNIQUE (organization_id, device_identifier)
);

-- API keys are shown once and stored as their SHA-256.
CREATE TABLE catalog.rsu_api_keys (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    rsu_id     uuid NOT NULL REFERENCES catalog.rsus (id),
    key_hash   bytea NOT NULL UNIQUE CHECK (length(key_hash) = 32),
    key_prefix text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by text NOT NULL,
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz,
    CHECK (expires_at > created_at)
);

CREATE TABLE catalog.rsu_allocations (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    raffle_id        uuid NOT NULL REFERENCES catalog.raffle_events (id),
    range_id         uuid NOT NULL,
    range_type       text NOT NULL CHECK (range_type IN ('rsu', 'reserve')),
    entity_type      text NOT NULL DEFAULT 'rsu' CHECK (entity_type IN ('rsu')),
    entity_id        uuid NOT NULL REFERENCES catalog.rsus (id),
    start_number     bigint NOT NULL CHECK (start_number >= 1),
    end_number       bigint NOT NULL,
    -- Next number the device will use; numbers below it are sold or voided.
    next_draw_number bigint NOT NULL,
    total_tickets    bigint GENERATED ALWAYS AS (end_number - start_number + 1) STORED,
    state            text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'exhausted', 'returned', 'written_off')),
    tickets_sold     bigint NOT NULL DEFAULT 0 CHECK (tickets_sold >= 0),
    tickets_voided   bigint NOT NULL DEFAULT 0 CHECK (tickets_voided >= 0),
    tickets_available bigint GENERATED ALWAYS AS (end_number - start_number + 1 - tickets_sold - tickets_voided) STORED,
    allocated_at     timestamptz NOT NULL DEFAULT now(),
    allocated_by     text NOT NULL,
    exhausted_at     timestamptz,
    returned_at      timestamptz,
    metadata         jsonb NOT NULL DEFAULT '{}'::jsonb,
    UNIQUE (id, raffle_id),
    FOREIGN KEY (range_id, raffle_id) REFERENCES catalog.raffle_ranges (id, raffle_id),
    CHECK (end_number >= start_number),
    CHECK (next_draw_number BETWEEN start_number AND end_number + 1),
    CHECK (tickets_sold + tickets_voided <= next_draw_number - start_number),
    EXCLUDE USING gist (raffle_id WITH =, int8range(start_number, end_number, '[]') WITH &&)
);

-- An allocation lies inside its range.
CREATE FUNCTION catalog.check_allocation_in_range() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r catalog.raffle_ranges%ROWTYPE;
BEGIN
    SELECT * INTO r FROM catalog.raffle_ranges WHERE id = NEW.range_id;
    IF NEW.start_number < r.start_number OR NEW.end_number > r.end_number THEN
        RAISE EXCEPTION 'allocation %..% of raffle % lies outside its range %..% (%)',
            NEW.start_number, NEW.end_number, NEW.raffle_id, r.start_number, r.end_number, r.id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER allocation_in_range BEFORE INSERT OR UPDATE OF start_number, end_number, range_id
    ON catalog.rsu_allocations FOR EACH ROW EXECUTE FUNCTION catalog.check_allocation_in_range();

-- Validation numbers `{prefix}{sequence, 4 digits}` for sequence in first_sequence ..
-- first_sequence + block_size - 1, e.g. RSU001-2025-0001 .. RSU001-2025-0100.
CREATE TABLE catalog.validation_number_blocks (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    rsu_allocation_id uuid NOT NULL UNIQUE REFERENCES catalog.rsu_allocations (id),
    rsu_id            uuid NOT NULL REFERENCES catalog.rsus (id),
    raffle_event_id   uuid NOT NULL REFERENCES catalog.raffle_events (id),
    prefix            text NOT NULL CHECK (prefix ~ '^[A-Z0-9-]{1,30}$'),
    first_sequence    integer NOT NULL CHECK (first_sequence >= 1),
    block_size        integer NOT NULL CHECK (block_size > 0),
    block_start       text GENERATED ALWAYS AS (prefix || lpad(first_sequence::text, 4, '0')) STORED,
    block_end         text GENERATED ALWAYS AS (prefix || lpad((first_sequence + block_size - 1)::text, 4, '0')) STORED,
    next_sequence     integer NOT NULL,
    numbers_used      integer NOT NULL DEFAULT 0 CHECK (numbers_used >= 0),
    created_at        timestamptz NOT NULL DEFAULT now(),
    expires_at        timestamptz,
    is_active         boolean NOT NULL DEFAULT true,
    UNIQUE (raffle_event_id, prefix, first_sequence),
    CHECK (next_sequence BETWEEN first_sequence AND first_sequence + block_size),
    CHECK (numbers_used <= block_size)
);
