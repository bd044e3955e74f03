-- The electronic citizen card (e-code): phones enrolled on cards, the platform's root keys
-- (wrapped by the key store) and the certificates issued.

CREATE TABLE ecode_devices (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    card_number TEXT NOT NULL REFERENCES cards (number),
    device_id TEXT NOT NULL,
    public_key BLOB NOT NULL CHECK (length(public_key) = 33),
    state TEXT NOT NULL CHECK (state IN ('active', 'revoked')),
    bound_ms INTEGER NOT NULL,
    bound_by TEXT NOT NULL,
    revoked_ms INTEGER,
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
CREATE TRIGGER cards_revoke_ecode_devices AFTER UPDATE OF state ON cards
WHEN NEW.state <> 'active'
BEGIN
    UPDATE ecode_devices
    SET state = 'revoked', revoked_ms = NEW.updated_ms, revoked_reason = 'card_' || NEW.state,
        revoked_by = 'system:card-life-cycle'
    WHERE card_number = NEW.number AND state = 'active';
END;

CREATE TABLE ecode_root_keys (
    key_id INTEGER PRIMARY KEY CHECK (key_id BETWEEN 1 AND 4294967295),
    public_key BLOB NOT NULL CHECK (length(public_key) = 33),
    kek_id TEXT NOT NULL,
    wrapped BLOB NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('standby', 'current', 'retired', 'withdrawn')),
    created_ms INTEGER NOT NULL,
    changed_ms INTEGER NOT NULL
);
CREATE UNIQUE INDEX ecode_root_keys_one_current ON ecode_root_keys (state)
    WHERE state = 'current';

CREATE TABLE ecode_certificates (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device INTEGER NOT NULL REFERENCES ecode_devices (id),
    card_number TEXT NOT NULL REFERENCES cards (number),
    root_key_id INTEGER NOT NULL REFERENCES ecode_root_keys (key_id),
    not_before_s INTEGER NOT NULL,
    not_after_s INTEGER NOT NULL,
    offline_limit_fen INTEGER NOT NULL,
    uses INTEGER NOT NULL,
    certificate BLOB NOT NULL CHECK (length(certificate) = 123),
    issued_ms INTEGER NOT NULL,
    issued_by TEXT NOT NULL
);
CREATE INDEX ecode_certificates_card ON ecode_certificates (card_number, id);
