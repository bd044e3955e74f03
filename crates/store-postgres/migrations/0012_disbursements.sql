-- Disbursement batches (待遇发放): a department's file, its lines and their outcome, and the
-- four-eyes decision. The money is in the ledger (one transfer per paid line).

CREATE TABLE disbursement_batches (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    department TEXT NOT NULL,
    label TEXT NOT NULL,
    digest TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('submitted', 'approved', 'rejected', 'paid')),
    submitted_by BIGINT NOT NULL,
    submitted_ms BIGINT NOT NULL,
    decided_by BIGINT,
    decided_ms BIGINT,
    paid_ms BIGINT,
    CHECK (decided_by IS NULL OR decided_by <> submitted_by),
    UNIQUE (department, digest)
);

CREATE TABLE disbursement_lines (
    batch_id BIGINT NOT NULL REFERENCES disbursement_batches (id),
    line BIGINT NOT NULL,
    resident_id BIGINT REFERENCES residents (id),
    benefit TEXT,
    earmark TEXT,
    amount_fen BIGINT NOT NULL CHECK (amount_fen >= 0),
    outcome TEXT NOT NULL CHECK (outcome IN ('pending', 'paid', 'rejected')),
    reason TEXT,
    transfer_id BIGINT,
    PRIMARY KEY (batch_id, line),
    CHECK (outcome <> 'paid' OR transfer_id IS NOT NULL)
);
CREATE INDEX disbursement_lines_resident ON disbursement_lines (resident_id, batch_id);
