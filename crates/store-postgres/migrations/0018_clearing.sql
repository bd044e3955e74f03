-- Closed clearing windows and their reports (清分报表): written once, never changed.

CREATE TABLE clearing_windows (
    window_id TEXT PRIMARY KEY,
    closed_ms BIGINT NOT NULL,
    closed_by TEXT NOT NULL,
    digest TEXT NOT NULL
);

CREATE TABLE clearing_lines (
    window_id TEXT NOT NULL REFERENCES clearing_windows (window_id),
    merchant TEXT NOT NULL,
    category TEXT NOT NULL,
    count BIGINT NOT NULL,
    gross_fen BIGINT NOT NULL,
    fee_fen BIGINT NOT NULL,
    net_fen BIGINT NOT NULL,
    PRIMARY KEY (window_id, merchant, category),
    CHECK (gross_fen = fee_fen + net_fen)
);
