-- One purchase per card, terminal and terminal serial: what the TAC binds (epurse.md §5 leaves
-- the offline counter outside it), so a genuine record re-sent under another counter posts once.
CREATE UNIQUE INDEX purchases_terminal_serial ON purchases (card_number, terminal_id, terminal_serial);
