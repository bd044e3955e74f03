-- Money movements (issue 5): top-ups, e-purse loads, payments, fees, refunds and reversals.
-- One row per movement, written in the transaction of the ledger transfers that carry its
-- money. States and details are the platform's (crates/platform/src/money.rs).

CREATE TABLE money_movements (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('top_up', 'load', 'payment', 'fee', 'refund', 'reversal')),
    -- The caller's idempotency key, prefixed with the kind.
    request_key TEXT NOT NULL UNIQUE,
    digest BLOB NOT NULL,
    resident_id INTEGER NOT NULL,
    card_number TEXT,
    counterparty TEXT NOT NULL,
    amount INTEGER NOT NULL CHECK (amount > 0),
    -- Given back by refunds and reversals; never more than was paid.
    returned INTEGER NOT NULL DEFAULT 0 CHECK (returned >= 0 AND returned <= amount),
    parent_id INTEGER REFERENCES money_movements (id),
    state TEXT NOT NULL,
    external_ref TEXT,
    detail TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE UNIQUE INDEX money_movements_ref ON money_movements (kind, external_ref)
    WHERE external_ref IS NOT NULL;
CREATE INDEX money_movements_state ON money_movements (kind, state, id);
CREATE INDEX money_movements_parent ON money_movements (parent_id) WHERE parent_id IS NOT NULL;
-- A card has at most one load awaiting its confirmation.
CREATE UNIQUE INDEX money_movements_open_load ON money_movements (card_number)
    WHERE kind = 'load' AND state = 'authorized';
CREATE TRIGGER money_movements_no_delete BEFORE DELETE ON money_movements
BEGIN SELECT RAISE(ABORT, 'money_movements are kept'); END;
