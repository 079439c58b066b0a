#!/bin/sh
# Runs once, when the Postgres volume is first initialised: a login role per service, each a
# member of its service's group role (migrations V18, V21, V30 and V31 grant the groups; they create them too if
# they are missing, so the order does not matter). The `stack` service migrates as the owner
# (POSTGRES_USER); every other service connects as its own login.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<SQL
DO \$\$
DECLARE
    s text;
BEGIN
    FOREACH s IN ARRAY ARRAY['ingest', 'allocator', 'ledger', 'draw', 'admin', 'refunds', 'notifier', 'displays'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'raffle_' || s) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', 'raffle_' || s);
        END IF;
        EXECUTE format('CREATE ROLE %I LOGIN PASSWORD %L IN ROLE %I',
                       s || '_service', '${RAFFLE_SERVICE_PASSWORD}', 'raffle_' || s);
    END LOOP;
END
\$\$;
SQL
