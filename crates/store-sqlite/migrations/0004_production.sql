-- Card production and counter work: service outlets and their clerks, production batches and
-- their cards, chip serials, the outlet each card is delivered to, the counter journal and the
-- daily closings.

CREATE TABLE outlets (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    code TEXT NOT NULL UNIQUE,
    name_zh TEXT NOT NULL,
    name_en TEXT NOT NULL,
    address TEXT NOT NULL,
    active INTEGER NOT NULL DEFAULT 1,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);

-- A clerk works at one outlet at a time.
CREATE TABLE outlet_clerks (
    operator_id INTEGER PRIMARY KEY REFERENCES operators (id),
    outlet_id INTEGER NOT NULL REFERENCES outlets (id),
    assigned_ms INTEGER NOT NULL
);
CREATE INDEX outlet_clerks_outlet ON outlet_clerks (outlet_id);

CREATE TABLE production_batches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    state TEXT NOT NULL CHECK (state IN ('created', 'exported', 'imported')),
    algorithm TEXT NOT NULL,
    key_version INTEGER NOT NULL,
    transport_key TEXT NOT NULL,
    start_date TEXT NOT NULL,
    expiry_date TEXT NOT NULL,
    card_count INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    exports INTEGER NOT NULL DEFAULT 0,
    export_digest TEXT,
    exported_ms INTEGER,
    import_digest TEXT,
    imported_ms INTEGER,
    produced INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    distributed INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE batch_cards (
    batch_id INTEGER NOT NULL REFERENCES production_batches (id),
    idx INTEGER NOT NULL,
    number TEXT NOT NULL REFERENCES cards (number),
    outcome TEXT CHECK (outcome IN ('produced', 'failed')),
    chip_serial TEXT,
    failure TEXT,
    PRIMARY KEY (batch_id, idx),
    UNIQUE (batch_id, number)
);
CREATE INDEX batch_cards_number ON batch_cards (number);

-- One chip per card and one card per chip.
CREATE TABLE card_chips (
    number TEXT PRIMARY KEY REFERENCES cards (number),
    chip_serial TEXT NOT NULL UNIQUE,
    batch_id INTEGER REFERENCES production_batches (id),
    outlet_id INTEGER REFERENCES outlets (id),
    recorded_ms INTEGER NOT NULL
);

-- The outlet a card was delivered to (or issued at on the spot).
CREATE TABLE card_outlets (
    number TEXT PRIMARY KEY REFERENCES cards (number),
    outlet_id INTEGER NOT NULL REFERENCES outlets (id),
    batch_id INTEGER REFERENCES production_batches (id),
    assigned_ms INTEGER NOT NULL
);
CREATE INDEX card_outlets_outlet ON card_outlets (outlet_id, number);

CREATE TABLE counter_journal (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    outlet_id INTEGER NOT NULL REFERENCES outlets (id),
    clerk_id INTEGER NOT NULL,
    clerk TEXT NOT NULL,
    business_day TEXT NOT NULL,
    act TEXT NOT NULL CHECK (act IN ('card_issued', 'instant_issued', 'lost_report', 'replacement')),
    card_number TEXT REFERENCES cards (number),
    fee_fen INTEGER NOT NULL CHECK (fee_fen >= 0),
    at_ms INTEGER NOT NULL
);
CREATE INDEX counter_journal_day ON counter_journal (outlet_id, business_day, id);

CREATE TABLE counter_closings (
    outlet_id INTEGER NOT NULL REFERENCES outlets (id),
    business_day TEXT NOT NULL,
    acts INTEGER NOT NULL,
    expected_fen INTEGER NOT NULL,
    declared_fen INTEGER NOT NULL CHECK (declared_fen >= 0),
    difference_fen INTEGER NOT NULL,
    closed_by TEXT NOT NULL,
    closed_ms INTEGER NOT NULL,
    PRIMARY KEY (outlet_id, business_day)
);
