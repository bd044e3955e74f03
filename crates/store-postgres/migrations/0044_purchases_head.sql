-- One row that every offline-purchase ingest writes in its transaction: its sequence number
-- and xmin (the transaction that last wrote it) tell an ingest whether another one committed
-- since the last ingest of its own process (the carry-over of cards' shadow ids and highest
-- counters, `store::carry`).
CREATE TABLE purchases_head (
    id integer PRIMARY KEY CHECK (id = 1),
    seq bigint NOT NULL
);
INSERT INTO purchases_head (id, seq) VALUES (1, 0);
