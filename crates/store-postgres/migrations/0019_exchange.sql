-- The data-sharing exchange (issue 8): members and their keys, the service catalog, grants,
-- citizens' consents, the access log behind the citizen's data tracker, used nonces, and the
-- signed stamps of the audit log's head.

CREATE TABLE exchange_members (
    code TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    public_key BYTEA NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'suspended')),
    created_ms BIGINT NOT NULL
);

CREATE TABLE exchange_services (
    code TEXT PRIMARY KEY,
    provider TEXT NOT NULL REFERENCES exchange_members (code),
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    input TEXT NOT NULL,
    fields_json TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    consent_required BOOLEAN NOT NULL,
    created_ms BIGINT NOT NULL
);

CREATE TABLE exchange_grants (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    consumer TEXT NOT NULL REFERENCES exchange_members (code),
    service TEXT NOT NULL REFERENCES exchange_services (code),
    fields TEXT NOT NULL,
    full_fields TEXT NOT NULL,
    purpose TEXT NOT NULL,
    legal_basis TEXT NOT NULL,
    valid_from_ms BIGINT NOT NULL,
    valid_until_ms BIGINT NOT NULL,
    withdrawn_ms BIGINT,
    created_ms BIGINT NOT NULL,
    CHECK (valid_until_ms > valid_from_ms)
);
CREATE INDEX exchange_grants_consumer ON exchange_grants (consumer, service);

CREATE TABLE exchange_consents (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    resident_id BIGINT NOT NULL REFERENCES residents (id),
    consumer TEXT NOT NULL REFERENCES exchange_members (code),
    service TEXT NOT NULL REFERENCES exchange_services (code),
    purpose TEXT NOT NULL,
    channel TEXT NOT NULL,
    given_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL,
    revoked_ms BIGINT,
    CHECK (expires_ms > given_ms)
);
CREATE INDEX exchange_consents_resident ON exchange_consents (resident_id, consumer, service);

CREATE TABLE exchange_nonces (
    member TEXT NOT NULL,
    nonce TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    PRIMARY KEY (member, nonce)
);
CREATE INDEX exchange_nonces_at ON exchange_nonces (at_ms);

CREATE TABLE exchange_access (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    consumer TEXT NOT NULL,
    service TEXT NOT NULL,
    provider TEXT NOT NULL,
    resident_id BIGINT,
    fields TEXT NOT NULL,
    masked TEXT NOT NULL,
    purpose TEXT NOT NULL,
    legal_basis TEXT,
    grant_id BIGINT,
    consent_id BIGINT,
    outcome TEXT NOT NULL CHECK (outcome IN ('delivered', 'refused', 'failed')),
    reason TEXT,
    request_digest TEXT,
    response_digest TEXT,
    audit_seq BIGINT
);
CREATE INDEX exchange_access_resident ON exchange_access (resident_id, id);
CREATE INDEX exchange_access_consumer ON exchange_access (consumer, id);

-- What the citizen is shown is not rewritten afterwards.
CREATE FUNCTION exchange_access_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'exchange_access is append-only';
END;
$$;
CREATE TRIGGER exchange_access_no_change BEFORE UPDATE OR DELETE ON exchange_access
FOR EACH ROW EXECUTE FUNCTION exchange_access_append_only();

CREATE TABLE audit_head_stamps (
    seq BIGINT PRIMARY KEY,
    hash BYTEA NOT NULL,
    stamped_ms BIGINT NOT NULL,
    signature BYTEA NOT NULL
);
