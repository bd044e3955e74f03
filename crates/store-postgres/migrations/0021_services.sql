-- Citizen services (issue 9): the notification outbox with per-citizen preferences, and
-- bills with auto-debit agreements and bill runs.

CREATE TABLE notify_prefs (
    resident_id BIGINT PRIMARY KEY REFERENCES residents (id),
    language TEXT NOT NULL CHECK (language IN ('zh-CN', 'en')),
    sms_enabled BOOLEAN NOT NULL,
    phone_sealed BYTEA,
    updated_ms BIGINT NOT NULL
);

CREATE TABLE notifications (
    id BIGSERIAL PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    resident_id BIGINT NOT NULL,
    channel TEXT NOT NULL CHECK (channel IN ('sms', 'inapp')),
    template TEXT NOT NULL,
    language TEXT NOT NULL,
    body TEXT NOT NULL,
    phone_sealed BYTEA,
    status TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed', 'unread', 'read')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT NOT NULL,
    last_error TEXT,
    gateway_ref TEXT,
    created_ms BIGINT NOT NULL,
    done_ms BIGINT,
    CHECK (channel <> 'sms' OR phone_sealed IS NOT NULL)
);
CREATE INDEX notifications_due ON notifications (next_attempt_ms, id) WHERE status = 'pending';
CREATE INDEX notifications_resident ON notifications (resident_id, id);
CREATE INDEX notifications_status ON notifications (status, id);

CREATE TABLE billers (
    code TEXT PRIMARY KEY REFERENCES merchants (code),
    kind TEXT NOT NULL CHECK (kind IN ('water', 'electricity', 'gas', 'heating', 'telephone',
        'broadband', 'cable_tv')),
    created_ms BIGINT NOT NULL
);

CREATE TABLE bills (
    id BIGSERIAL PRIMARY KEY,
    biller TEXT NOT NULL REFERENCES billers (code),
    bill_number TEXT NOT NULL,
    customer_no TEXT NOT NULL,
    period TEXT NOT NULL,
    amount_fen BIGINT NOT NULL CHECK (amount_fen > 0),
    due_date TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('open', 'paid')),
    payment_id BIGINT,
    paid_by TEXT,
    paid_ms BIGINT,
    debit_attempts INTEGER NOT NULL DEFAULT 0,
    next_debit_ms BIGINT,
    last_error TEXT,
    created_ms BIGINT NOT NULL,
    UNIQUE (biller, bill_number),
    CHECK (status <> 'paid' OR payment_id IS NOT NULL)
);
CREATE INDEX bills_customer ON bills (biller, customer_no, due_date);
CREATE INDEX bills_paid ON bills (biller, paid_ms) WHERE status = 'paid';

CREATE TABLE bill_agreements (
    id BIGSERIAL PRIMARY KEY,
    resident_id BIGINT NOT NULL REFERENCES residents (id),
    biller TEXT NOT NULL REFERENCES billers (code),
    customer_no TEXT NOT NULL,
    limit_fen BIGINT NOT NULL CHECK (limit_fen > 0),
    status TEXT NOT NULL CHECK (status IN ('active', 'cancelled')),
    created_ms BIGINT NOT NULL
);
CREATE UNIQUE INDEX bill_agreements_active ON bill_agreements (biller, customer_no)
    WHERE status = 'active';
CREATE INDEX bill_agreements_resident ON bill_agreements (resident_id);

CREATE TABLE bill_runs (
    id BIGSERIAL PRIMARY KEY,
    due_on TEXT NOT NULL,
    started_ms BIGINT NOT NULL,
    finished_ms BIGINT,
    considered BIGINT NOT NULL DEFAULT 0,
    debited BIGINT NOT NULL DEFAULT 0,
    debited_fen BIGINT NOT NULL DEFAULT 0,
    short_of_funds BIGINT NOT NULL DEFAULT 0,
    over_limit BIGINT NOT NULL DEFAULT 0,
    notices BIGINT NOT NULL DEFAULT 0
);
