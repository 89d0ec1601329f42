-- Response cache outcomes: `hit` (served from the cache: no upstream call, cost 0, the
-- cost it would have had in saved_cost_nanos), `miss` (called upstream, then stored) or
-- NULL when the cache was not consulted.
ALTER TABLE traces ADD COLUMN cache TEXT;
ALTER TABLE traces ADD COLUMN saved_cost_nanos INTEGER;
