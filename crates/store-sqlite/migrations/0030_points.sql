-- Points (积分, issue 9 item 6): earning rules per kind of use, the redemption catalogue,
-- charity projects, and one entry per earning, redemption, donation or expiry, written in the
-- transaction of its ledger transfer (unit POINTS). An earning is a lot that expires on
-- expires_day; lot_closed marks lots an expiry run has accounted for.

CREATE TABLE points_rules (
    kind TEXT PRIMARY KEY CHECK (kind IN ('ride', 'library_loan', 'bill_on_time', 'volunteer_hour')),
    points_per_unit INTEGER NOT NULL CHECK (points_per_unit >= 0),
    daily_cap INTEGER NOT NULL CHECK (daily_cap > 0),
    validity_days INTEGER NOT NULL CHECK (validity_days > 0),
    active INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
INSERT INTO points_rules (kind, points_per_unit, daily_cap, validity_days, active, updated_ms) VALUES
    ('ride', 1, 10, 365, 1, 0),
    ('library_loan', 5, 20, 365, 1, 0),
    ('bill_on_time', 10, 50, 365, 1, 0),
    ('volunteer_hour', 20, 160, 365, 1, 0);

CREATE TABLE points_items (
    code TEXT PRIMARY KEY,
    name_zh TEXT NOT NULL,
    name_en TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('ride_voucher', 'museum_ticket')),
    cost_points INTEGER NOT NULL CHECK (cost_points > 0),
    active INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);

CREATE TABLE points_projects (
    code TEXT PRIMARY KEY,
    name_zh TEXT NOT NULL,
    name_en TEXT NOT NULL,
    active INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);

CREATE TABLE points_entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    resident_id INTEGER NOT NULL REFERENCES residents (id),
    op TEXT NOT NULL CHECK (op IN ('earn', 'redeem', 'donate', 'expire')),
    key TEXT NOT NULL UNIQUE,
    kind TEXT,
    target TEXT,
    points INTEGER NOT NULL CHECK (points > 0),
    day INTEGER NOT NULL,
    expires_day INTEGER,
    lot_closed INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL,
    CHECK ((op = 'earn') = (kind IS NOT NULL AND expires_day IS NOT NULL))
);
CREATE INDEX points_entries_resident ON points_entries (resident_id, id);
CREATE INDEX points_entries_day ON points_entries (resident_id, kind, day) WHERE op = 'earn';
CREATE INDEX points_entries_lots ON points_entries (expires_day, resident_id) WHERE op = 'earn' AND lot_closed = 0;
