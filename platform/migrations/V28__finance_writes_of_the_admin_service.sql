-- Version 28: what the admin service may write in the books, exactly. Finance's actions over
-- HTTP — a device's cash counted or deposited, the provider's payout imported, an order
-- refunded whole — run the ledger's and the refunds crate's code in the admin request's
-- transaction, so that the action, its entries and its critical event commit together. V27
-- granted the admin role every ledger table for the last of them; that included the seals,
-- which only the ledger's seal writes. This takes V27's grants back and gives the role the
-- tables those actions write, and nothing else of the ledger.
REVOKE INSERT ON ALL TABLES IN SCHEMA ledger FROM raffle_admin;
REVOKE UPDATE ON ledger.chain_heads, ledger.accounts FROM raffle_admin;
REVOKE DELETE ON ledger.entries_to_check FROM raffle_admin;
REVOKE USAGE ON ALL SEQUENCES IN SCHEMA ledger FROM raffle_admin;

-- Journal entries through ledger::append (the chain head, accounts made on first use, the
-- deferred balance check's queue).
GRANT INSERT ON ledger.journal_entries, ledger.postings, ledger.accounts, ledger.entries_to_check, ledger.chain_heads
    TO raffle_admin;
GRANT UPDATE ON ledger.chain_heads, ledger.accounts TO raffle_admin;
GRANT DELETE ON ledger.entries_to_check TO raffle_admin;
-- Cash counts and deposits, payout lines.
GRANT INSERT ON ledger.cash_counts, ledger.cash_deposits, ledger.payout_lines TO raffle_admin;
