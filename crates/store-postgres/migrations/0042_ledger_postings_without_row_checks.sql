-- Postings lose their two foreign keys (issue 5, ingest on PostgreSQL). Each was a trigger per
-- row that looked the referenced row up and locked it FOR KEY SHARE: for an upload of 10,000
-- purchases, 20,000 lookups and 10,000 account rows locked (a log record each) just before
-- the same transaction updates their balances; the posting insert took 216 ms of an upload's
-- ~600. Nothing is lost by it:
--   * postings are written only by the store, in the transaction that read their accounts
--     and inserted their transfer, under the audit head lock;
--   * transfers are never deleted (trigger of 0003) and now neither are accounts (below);
--   * `ledger check` looks for a posting whose transfer or account is missing and fails on it.
ALTER TABLE ledger_postings DROP CONSTRAINT ledger_postings_transfer_id_fkey;
ALTER TABLE ledger_postings DROP CONSTRAINT ledger_postings_account_id_fkey;

CREATE TRIGGER ledger_accounts_no_delete BEFORE DELETE ON ledger_accounts
FOR EACH ROW EXECUTE FUNCTION ledger_immutable();

-- Every ingest rewrites the balance of each card it names: room on each page lets the new row
-- version stay on its page (a HOT update, no index entries). Applies to pages written from now
-- on; `VACUUM FULL ledger_accounts` rewrites the existing ones in a maintenance window.
ALTER TABLE ledger_accounts SET (fillfactor = 70);
