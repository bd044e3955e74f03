-- Cards and their life cycle, the deny-list's history, and balance moves after cooling-off.

CREATE TABLE card_sequence (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    next INTEGER NOT NULL
);
INSERT INTO card_sequence (id, next) VALUES (1, 1);

CREATE TABLE cards (
    number TEXT PRIMARY KEY,
    resident_id INTEGER NOT NULL REFERENCES residents (id),
    state TEXT NOT NULL,
    state_json TEXT NOT NULL,
    card_type TEXT NOT NULL,
    valid_until_s INTEGER,
    version INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
-- One live card per resident, enforced by the database itself.
CREATE UNIQUE INDEX cards_one_live ON cards (resident_id)
    WHERE state NOT IN ('replaced', 'cancelled', 'expired', 'withdrawn');
CREATE INDEX cards_resident ON cards (resident_id);
CREATE INDEX cards_state ON cards (state, number);

CREATE TABLE card_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    number TEXT NOT NULL REFERENCES cards (number),
    from_state TEXT NOT NULL,
    to_state TEXT NOT NULL,
    action TEXT NOT NULL,
    reason TEXT NOT NULL,
    actor TEXT NOT NULL,
    at_ms INTEGER NOT NULL
);
CREATE INDEX card_events_number ON card_events (number, id);

CREATE TABLE deny_list (
    version INTEGER PRIMARY KEY AUTOINCREMENT,
    number TEXT NOT NULL,
    op TEXT NOT NULL CHECK (op IN ('add', 'remove')),
    at_ms INTEGER NOT NULL
);

CREATE TABLE balance_moves (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    from_number TEXT NOT NULL REFERENCES cards (number),
    to_number TEXT REFERENCES cards (number),
    not_before_s INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    released_ms INTEGER
);
