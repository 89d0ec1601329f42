-- Guardrails: what each check found and did on a request (JSON list of outcomes: policy,
-- check, stage, action, score, evidence offsets — never the matched text).
ALTER TABLE traces ADD COLUMN guardrails_json TEXT;
