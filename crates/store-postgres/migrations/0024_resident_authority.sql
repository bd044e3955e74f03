-- Resident feeds with per-field authority (issue 8, item 6): assistance and student status,
-- sealed like the other personal fields, and the review queue of held contradictions.
ALTER TABLE residents ADD COLUMN assistance_mac BYTEA;
ALTER TABLE residents ADD COLUMN assistance_sealed BYTEA;
ALTER TABLE residents ADD COLUMN student_mac BYTEA;
ALTER TABLE residents ADD COLUMN student_sealed BYTEA;

CREATE TABLE resident_reviews (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    resident_id BIGINT NOT NULL REFERENCES residents (id),
    feed_id BIGINT NOT NULL REFERENCES feeds (id),
    source TEXT NOT NULL,
    field TEXT NOT NULL CHECK (field IN ('name', 'phone', 'address', 'assistance', 'student')),
    mac BYTEA NOT NULL,
    sealed BYTEA NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'accepted', 'rejected')),
    created_ms BIGINT NOT NULL,
    decided_by TEXT,
    decided_ms BIGINT,
    note TEXT
);
CREATE INDEX resident_reviews_status ON resident_reviews (status, id);
