-- What each card application asked for, and non-residents enrolled with another city's card.

CREATE TABLE card_applications (
    number TEXT PRIMARY KEY REFERENCES cards (number),
    channel TEXT NOT NULL CHECK (channel IN ('counter', 'online')),
    delivery TEXT NOT NULL CHECK (delivery IN ('outlet_now', 'outlet_later', 'post')),
    outlet_code TEXT,
    photo_ref TEXT,
    guardian_resident_id BIGINT REFERENCES residents (id),
    created_ms BIGINT NOT NULL
);

CREATE TABLE service_enrolments (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    resident_id BIGINT NOT NULL REFERENCES residents (id),
    issuer_region TEXT NOT NULL,
    card_blind BYTEA NOT NULL,
    card_sealed BYTEA NOT NULL,
    created_ms BIGINT NOT NULL,
    withdrawn_ms BIGINT
);
CREATE UNIQUE INDEX service_enrolments_card ON service_enrolments (card_blind)
    WHERE withdrawn_ms IS NULL;
CREATE UNIQUE INDEX service_enrolments_resident ON service_enrolments (resident_id)
    WHERE withdrawn_ms IS NULL;
