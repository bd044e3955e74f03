-- E-code payments accepted offline by terminals and uploaded (issue 7.5): paid from the
-- holder's online account, or recorded as a debt when it could not pay (settled later).

CREATE TABLE ecode_payments (
    key TEXT PRIMARY KEY,
    card_number TEXT NOT NULL,
    certificate_digest TEXT NOT NULL,
    merchant TEXT NOT NULL,
    terminal TEXT NOT NULL,
    amount_fen BIGINT NOT NULL CHECK (amount_fen > 0),
    code_time BIGINT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('paid', 'debt', 'settled')),
    payment_id BIGINT,
    over_limit BIGINT NOT NULL DEFAULT 0 CHECK (over_limit IN (0, 1)),
    created_ms BIGINT NOT NULL,
    settled_ms BIGINT,
    CHECK (state = 'debt' OR payment_id IS NOT NULL)
);
CREATE INDEX ecode_payments_card ON ecode_payments (card_number, state);
CREATE INDEX ecode_payments_certificate ON ecode_payments (certificate_digest);
