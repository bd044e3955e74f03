-- Foundation: data keys, the resident base database with provenance, operators, credentials,
-- and the hash-chained audit log.

CREATE TABLE data_keys (
    purpose TEXT PRIMARY KEY,
    kek_id TEXT NOT NULL,
    wrapped BLOB NOT NULL
);

CREATE TABLE feeds (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    channel TEXT NOT NULL,
    digest TEXT NOT NULL,
    started_ms INTEGER NOT NULL,
    finished_ms INTEGER,
    rows_total INTEGER NOT NULL DEFAULT 0,
    inserted INTEGER NOT NULL DEFAULT 0,
    updated INTEGER NOT NULL DEFAULT 0,
    unchanged INTEGER NOT NULL DEFAULT 0,
    rejected INTEGER NOT NULL DEFAULT 0
);

-- Names, ID numbers, phones and addresses are sealed by the vault (SM4-GCM); *_mac columns are
-- keyed blind indexes (HMAC-SM3) for lookups and change detection.
CREATE TABLE residents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    id_blind BLOB NOT NULL UNIQUE,
    id_sealed BLOB NOT NULL,
    birth_date TEXT NOT NULL,
    gender TEXT NOT NULL,
    region_code TEXT NOT NULL,
    name_mac BLOB,
    name_sealed BLOB,
    phone_mac BLOB,
    phone_sealed BLOB,
    address_mac BLOB,
    address_sealed BLOB,
    residency TEXT CHECK (residency IN ('resident', 'non_resident')),
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    version INTEGER NOT NULL
);
CREATE INDEX residents_name_mac ON residents (name_mac);

CREATE TABLE resident_changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    resident_id INTEGER NOT NULL REFERENCES residents (id),
    feed_id INTEGER NOT NULL REFERENCES feeds (id),
    fields_mask INTEGER NOT NULL,
    values_sealed BLOB NOT NULL,
    at_ms INTEGER NOT NULL
);
CREATE INDEX resident_changes_resident ON resident_changes (resident_id, id);

CREATE TABLE operators (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    username TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    department TEXT,
    created_ms INTEGER NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE credentials (
    token_hash BLOB PRIMARY KEY,
    operator_id INTEGER NOT NULL REFERENCES operators (id),
    kind TEXT NOT NULL,
    label TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    revoked_ms INTEGER
);

CREATE TABLE audit_log (
    seq INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    record TEXT NOT NULL,
    origin TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash BLOB NOT NULL,
    hash BLOB NOT NULL
);
CREATE INDEX audit_log_action ON audit_log (action, seq);

-- The head is written in the same transaction as each entry; it catches entries cut from the end.
CREATE TABLE audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    hash BLOB NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, zeroblob(32));

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
