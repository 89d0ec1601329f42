-- Trace ids are unique. A caller may send its own `x-keel-request-id`; when that id is
-- already taken (by another call, possibly another tenant's), the new trace is stored
-- under a fresh id and the caller's id is kept in `client_request_id`, so an id always
-- resolves to exactly one call: the first that used it. Rows that already share an id
-- keep the oldest under it; the others move to `<id>~dup<rowid>` (their caller's id in
-- `client_request_id`).
ALTER TABLE traces ADD COLUMN client_request_id TEXT;
UPDATE traces SET client_request_id = id, id = id || '~dup' || rowid
 WHERE rowid NOT IN (SELECT MIN(rowid) FROM traces GROUP BY id);
DROP INDEX traces_id;
CREATE UNIQUE INDEX traces_id ON traces (id);
CREATE INDEX traces_client_request_id ON traces (client_request_id)
 WHERE client_request_id IS NOT NULL;

-- Who sent an app span (`POST /v1/traces`): the tenant of the virtual key, NULL for the
-- admin key or an open gateway. A span already stored is replaced only by the same
-- owner (an exporter's retry), never by another tenant.
ALTER TABLE app_spans ADD COLUMN owner TEXT;
