-- Online e-code verifications counted by day, purpose and outcome, for the usage page.
CREATE TABLE ecode_stats (
    day TEXT NOT NULL,
    purpose TEXT NOT NULL,
    reason TEXT NOT NULL,
    count BIGINT NOT NULL CHECK (count > 0),
    PRIMARY KEY (day, purpose, reason)
);
