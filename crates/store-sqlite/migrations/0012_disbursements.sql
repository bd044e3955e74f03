-- Disbursement batches (待遇发放): a department's file, its lines and their outcome, and the
-- four-eyes decision. The money is in the ledger (one transfer per paid line).

CREATE TABLE disbursement_batches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    department TEXT NOT NULL,
    label TEXT NOT NULL,
    digest TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('submitted', 'approved', 'rejected', 'paid')),
    submitted_by INTEGER NOT NULL,
    submitted_ms INTEGER NOT NULL,
    decided_by INTEGER,
    decided_ms INTEGER,
    paid_ms INTEGER,
    CHECK (decided_by IS NULL OR decided_by <> submitted_by),
    UNIQUE (department, digest)
);

CREATE TABLE disbursement_lines (
    batch_id INTEGER NOT NULL REFERENCES disbursement_batches (id),
    line INTEGER NOT NULL,
    resident_id INTEGER REFERENCES residents (id),
    benefit TEXT,
    earmark TEXT,
    amount_fen INTEGER NOT NULL CHECK (amount_fen >= 0),
    outcome TEXT NOT NULL CHECK (outcome IN ('pending', 'paid', 'rejected')),
    reason TEXT,
    transfer_id INTEGER,
    PRIMARY KEY (batch_id, line),
    CHECK (outcome <> 'paid' OR transfer_id IS NOT NULL)
);
CREATE INDEX disbursement_lines_resident ON disbursement_lines (resident_id, batch_id);
