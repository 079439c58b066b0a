-- Version 27: staff give an online order back whole over the admin API. In the request's
-- transaction the refunds crate owes the refund and books the sale's reversal through the
-- ledger's code (so the two commit together or not at all), as the refunds worker does for
-- a cancelled raffle's orders (V26): the admin service's role gets the same rights for it.
GRANT INSERT ON refunds.obligations TO raffle_admin;
GRANT INSERT ON ALL TABLES IN SCHEMA ledger TO raffle_admin;
GRANT UPDATE ON ledger.chain_heads, ledger.accounts TO raffle_admin;
GRANT DELETE ON ledger.entries_to_check TO raffle_admin;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA ledger TO raffle_admin;
