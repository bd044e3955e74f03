-- Chip updates (issue 8, item 6): a change of the card record the card's chip must follow at
-- its next contact. Today one item: the card type in TRANSIT EF15 (byte 28). The trigger
-- below records it whenever a card's type changes, whatever changed it (a graduation
-- reported by education, an operator), in the same transaction as the change. A row is
-- pending until a terminal reports the card's 9000 for a script of its current version; a
-- later change of the same item replaces the value and raises the version.
CREATE TABLE card_chip_updates (
    number TEXT NOT NULL REFERENCES cards (number),
    item TEXT NOT NULL CHECK (item IN ('card_type')),
    value TEXT NOT NULL,
    version BIGINT NOT NULL CHECK (version >= 1),
    state TEXT NOT NULL CHECK (state IN ('pending', 'applied')),
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (number, item)
);

-- Every script issued for a pending update and every confirmation, with the card's status word.
CREATE TABLE card_chip_update_events (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    number TEXT NOT NULL REFERENCES cards (number),
    item TEXT NOT NULL,
    value TEXT NOT NULL,
    version BIGINT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('script', 'applied', 'failed', 'superseded')),
    sw INTEGER,
    actor TEXT NOT NULL,
    at_ms BIGINT NOT NULL
);
CREATE INDEX card_chip_update_events_number ON card_chip_update_events (number, id);

CREATE FUNCTION cards_card_type_chip_update() RETURNS trigger AS $$
BEGIN
    INSERT INTO card_chip_updates (number, item, value, version, state, created_ms, updated_ms)
    VALUES (NEW.number, 'card_type', NEW.card_type, 1, 'pending', NEW.updated_ms,
        NEW.updated_ms)
    ON CONFLICT (number, item) DO UPDATE SET value = EXCLUDED.value,
        version = card_chip_updates.version + 1, state = 'pending',
        updated_ms = EXCLUDED.updated_ms;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER cards_card_type_chip_update AFTER UPDATE OF card_type ON cards
    FOR EACH ROW WHEN (OLD.card_type IS DISTINCT FROM NEW.card_type)
    EXECUTE FUNCTION cards_card_type_chip_update();

-- The TRANSIT application gains a maintenance key (transit/maintenance/v1): its DAMK protects
-- the update of EF15 (docs/app-scripts.md).
UPDATE card_apps SET key_purposes = key_purposes || ',maintenance'
WHERE code = 'transit' AND ',' || key_purposes || ',' NOT LIKE '%,maintenance,%';
