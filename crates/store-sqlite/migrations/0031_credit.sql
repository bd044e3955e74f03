-- The credit service (信用服务, issue 9 item 7): opt-in, the signals a score is built from
-- (only while opted in), scores over time, and disputes an officer resolves. Opting out
-- deletes the resident's rows here.

CREATE TABLE credit_enrolments (
    resident_id INTEGER PRIMARY KEY REFERENCES residents (id),
    opted_in_ms INTEGER NOT NULL
);

CREATE TABLE credit_signals (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    resident_id INTEGER NOT NULL REFERENCES residents (id),
    kind TEXT NOT NULL CHECK (kind IN ('bill_on_time', 'bill_late', 'fare_evasion',
        'library_return_on_time', 'library_return_late', 'volunteer_hour')),
    key TEXT NOT NULL,
    quantity INTEGER NOT NULL CHECK (quantity > 0),
    day INTEGER NOT NULL,
    source TEXT NOT NULL,
    struck INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL,
    UNIQUE (resident_id, key)
);
CREATE INDEX credit_signals_resident ON credit_signals (resident_id, day);

CREATE TABLE credit_scores (
    resident_id INTEGER NOT NULL REFERENCES residents (id),
    day INTEGER NOT NULL,
    score INTEGER NOT NULL,
    factors TEXT NOT NULL,
    computed_ms INTEGER NOT NULL,
    PRIMARY KEY (resident_id, day)
);

CREATE TABLE credit_disputes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    resident_id INTEGER NOT NULL REFERENCES residents (id),
    signal_id INTEGER NOT NULL REFERENCES credit_signals (id),
    reason TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('open', 'upheld', 'rejected')),
    officer TEXT,
    note TEXT,
    created_ms INTEGER NOT NULL,
    resolved_ms INTEGER
);
CREATE UNIQUE INDEX credit_disputes_one_open ON credit_disputes (signal_id) WHERE status = 'open';
CREATE INDEX credit_disputes_status ON credit_disputes (status, id);
CREATE INDEX credit_disputes_resident ON credit_disputes (resident_id, id);
