-- A window's close sums its purchases per merchant and amount in the database (the fee of a
-- purchase depends on its merchant and amount only): the window index carries the amount, so
-- the close reads the index alone, in order, without visiting the rows.
DROP INDEX purchases_window;
CREATE INDEX purchases_window ON purchases (window_id, merchant, amount_fen);
