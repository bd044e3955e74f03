-- Online payments enter clearing windows (清分): a payment to a merchant (e-code payments,
-- bill payments to billers, who are merchants), and a refund or reversal of one, carries the
-- clearing window open when it was posted, as purchases do; a window's close reads them by
-- window. Movements recorded before this migration have no window and are not cleared, nor
-- are later refunds of them (they predate online clearing: nothing was paid through it).
ALTER TABLE money_movements ADD COLUMN window_id TEXT;
CREATE INDEX money_movements_window ON money_movements (window_id, id)
    WHERE window_id IS NOT NULL;
-- A posting's window is fixed when it is posted.
CREATE TRIGGER money_movements_window_fixed BEFORE UPDATE OF window_id ON money_movements
WHEN OLD.window_id IS NOT NEW.window_id
BEGIN SELECT RAISE(ABORT, 'a money movement keeps its clearing window'); END;
