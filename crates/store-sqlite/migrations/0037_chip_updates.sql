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
    version INTEGER NOT NULL CHECK (version >= 1),
    state TEXT NOT NULL CHECK (state IN ('pending', 'applied')),
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (number, item)
);

-- Every script issued for a pending update and every confirmation, with the card's status word.
CREATE TABLE card_chip_update_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    number TEXT NOT NULL REFERENCES cards (number),
    item TEXT NOT NULL,
    value TEXT NOT NULL,
    version INTEGER NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('script', 'applied', 'failed', 'superseded')),
    sw INTEGER,
    actor TEXT NOT NULL,
    at_ms INTEGER NOT NULL
);
CREATE INDEX card_chip_update_events_number ON card_chip_update_events (number, id);

CREATE TRIGGER cards_card_type_chip_update AFTER UPDATE OF card_type ON cards
WHEN NEW.card_type <> OLD.card_type
BEGIN
    INSERT INTO card_chip_updates (number, item, value, version, state, created_ms, updated_ms)
    VALUES (NEW.number, 'card_type', NEW.card_type, 1, 'pending', NEW.updated_ms,
        NEW.updated_ms)
    ON CONFLICT (number, item) DO UPDATE SET value = excluded.value,
        version = card_chip_updates.version + 1, state = 'pending',
        updated_ms = excluded.updated_ms;
END;

-- The TRANSIT application gains a maintenance key (transit/maintenance/v1): its DAMK protects
-- the update of EF15 (docs/app-scripts.md).
UPDATE card_apps SET key_purposes = key_purposes || ',maintenance'
WHERE code = 'transit' AND ',' || key_purposes || ',' NOT LIKE '%,maintenance,%';
