-- Identifiers compare byte by byte (issue 5, ingest and payments on PostgreSQL). Card numbers,
-- terminal ids, merchants, window ids, account kinds, owners and units, transfer and request
-- keys are ASCII codes, never text a person sorts; under the database's default collation
-- (C.UTF-8 here, often en_US.UTF-8 in production) every index comparison of them went through
-- the locale (strcoll, a copy of both strings): an upload's purchase insert, whose four indexes
-- are keyed on such columns, took 108-128 ms per 10,000 rows, with "C" 73-75 ms (measured on
-- a copy of the table). A column of a non-default collation wins over a parameter's default
-- one, so `owner = $1` and joins against `unnest($1::text[])` still use these indexes.
-- The indexes on these columns are rebuilt by the ALTERs (no table rewrite: text to text).
ALTER TABLE purchases
    ALTER COLUMN card_number TYPE TEXT COLLATE "C",
    ALTER COLUMN merchant TYPE TEXT COLLATE "C",
    ALTER COLUMN terminal_id TYPE TEXT COLLATE "C",
    ALTER COLUMN window_id TYPE TEXT COLLATE "C";
ALTER TABLE ledger_accounts
    ALTER COLUMN kind TYPE TEXT COLLATE "C",
    ALTER COLUMN owner TYPE TEXT COLLATE "C",
    ALTER COLUMN unit TYPE TEXT COLLATE "C";
ALTER TABLE ledger_transfers
    ALTER COLUMN key TYPE TEXT COLLATE "C";
-- The trigger that keeps a movement's window names the column: dropped and made again as in
-- 0032 around the change, in this migration's transaction.
DROP TRIGGER money_movements_window_fixed ON money_movements;
ALTER TABLE money_movements
    ALTER COLUMN kind TYPE TEXT COLLATE "C",
    ALTER COLUMN request_key TYPE TEXT COLLATE "C",
    ALTER COLUMN card_number TYPE TEXT COLLATE "C",
    ALTER COLUMN state TYPE TEXT COLLATE "C",
    ALTER COLUMN external_ref TYPE TEXT COLLATE "C",
    ALTER COLUMN window_id TYPE TEXT COLLATE "C";
CREATE TRIGGER money_movements_window_fixed BEFORE UPDATE OF window_id ON money_movements
    FOR EACH ROW WHEN (OLD.window_id IS DISTINCT FROM NEW.window_id)
    EXECUTE FUNCTION money_movements_window_fixed();
