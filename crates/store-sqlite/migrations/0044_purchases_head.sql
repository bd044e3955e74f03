-- One row that every offline-purchase ingest writes in its transaction: its sequence number
-- tells an ingest whether another one committed since the last ingest of its own process (the
-- carry-over of cards' shadow ids and highest counters, `store::carry`).
CREATE TABLE purchases_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL
);
INSERT INTO purchases_head (id, seq) VALUES (1, 0);
