-- The terminal network: merchants and transit operators, and their terminals.

CREATE TABLE merchants (
    code TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    category TEXT NOT NULL,
    settlement_account TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);

CREATE TABLE terminals (
    id TEXT PRIMARY KEY,
    merchant TEXT NOT NULL REFERENCES merchants (code),
    kind TEXT NOT NULL CHECK (kind IN ('validator', 'gate', 'pos', 'kiosk', 'desk', 'door')),
    site TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('registered', 'active', 'suspended')),
    activation_digest TEXT,
    public_key BYTEA,
    psam_serial TEXT,
    software_version TEXT,
    registered_ms BIGINT NOT NULL,
    activated_ms BIGINT,
    CHECK (status <> 'active' OR public_key IS NOT NULL)
);
CREATE INDEX terminals_merchant ON terminals (merchant, id);
