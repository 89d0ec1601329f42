-- A trace whose tokens are Keel's estimate, not the provider's report: a stream that was
-- cut (or never sent its usage) is priced from the tokenizer count of its request and of
-- the output that was forwarded, so spend that reached a client is never NULL.
ALTER TABLE traces ADD COLUMN usage_estimated INTEGER NOT NULL DEFAULT 0;
