-- The credit service (信用服务, issue 9 item 7): opt-in, the signals a score is built from
-- (only while opted in), scores over time, and disputes an officer resolves. Opting out
-- deletes the resident's rows here.

CREATE TABLE credit_enrolments (
    resident_id BIGINT PRIMARY KEY REFERENCES residents (id),
    opted_in_ms BIGINT NOT NULL
);

CREATE TABLE credit_signals (
    id BIGSERIAL PRIMARY KEY,
    resident_id BIGINT NOT NULL REFERENCES residents (id),
    kind TEXT NOT NULL CHECK (kind IN ('bill_on_time', 'bill_late', 'fare_evasion',
        'library_return_on_time', 'library_return_late', 'volunteer_hour')),
    key TEXT NOT NULL,
    quantity BIGINT NOT NULL CHECK (quantity > 0),
    day BIGINT NOT NULL,
    source TEXT NOT NULL,
    struck BOOLEAN NOT NULL DEFAULT FALSE,
    created_ms BIGINT NOT NULL,
    UNIQUE (resident_id, key)
);
CREATE INDEX credit_signals_resident ON credit_signals (resident_id, day);

CREATE TABLE credit_scores (
    resident_id BIGINT NOT NULL REFERENCES residents (id),
    day BIGINT NOT NULL,
    score BIGINT NOT NULL,
    factors TEXT NOT NULL,
    computed_ms BIGINT NOT NULL,
    PRIMARY KEY (resident_id, day)
);

CREATE TABLE credit_disputes (
    id BIGSERIAL PRIMARY KEY,
    resident_id BIGINT NOT NULL REFERENCES residents (id),
    signal_id BIGINT NOT NULL REFERENCES credit_signals (id),
    reason TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('open', 'upheld', 'rejected')),
    officer TEXT,
    note TEXT,
    created_ms BIGINT NOT NULL,
    resolved_ms BIGINT
);
CREATE UNIQUE INDEX credit_disputes_one_open ON credit_disputes (signal_id) WHERE status = 'open';
CREATE INDEX credit_disputes_status ON credit_disputes (status, id);
CREATE INDEX credit_disputes_resident ON credit_disputes (resident_id, id);
