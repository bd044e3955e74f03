-- What each card application asked for, and non-residents enrolled with another city's card.

CREATE TABLE card_applications (
    number TEXT PRIMARY KEY REFERENCES cards (number),
    channel TEXT NOT NULL CHECK (channel IN ('counter', 'online')),
    delivery TEXT NOT NULL CHECK (delivery IN ('outlet_now', 'outlet_later', 'post')),
    outlet_code TEXT,
    photo_ref TEXT,
    guardian_resident_id INTEGER REFERENCES residents (id),
    created_ms INTEGER NOT NULL
);

CREATE TABLE service_enrolments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    resident_id INTEGER NOT NULL REFERENCES residents (id),
    issuer_region TEXT NOT NULL,
    card_blind BLOB NOT NULL,
    card_sealed BLOB NOT NULL,
    created_ms INTEGER NOT NULL,
    withdrawn_ms INTEGER
);
CREATE UNIQUE INDEX service_enrolments_card ON service_enrolments (card_blind)
    WHERE withdrawn_ms IS NULL;
CREATE UNIQUE INDEX service_enrolments_resident ON service_enrolments (resident_id)
    WHERE withdrawn_ms IS NULL;
