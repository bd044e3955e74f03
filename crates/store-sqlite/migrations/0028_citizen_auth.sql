-- Citizen sign-in (issue 9, item 1): passwords, SMS one-time code challenges (hashes only)
-- and citizen sessions, apart from operators' credentials.

CREATE TABLE citizen_passwords (
    resident_id INTEGER PRIMARY KEY REFERENCES residents (id),
    password_hash TEXT NOT NULL,
    set_ms INTEGER NOT NULL
);

CREATE TABLE citizen_challenges (
    id_hash BLOB PRIMARY KEY,
    resident_id INTEGER NOT NULL REFERENCES residents (id),
    purpose TEXT NOT NULL CHECK (purpose IN ('sign_in', 'set_password')),
    code_hash BLOB NOT NULL,
    expires_ms INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    used_ms INTEGER,
    created_ms INTEGER NOT NULL
);
CREATE INDEX citizen_challenges_resident ON citizen_challenges (resident_id, created_ms);

CREATE TABLE citizen_sessions (
    token_hash BLOB PRIMARY KEY,
    resident_id INTEGER NOT NULL REFERENCES residents (id),
    kind TEXT NOT NULL CHECK (kind IN ('portal', 'app')),
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    revoked_ms INTEGER
);
