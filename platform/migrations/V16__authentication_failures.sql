-- Version 16: failed authentications are counted per source and minute, not recorded one
-- numbered critical event each. 2,000 requests with a junk token had added 2,000 events to an
-- organisation's gapless trail: anybody could write it without credentials. Now the first
-- failure of a source in a minute is a critical event, and this table counts them all (the
-- admin API also stops writing, and answers 429, past its limit per source and minute).
CREATE TABLE audit.authentication_failures (
    source          text NOT NULL,
    minute          timestamptz NOT NULL CHECK (minute = date_trunc('minute', minute)),
    failures        integer NOT NULL CHECK (failures > 0),
    first_at        timestamptz NOT NULL DEFAULT now(),
    last_at         timestamptz NOT NULL DEFAULT now(),
    last_path       text NOT NULL,
    last_reason     text NOT NULL,
    PRIMARY KEY (source, minute)
);
