-- Version 13: a ticket's number is checked against its range and allocation once per insert
-- statement instead of once per row.
--
-- The allocator inserts a batch's tickets in one statement; the per-row PL/pgSQL trigger ran a
-- range look-up for every ticket. The rule is unchanged: a draw number lies inside its range
-- and, for an RSU sale, inside the device's allocation; a statement with one ticket outside is
-- refused whole, naming the ticket. Updates of the number, range or allocation (nothing does
-- them; a void or a win changes the state) keep the per-row check, because a trigger limited
-- to some columns cannot see a transition table.

DROP TRIGGER ticket_number_in_range ON sales.tickets;
CREATE TRIGGER ticket_number_in_range BEFORE UPDATE OF draw_number, range_id, rsu_allocation_id
    ON sales.tickets FOR EACH ROW EXECUTE FUNCTION sales.check_ticket_number();

CREATE FUNCTION sales.check_new_ticket_numbers() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    -- A missing range or allocation is the foreign keys' to report.
    SELECT t.draw_number, t.raffle_id, t.range_id AS holder, g.start_number AS lo, g.end_number AS hi INTO bad
      FROM new_tickets t JOIN catalog.raffle_ranges g ON g.id = t.range_id
     WHERE t.draw_number < g.start_number OR t.draw_number > g.end_number
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'draw number % of raffle % lies outside range % (%..%)',
            bad.draw_number, bad.raffle_id, bad.holder, bad.lo, bad.hi USING ERRCODE = 'check_violation';
    END IF;
    SELECT t.draw_number, t.raffle_id, t.rsu_allocation_id AS holder, a.start_number AS lo, a.end_number AS hi INTO bad
      FROM new_tickets t JOIN catalog.rsu_allocations a ON a.id = t.rsu_allocation_id
     WHERE t.draw_number < a.start_number OR t.draw_number > a.end_number
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'draw number % of raffle % lies outside allocation % (%..%)',
            bad.draw_number, bad.raffle_id, bad.holder, bad.lo, bad.hi USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER ticket_numbers_in_range AFTER INSERT ON sales.tickets
    REFERENCING NEW TABLE AS new_tickets
    FOR EACH STATEMENT EXECUTE FUNCTION sales.check_new_ticket_numbers();
