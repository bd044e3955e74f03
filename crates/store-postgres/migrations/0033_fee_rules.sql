-- The fee schedule (手续费率), editable: a rule per scope (a merchant category or one
-- merchant) and effective date, a percentage in basis points plus a fixed fee per transaction
-- in fen. Rules are added, never changed or removed: a change is a new rule with a later
-- effective date, so the rules a closed window was cleared with stay as they were.
CREATE TABLE fee_rules (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scope_kind TEXT NOT NULL CHECK (scope_kind IN ('category', 'merchant')),
    scope_value TEXT NOT NULL CHECK (length(scope_value) BETWEEN 1 AND 32),
    rate_bp BIGINT NOT NULL CHECK (rate_bp BETWEEN 0 AND 10000),
    fixed_fen BIGINT NOT NULL CHECK (fixed_fen >= 0),
    -- YYYY-MM-DD: the first clearing window (by its closing date) the rule applies to.
    effective_from TEXT NOT NULL CHECK (length(effective_from) = 10),
    created_ms BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    UNIQUE (scope_kind, scope_value, effective_from)
);
CREATE FUNCTION fee_rules_fixed() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'a fee rule is never changed or removed: add one with a later date';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER fee_rules_fixed BEFORE UPDATE OR DELETE ON fee_rules
    FOR EACH ROW EXECUTE FUNCTION fee_rules_fixed();
-- The city's schedule until now (in force since 2026-01-01): transit, taxis and bikes 0.30 %,
-- shops 0.60 %, hospitals and utilities 0.10 %; canteens, libraries and government none.
INSERT INTO fee_rules (scope_kind, scope_value, rate_bp, fixed_fen, effective_from, created_ms,
    created_by) VALUES
    ('category', 'transit', 30, 0, '2026-01-01', 0, 'migration:0033'),
    ('category', 'shop', 60, 0, '2026-01-01', 0, 'migration:0033'),
    ('category', 'taxi', 30, 0, '2026-01-01', 0, 'migration:0033'),
    ('category', 'bike', 30, 0, '2026-01-01', 0, 'migration:0033'),
    ('category', 'hospital', 10, 0, '2026-01-01', 0, 'migration:0033'),
    ('category', 'utility', 10, 0, '2026-01-01', 0, 'migration:0033');
