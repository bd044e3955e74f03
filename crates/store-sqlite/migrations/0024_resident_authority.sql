-- Resident feeds with per-field authority (issue 8, item 6): assistance and student status,
-- sealed like the other personal fields, and the review queue of held contradictions.
ALTER TABLE residents ADD COLUMN assistance_mac BLOB;
ALTER TABLE residents ADD COLUMN assistance_sealed BLOB;
ALTER TABLE residents ADD COLUMN student_mac BLOB;
ALTER TABLE residents ADD COLUMN student_sealed BLOB;

CREATE TABLE resident_reviews (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    resident_id INTEGER NOT NULL REFERENCES residents (id),
    feed_id INTEGER NOT NULL REFERENCES feeds (id),
    source TEXT NOT NULL,
    field TEXT NOT NULL CHECK (field IN ('name', 'phone', 'address', 'assistance', 'student')),
    mac BLOB NOT NULL,
    sealed BLOB NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'accepted', 'rejected')),
    created_ms INTEGER NOT NULL,
    decided_by TEXT,
    decided_ms INTEGER,
    note TEXT
);
CREATE INDEX resident_reviews_status ON resident_reviews (status, id);
