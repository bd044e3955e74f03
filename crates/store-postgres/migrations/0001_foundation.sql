-- Foundation: data keys, the resident base database with provenance, operators, credentials,
-- and the hash-chained audit log.

CREATE TABLE data_keys (
    purpose TEXT PRIMARY KEY,
    kek_id TEXT NOT NULL,
    wrapped BYTEA NOT NULL
);

CREATE TABLE feeds (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source TEXT NOT NULL,
    channel TEXT NOT NULL,
    digest TEXT NOT NULL,
    started_ms BIGINT NOT NULL,
    finished_ms BIGINT,
    rows_total BIGINT NOT NULL DEFAULT 0,
    inserted BIGINT NOT NULL DEFAULT 0,
    updated BIGINT NOT NULL DEFAULT 0,
    unchanged BIGINT NOT NULL DEFAULT 0,
    rejected BIGINT NOT NULL DEFAULT 0
);

-- Names, ID numbers, phones and addresses are sealed by the vault (SM4-GCM); *_mac columns are
-- keyed blind indexes (HMAC-SM3) for lookups and change detection.
CREATE TABLE residents (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id_blind BYTEA NOT NULL UNIQUE,
    id_sealed BYTEA NOT NULL,
    birth_date TEXT NOT NULL,
    gender TEXT NOT NULL,
    region_code TEXT NOT NULL,
    name_mac BYTEA,
    name_sealed BYTEA,
    phone_mac BYTEA,
    phone_sealed BYTEA,
    address_mac BYTEA,
    address_sealed BYTEA,
    residency TEXT CHECK (residency IN ('resident', 'non_resident')),
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    version BIGINT NOT NULL
);
CREATE INDEX residents_name_mac ON residents (name_mac);

CREATE TABLE resident_changes (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    resident_id BIGINT NOT NULL REFERENCES residents (id),
    feed_id BIGINT NOT NULL REFERENCES feeds (id),
    fields_mask SMALLINT NOT NULL,
    values_sealed BYTEA NOT NULL,
    at_ms BIGINT NOT NULL
);
CREATE INDEX resident_changes_resident ON resident_changes (resident_id, id);

CREATE TABLE operators (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    department TEXT,
    created_ms BIGINT NOT NULL,
    disabled BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE TABLE credentials (
    token_hash BYTEA PRIMARY KEY,
    operator_id BIGINT NOT NULL REFERENCES operators (id),
    kind TEXT NOT NULL,
    label TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL,
    revoked_ms BIGINT
);

CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    record TEXT NOT NULL,
    origin TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash BYTEA NOT NULL,
    hash BYTEA NOT NULL
);
CREATE INDEX audit_log_action ON audit_log (action, seq);

-- The head is written in the same transaction as each entry; it catches entries cut from the
-- end, and its row lock orders appends.
CREATE TABLE audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL,
    hash BYTEA NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, decode(repeat('00', 32), 'hex'));

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
