-- Version 10: what ingest has already taken from each device, recorded once the broker
-- acknowledged it. An upload repeated before the allocator has written the order is answered
-- "duplicate" instead of being published again (the allocator would drop it anyway; the device
-- deserves the right answer). A void sent after the sale is a record of its own.
CREATE TABLE sales.rsu_receipts (
    rsu_id      uuid NOT NULL REFERENCES catalog.rsus (id),
    local_id    text NOT NULL,
    voided      boolean NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (rsu_id, local_id, voided)
);
