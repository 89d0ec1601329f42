-- Every attempt of a call that was retried or fell back to another model: JSON list of
-- {model, provider, upstream_model, outcome, latency_ms, error}, NULL for a call that
-- succeeded (or failed) on its first and only attempt.
ALTER TABLE traces ADD COLUMN attempts_json TEXT;
