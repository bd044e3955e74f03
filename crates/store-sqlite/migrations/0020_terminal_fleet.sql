-- Terminal fleet (issue 6): PSAM binding, upload batches answered once per batch id, and what
-- each terminal last reported, for fleet monitoring.
CREATE TABLE terminal_psams (
    terminal_id TEXT PRIMARY KEY REFERENCES terminals (id),
    psam_terminal_id TEXT NOT NULL UNIQUE,
    bound_ms INTEGER NOT NULL
);

CREATE TABLE terminal_batches (
    terminal_id TEXT NOT NULL REFERENCES terminals (id),
    batch_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('card', 'ecode')),
    digest TEXT NOT NULL,
    records INTEGER NOT NULL,
    answer BLOB NOT NULL,
    received_ms INTEGER NOT NULL,
    PRIMARY KEY (terminal_id, batch_id)
);

CREATE TABLE terminal_status (
    terminal_id TEXT PRIMARY KEY REFERENCES terminals (id),
    last_seen_ms INTEGER NOT NULL,
    last_upload_ms INTEGER,
    uploaded_records INTEGER NOT NULL DEFAULT 0,
    records_pending INTEGER,
    parameters_version TEXT,
    deny_list_version INTEGER
);
