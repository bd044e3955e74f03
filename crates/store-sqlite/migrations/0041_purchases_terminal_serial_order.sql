-- The uniqueness of 0017 (one purchase per card, terminal and terminal serial) kept, with the
-- terminal first: the PSAM increments its serial for every purchase (epurse.md §4), so a
-- terminal's upload appends at the end of its own range of the index instead of touching one
-- index page per card (a page written to the log for each record once cards have history).
DROP INDEX purchases_terminal_serial;
CREATE UNIQUE INDEX purchases_terminal_serial ON purchases (terminal_id, terminal_serial, card_number);
