-- Shadow traffic: a shadow call's trace (origin = 'shadow') points at the live call it
-- mirrored, so `keel shadow report` can pair them.
ALTER TABLE traces ADD COLUMN parent_id TEXT;
CREATE INDEX traces_parent ON traces (parent_id) WHERE parent_id IS NOT NULL;
