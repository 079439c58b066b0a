-- Version 14: what a ticket refers to (its order, range and allocation) is checked once per
-- insert statement instead of by three foreign keys, each a look-up per row.
--
-- What the database holds is unchanged or stronger:
--   * a ticket belongs to an existing order, range and (for an RSU sale) allocation of its own
--     raffle, and its draw number lies inside that range and allocation (V13);
--   * what a ticket refers to cannot be removed or given another identity while the ticket
--     exists; and (new) a range or an allocation cannot be shrunk past a ticket sold in it;
--   * the rows referred to are locked in key-share mode until the inserting transaction ends,
--     as the foreign keys locked them, so a concurrent delete waits and then sees the tickets.
--
-- Why: in psql, 5,000 tickets of 1,000 orders inserted as the allocator inserts them took
-- 138-194 ms with the foreign keys and 58-75 ms without: the three look-ups were more than
-- half of the cost of a ticket, the largest single cost of the sales pipeline in Postgres. A
-- batch holds a few hundred orders and one or two ranges; the checks below look each of them
-- up once.
--
-- Two indexes of sales.orders go, because nothing needs them and every change of an order's
-- payment status rewrites every index of the row (the status and payment reference change, so
-- the update is never heap-only):
--   * UNIQUE (id, raffle_id) existed only as the target of the tickets' composite foreign key;
--     the primary key identifies an order;
--   * (raffle_id, payment_status): the per-raffle reports read all of a raffle's orders, which
--     the (raffle_id, validation_number) unique index finds as well.

ALTER TABLE sales.tickets DROP CONSTRAINT tickets_order_id_raffle_id_fkey;
ALTER TABLE sales.tickets DROP CONSTRAINT tickets_range_id_raffle_id_fkey;
ALTER TABLE sales.tickets DROP CONSTRAINT tickets_rsu_allocation_id_raffle_id_fkey;
ALTER TABLE sales.orders DROP CONSTRAINT orders_id_raffle_id_key;
DROP INDEX sales.orders_raffle_id_payment_status_idx;

-- Replaces V13's statement check (numbers in range and allocation) with one that also checks
-- existence and raffle, per distinct order, range and allocation of the statement.
DROP TRIGGER ticket_numbers_in_range ON sales.tickets;
DROP FUNCTION sales.check_new_ticket_numbers();

CREATE FUNCTION sales.check_new_tickets() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad record;
    holder record;
BEGIN
    SELECT n.order_id, n.raffle_id, o.raffle_id AS order_raffle INTO bad
      FROM (SELECT DISTINCT order_id, raffle_id FROM new_tickets) n
      LEFT JOIN LATERAL (SELECT o.id, o.raffle_id FROM sales.orders o WHERE o.id = n.order_id FOR KEY SHARE) o ON true
     WHERE o.id IS NULL OR o.raffle_id <> n.raffle_id
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ticket of raffle % refers to order %, which %', bad.raffle_id, bad.order_id,
            CASE WHEN bad.order_raffle IS NULL THEN 'does not exist' ELSE 'is of raffle ' || bad.order_raffle END
            USING ERRCODE = 'foreign_key_violation';
    END IF;

    -- Per range, then per allocation: the statement's lowest and highest number against the
    -- holder's bounds; the offending ticket is looked up only to name it.
    FOR holder IN SELECT * FROM (VALUES ('range', 'range_id', 'catalog.raffle_ranges'),
                                        ('allocation', 'rsu_allocation_id', 'catalog.rsu_allocations')) h(kind, col, tab)
    LOOP
        EXECUTE format(
            'SELECT n.holder, n.raffle_id, h.id IS NULL AS missing, h.raffle_id AS holder_raffle, h.start_number AS lo,
                    h.end_number AS hi, (SELECT t.draw_number FROM new_tickets t WHERE t.%1$I = n.holder
                                            AND (t.draw_number < h.start_number OR t.draw_number > h.end_number) LIMIT 1) AS number
               FROM (SELECT %1$I AS holder, raffle_id, min(draw_number) AS low, max(draw_number) AS high
                       FROM new_tickets WHERE %1$I IS NOT NULL GROUP BY 1, 2) n
               LEFT JOIN LATERAL (SELECT h.id, h.raffle_id, h.start_number, h.end_number FROM %2$s h
                                   WHERE h.id = n.holder FOR KEY SHARE) h ON true
              WHERE h.id IS NULL OR h.raffle_id <> n.raffle_id OR n.low < h.start_number OR n.high > h.end_number
              LIMIT 1', holder.col, holder.tab) INTO bad;
        IF bad.holder IS NOT NULL THEN
            IF bad.missing OR bad.holder_raffle <> bad.raffle_id THEN
                RAISE EXCEPTION 'ticket of raffle % refers to % %, which %', bad.raffle_id, holder.kind, bad.holder,
                    CASE WHEN bad.missing THEN 'does not exist' ELSE 'is of raffle ' || bad.holder_raffle END
                    USING ERRCODE = 'foreign_key_violation';
            END IF;
            RAISE EXCEPTION 'draw number % of raffle % lies outside % % (%..%)',
                bad.number, bad.raffle_id, holder.kind, bad.holder, bad.lo, bad.hi USING ERRCODE = 'check_violation';
        END IF;
    END LOOP;
    RETURN NULL;
END $$;
CREATE TRIGGER tickets_refer_to_what_exists AFTER INSERT ON sales.tickets
    REFERENCING NEW TABLE AS new_tickets
    FOR EACH STATEMENT EXECUTE FUNCTION sales.check_new_tickets();

-- What a ticket refers to stays what it is. Nothing changes a ticket's order, range, allocation
-- or raffle (a void, a win or a claim changes its state); should anything try, the new values
-- are checked as the foreign keys checked them.
CREATE FUNCTION sales.check_ticket_references() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM sales.orders o WHERE o.id = NEW.order_id AND o.raffle_id = NEW.raffle_id FOR KEY SHARE)
       OR NOT EXISTS (SELECT 1 FROM catalog.raffle_ranges g WHERE g.id = NEW.range_id AND g.raffle_id = NEW.raffle_id FOR KEY SHARE)
       OR (NEW.rsu_allocation_id IS NOT NULL AND NOT EXISTS (
               SELECT 1 FROM catalog.rsu_allocations a WHERE a.id = NEW.rsu_allocation_id AND a.raffle_id = NEW.raffle_id
                  FOR KEY SHARE)) THEN
        RAISE EXCEPTION 'ticket % (draw number % of raffle %) would refer to an order, range or allocation that does not exist in its raffle',
            NEW.id, NEW.draw_number, NEW.raffle_id USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER ticket_references_kept BEFORE UPDATE OF order_id, range_id, rsu_allocation_id, raffle_id
    ON sales.tickets FOR EACH ROW EXECUTE FUNCTION sales.check_ticket_references();

