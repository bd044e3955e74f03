-- Offline purchases uploaded by terminals (issue 5): one row per card and offline counter
-- (epurse.md §5), the clearing window it was posted into, the aggregated ledger transfer that
-- carries its money, and its review flags (1 deny-listed, 2 counter gap, 4 late, 8 shortfall
-- covered from suspense).
-- No foreign key to ledger_transfers: the id comes from the same transaction and transfers
-- are never deleted (trigger), and a per-row check would cost as much as the row.

CREATE TABLE purchases (
    id BIGINT PRIMARY KEY,
    card_number TEXT NOT NULL,
    offline_counter BIGINT NOT NULL CHECK (offline_counter BETWEEN 0 AND 65535),
    merchant TEXT NOT NULL,
    terminal_id TEXT NOT NULL,
    terminal_serial BIGINT NOT NULL,
    amount_fen BIGINT NOT NULL CHECK (amount_fen >= 0),
    tx_type BIGINT NOT NULL,
    algorithm_id BIGINT NOT NULL,
    tx_ms BIGINT NOT NULL,
    balance_before_fen BIGINT NOT NULL,
    tac BYTEA NOT NULL,
    -- The clearing window (city date it closes on), fixed when posted.
    window_id TEXT NOT NULL,
    transfer_id BIGINT,
    flags BIGINT NOT NULL DEFAULT 0,
    gap_first BIGINT,
    gap_last BIGINT,
    shortfall_fen BIGINT NOT NULL DEFAULT 0,
    ingested_ms BIGINT NOT NULL,
    UNIQUE (card_number, offline_counter)
);
-- A window close selects by window and sums per merchant.
CREATE INDEX purchases_window ON purchases (window_id, merchant);
CREATE INDEX purchases_flagged ON purchases (window_id) WHERE flags <> 0;

CREATE SEQUENCE purchases_id_seq;

CREATE TRIGGER purchases_no_change BEFORE UPDATE OR DELETE ON purchases
FOR EACH ROW EXECUTE FUNCTION ledger_immutable();
