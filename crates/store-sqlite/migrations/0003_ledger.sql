-- The double-entry ledger (issue 5): accounts by natural key with balances kept on their
-- normal side, transfers (idempotency key, content digest, two-phase state), immutable
-- postings; balance moves remember the transfer that released them.

CREATE TABLE ledger_accounts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    owner TEXT NOT NULL,
    unit TEXT NOT NULL,
    normal TEXT NOT NULL CHECK (normal IN ('debit', 'credit')),
    -- Lowest allowed balance - reserved; NULL: none.
    floor INTEGER,
    balance INTEGER NOT NULL DEFAULT 0,
    reserved INTEGER NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    created_ms INTEGER NOT NULL,
    UNIQUE (kind, owner, unit),
    -- The last line of defence; the store checks before it writes.
    CHECK (floor IS NULL OR balance - reserved >= floor)
);

CREATE TABLE ledger_transfers (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    memo TEXT NOT NULL,
    mode TEXT NOT NULL CHECK (mode IN ('immediate', 'pending')),
    state TEXT NOT NULL CHECK (state IN ('posted', 'pending', 'voided')),
    -- SM3 of the request's canonical content: same key + same digest = same request.
    digest BLOB NOT NULL,
    created_ms INTEGER NOT NULL,
    -- When it took effect on balances; clearing windows are cut on this.
    posted_ms INTEGER,
    resolved_ms INTEGER
);
CREATE INDEX ledger_transfers_posted ON ledger_transfers (posted_ms) WHERE posted_ms IS NOT NULL;

CREATE TABLE ledger_postings (
    transfer_id INTEGER NOT NULL REFERENCES ledger_transfers (id),
    idx INTEGER NOT NULL,
    account_id INTEGER NOT NULL REFERENCES ledger_accounts (id),
    unit TEXT NOT NULL,
    side TEXT NOT NULL CHECK (side IN ('debit', 'credit')),
    amount INTEGER NOT NULL CHECK (amount > 0),
    PRIMARY KEY (transfer_id, idx)
) WITHOUT ROWID;
CREATE INDEX ledger_postings_account ON ledger_postings (account_id, transfer_id);

CREATE TRIGGER ledger_postings_no_update BEFORE UPDATE ON ledger_postings
BEGIN SELECT RAISE(ABORT, 'ledger_postings are immutable'); END;
CREATE TRIGGER ledger_postings_no_delete BEFORE DELETE ON ledger_postings
BEGIN SELECT RAISE(ABORT, 'ledger_postings are immutable'); END;
CREATE TRIGGER ledger_transfers_no_delete BEFORE DELETE ON ledger_transfers
BEGIN SELECT RAISE(ABORT, 'ledger_transfers are kept'); END;

ALTER TABLE balance_moves ADD COLUMN transfer_id INTEGER REFERENCES ledger_transfers (id);
CREATE INDEX balance_moves_due ON balance_moves (not_before_s) WHERE released_ms IS NULL;
