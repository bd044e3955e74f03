-- Citizen sign-in (issue 9, item 1): passwords, SMS one-time code challenges (hashes only)
-- and citizen sessions, apart from operators' credentials.

CREATE TABLE citizen_passwords (
    resident_id BIGINT PRIMARY KEY REFERENCES residents (id),
    password_hash TEXT NOT NULL,
    set_ms BIGINT NOT NULL
);

CREATE TABLE citizen_challenges (
    id_hash BYTEA PRIMARY KEY,
    resident_id BIGINT NOT NULL REFERENCES residents (id),
    purpose TEXT NOT NULL CHECK (purpose IN ('sign_in', 'set_password')),
    code_hash BYTEA NOT NULL,
    expires_ms BIGINT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    used_ms BIGINT,
    created_ms BIGINT NOT NULL
);
CREATE INDEX citizen_challenges_resident ON citizen_challenges (resident_id, created_ms);

CREATE TABLE citizen_sessions (
    token_hash BYTEA PRIMARY KEY,
    resident_id BIGINT NOT NULL REFERENCES residents (id),
    kind TEXT NOT NULL CHECK (kind IN ('portal', 'app')),
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL,
    revoked_ms BIGINT
);
