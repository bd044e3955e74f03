-- Batch signatures in the exchange (issue 8): what the access log keeps of the consumer's
-- request and the provider's response besides their digests, so a call stays provable: the
-- signature (hex) and, for a batch-signed message, its path in the batch's SM3 hash tree.
ALTER TABLE exchange_access ADD COLUMN request_signature TEXT;
ALTER TABLE exchange_access ADD COLUMN request_batch TEXT;
ALTER TABLE exchange_access ADD COLUMN response_signature TEXT;
ALTER TABLE exchange_access ADD COLUMN response_batch TEXT;
