-- Reconciliation (issue 5.6): the settlement files' instructions, the bank statements (camt.053)
-- imported against them, and the exceptions queue the operators resolve.
CREATE TABLE settlement_instructions (
    end_to_end_id TEXT PRIMARY KEY,
    window_id TEXT NOT NULL,
    merchant TEXT NOT NULL,
    amount_fen INTEGER NOT NULL CHECK (amount_fen > 0),
    execution_date TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'sent' CHECK (state IN ('sent', 'matched', 'exception'))
);
CREATE INDEX settlement_instructions_due ON settlement_instructions (state, execution_date);

CREATE TABLE bank_statements (
    id TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    digest TEXT NOT NULL,
    entries INTEGER NOT NULL,
    matched INTEGER NOT NULL,
    imported_ms INTEGER NOT NULL,
    imported_by TEXT NOT NULL
);

CREATE TABLE reconciliation_exceptions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    statement_id TEXT NOT NULL REFERENCES bank_statements (id),
    kind TEXT NOT NULL CHECK (kind IN ('amount_mismatch', 'missing', 'unexpected')),
    end_to_end_id TEXT,
    reference TEXT,
    sent_fen INTEGER,
    booked_fen INTEGER,
    state TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'resolved')),
    resolution TEXT,
    resolved_by TEXT,
    resolved_ms INTEGER,
    created_ms INTEGER NOT NULL,
    CHECK (state = 'open' OR (resolution IS NOT NULL AND resolved_by IS NOT NULL))
);
CREATE INDEX reconciliation_exceptions_state ON reconciliation_exceptions (state, id);
