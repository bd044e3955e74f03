-- E-code payments authorised online by a connected POS (issue 7.5): the platform decided at the
-- scan, so they are not offline risk and do not count against the certificate's offline limit.
ALTER TABLE ecode_payments ADD COLUMN authorised TEXT NOT NULL DEFAULT 'offline'
    CHECK (authorised IN ('offline', 'online'));
