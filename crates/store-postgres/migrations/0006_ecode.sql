-- The electronic citizen card (e-code): phones enrolled on cards, the platform's root keys
-- (wrapped by the key store) and the certificates issued.

CREATE TABLE ecode_devices (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    card_number TEXT NOT NULL REFERENCES cards (number),
    device_id TEXT NOT NULL,
    public_key BYTEA NOT NULL CHECK (length(public_key) = 33),
    state TEXT NOT NULL CHECK (state IN ('active', 'revoked')),
    bound_ms BIGINT NOT NULL,
    bound_by TEXT NOT NULL,
    revoked_ms BIGINT,
    revoked_reason TEXT,
    revoked_by TEXT
);
-- One active device per card, and a key active on one enrolment only.
CREATE UNIQUE INDEX ecode_devices_one_active ON ecode_devices (card_number)
    WHERE state = 'active';
CREATE UNIQUE INDEX ecode_devices_key_active ON ecode_devices (public_key)
    WHERE state = 'active';
CREATE INDEX ecode_devices_card ON ecode_devices (card_number, id);

-- A card that leaves `active` (reported lost, frozen, replaced, cancelled, expired) takes its
-- phones with it, in the same transaction, whatever path changed the card.
CREATE FUNCTION cards_revoke_ecode_devices() RETURNS trigger AS $$
BEGIN
    UPDATE ecode_devices
    SET state = 'revoked', revoked_ms = NEW.updated_ms, revoked_reason = 'card_' || NEW.state,
        revoked_by = 'system:card-life-cycle'
    WHERE card_number = NEW.number AND state = 'active';
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER cards_revoke_ecode_devices AFTER UPDATE OF state ON cards
    FOR EACH ROW WHEN (NEW.state <> 'active')
    EXECUTE FUNCTION cards_revoke_ecode_devices();

CREATE TABLE ecode_root_keys (
    key_id BIGINT PRIMARY KEY CHECK (key_id BETWEEN 1 AND 4294967295),
    public_key BYTEA NOT NULL CHECK (length(public_key) = 33),
    kek_id TEXT NOT NULL,
    wrapped BYTEA NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('standby', 'current', 'retired', 'withdrawn')),
    created_ms BIGINT NOT NULL,
    changed_ms BIGINT NOT NULL
);
CREATE UNIQUE INDEX ecode_root_keys_one_current ON ecode_root_keys (state)
    WHERE state = 'current';

CREATE TABLE ecode_certificates (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device BIGINT NOT NULL REFERENCES ecode_devices (id),
    card_number TEXT NOT NULL REFERENCES cards (number),
    root_key_id BIGINT NOT NULL REFERENCES ecode_root_keys (key_id),
    not_before_s BIGINT NOT NULL,
    not_after_s BIGINT NOT NULL,
    offline_limit_fen BIGINT NOT NULL,
    uses BIGINT NOT NULL,
    certificate BYTEA NOT NULL CHECK (length(certificate) = 123),
    issued_ms BIGINT NOT NULL,
    issued_by TEXT NOT NULL
);
CREATE INDEX ecode_certificates_card ON ecode_certificates (card_number, id);
