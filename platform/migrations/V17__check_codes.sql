-- Version 17: every receipt carries a secret the buyer alone holds, the check code, and a
-- prize claim needs it besides the winning number and the validation number (RSU validation
-- numbers are sequential: one receipt let anyone compute the winner's). Only its SHA-256 is
-- stored (schemas::CheckCode::hash); orders from before have none, and their prizes are paid
-- after staff verify the winner by hand.
ALTER TABLE sales.orders ADD COLUMN check_code_hash bytea
    CHECK (check_code_hash IS NULL OR octet_length(check_code_hash) = 32);

-- Who tried (the staff member and the address the request came from, or the CLI's operator):
-- wrong claims are limited per source as well as per number.
ALTER TABLE draw.claim_attempts ADD COLUMN source text NOT NULL DEFAULT 'unknown';
CREATE INDEX ON draw.claim_attempts (raffle_id, winning_number, attempted_at);
CREATE INDEX ON draw.claim_attempts (source, attempted_at);
