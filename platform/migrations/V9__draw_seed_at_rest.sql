-- Version 9: the draw seed at rest. Between the seal and the draw the seed may be stored
-- wrapped under a key only the draw service holds (RAFFLE_DRAW_SEED_KEY), so nobody with read
-- access to this table learns it early; the draw stores it in clear as it reveals it.
ALTER TABLE draw.draw_executions ADD COLUMN rng_seed_wrapped boolean NOT NULL DEFAULT false;
