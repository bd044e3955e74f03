-- Card production and counter work: service outlets and their clerks, production batches and
-- their cards, chip serials, the outlet each card is delivered to, the counter journal and the
-- daily closings.

CREATE TABLE outlets (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code TEXT NOT NULL UNIQUE,
    name_zh TEXT NOT NULL,
    name_en TEXT NOT NULL,
    address TEXT NOT NULL,
    active BOOLEAN NOT NULL DEFAULT TRUE,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL
);

-- A clerk works at one outlet at a time.
CREATE TABLE outlet_clerks (
    operator_id BIGINT PRIMARY KEY REFERENCES operators (id),
    outlet_id BIGINT NOT NULL REFERENCES outlets (id),
    assigned_ms BIGINT NOT NULL
);
CREATE INDEX outlet_clerks_outlet ON outlet_clerks (outlet_id);

CREATE TABLE production_batches (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('created', 'exported', 'imported')),
    algorithm TEXT NOT NULL,
    key_version BIGINT NOT NULL,
    transport_key TEXT NOT NULL,
    start_date TEXT NOT NULL,
    expiry_date TEXT NOT NULL,
    card_count BIGINT NOT NULL,
    created_ms BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    exports BIGINT NOT NULL DEFAULT 0,
    export_digest TEXT,
    exported_ms BIGINT,
    import_digest TEXT,
    imported_ms BIGINT,
    produced BIGINT NOT NULL DEFAULT 0,
    failed BIGINT NOT NULL DEFAULT 0,
    distributed BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE batch_cards (
    batch_id BIGINT NOT NULL REFERENCES production_batches (id),
    idx BIGINT NOT NULL,
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
    batch_id BIGINT REFERENCES production_batches (id),
    outlet_id BIGINT REFERENCES outlets (id),
    recorded_ms BIGINT NOT NULL
);

-- The outlet a card was delivered to (or issued at on the spot).
CREATE TABLE card_outlets (
    number TEXT PRIMARY KEY REFERENCES cards (number),
    outlet_id BIGINT NOT NULL REFERENCES outlets (id),
    batch_id BIGINT REFERENCES production_batches (id),
    assigned_ms BIGINT NOT NULL
);
CREATE INDEX card_outlets_outlet ON card_outlets (outlet_id, number);

CREATE TABLE counter_journal (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    outlet_id BIGINT NOT NULL REFERENCES outlets (id),
    clerk_id BIGINT NOT NULL,
    clerk TEXT NOT NULL,
    business_day TEXT NOT NULL,
    act TEXT NOT NULL CHECK (act IN ('card_issued', 'instant_issued', 'lost_report', 'replacement')),
    card_number TEXT REFERENCES cards (number),
    fee_fen BIGINT NOT NULL CHECK (fee_fen >= 0),
    at_ms BIGINT NOT NULL
);
CREATE INDEX counter_journal_day ON counter_journal (outlet_id, business_day, id);

CREATE TABLE counter_closings (
    outlet_id BIGINT NOT NULL REFERENCES outlets (id),
    business_day TEXT NOT NULL,
    acts BIGINT NOT NULL,
    expected_fen BIGINT NOT NULL,
    declared_fen BIGINT NOT NULL CHECK (declared_fen >= 0),
    difference_fen BIGINT NOT NULL,
    closed_by TEXT NOT NULL,
    closed_ms BIGINT NOT NULL,
    PRIMARY KEY (outlet_id, business_day)
);