-- An order, range or allocation that tickets refer to cannot be deleted, renamed, moved to
-- another raffle or (range, allocation) shrunk past a ticket. Tickets of a range or allocation
-- are found through the (raffle_id, draw_number) index: they lie inside its bounds.
CREATE FUNCTION sales.keep_what_tickets_refer_to() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ticket record;
    -- An empty interval: a delete or a new identity keeps no ticket.
    kept_lo bigint := 1;
    kept_hi bigint := 0;
BEGIN
    IF TG_TABLE_NAME = 'orders' THEN
        IF TG_OP = 'UPDATE' AND (NEW.id, NEW.raffle_id) IS NOT DISTINCT FROM (OLD.id, OLD.raffle_id) THEN
            RETURN NEW;
        END IF;
        SELECT t.id, t.draw_number INTO ticket FROM sales.tickets t WHERE t.order_id = OLD.id LIMIT 1;
    ELSE
        -- A range or an allocation: the tickets inside its old bounds that are its own and lie
        -- outside what it keeps (nothing, unless an update keeps its identity).
        IF TG_OP = 'UPDATE' AND (NEW.id, NEW.raffle_id) IS NOT DISTINCT FROM (OLD.id, OLD.raffle_id) THEN
            kept_lo := NEW.start_number;
            kept_hi := NEW.end_number;
        END IF;
        EXECUTE format(
            'SELECT t.id, t.draw_number FROM sales.tickets t
              WHERE t.raffle_id = $1 AND t.draw_number BETWEEN $2 AND $3 AND t.%I = $4
                AND NOT (t.draw_number BETWEEN $5 AND $6)
              LIMIT 1',
            CASE TG_TABLE_NAME WHEN 'raffle_ranges' THEN 'range_id' ELSE 'rsu_allocation_id' END)
            INTO ticket USING OLD.raffle_id, OLD.start_number, OLD.end_number, OLD.id, kept_lo, kept_hi;
    END IF;
    IF ticket.id IS NOT NULL THEN
        RAISE EXCEPTION '% of %.% % refused: ticket % (draw number % of raffle %) refers to it',
            TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME, OLD.id, ticket.id, ticket.draw_number, OLD.raffle_id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER orders_keep_ticket_references BEFORE DELETE OR UPDATE OF id, raffle_id
    ON sales.orders FOR EACH ROW EXECUTE FUNCTION sales.keep_what_tickets_refer_to();
CREATE TRIGGER ranges_keep_ticket_references BEFORE DELETE OR UPDATE OF id, raffle_id, start_number, end_number
    ON catalog.raffle_ranges FOR EACH ROW EXECUTE FUNCTION sales.keep_what_tickets_refer_to();
CREATE TRIGGER allocations_keep_ticket_references BEFORE DELETE OR UPDATE OF id, raffle_id, start_number, end_number
    ON catalog.rsu_allocations FOR EACH ROW EXECUTE FUNCTION sales.keep_what_tickets_refer_to();

-- A truncate skips row triggers: one that would leave tickets pointing nowhere is refused
-- (a foreign key refused it too, unless the tickets went in the same statement).
CREATE FUNCTION sales.refuse_truncate_under_tickets() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM sales.tickets) THEN
        RAISE EXCEPTION 'TRUNCATE of %.% refused: tickets refer to it', TG_TABLE_SCHEMA, TG_TABLE_NAME
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER orders_truncate_under_tickets BEFORE TRUNCATE ON sales.orders
    FOR EACH STATEMENT EXECUTE FUNCTION sales.refuse_truncate_under_tickets();
CREATE TRIGGER ranges_truncate_under_tickets BEFORE TRUNCATE ON catalog.raffle_ranges
    FOR EACH STATEMENT EXECUTE FUNCTION sales.refuse_truncate_under_tickets();
CREATE TRIGGER allocations_truncate_under_tickets BEFORE TRUNCATE ON catalog.rsu_allocations
    FOR EACH STATEMENT EXECUTE FUNCTION sales.refuse_truncate_under_tickets();
