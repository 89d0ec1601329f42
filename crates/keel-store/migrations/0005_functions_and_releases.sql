-- Functions and lineage. A trace served through a function records which function,
-- variant and prompt version served it, and the *release*: the exact combination of
-- prompt version, pinned upstream model, parameters and tools. A release row is written
-- once, by the gateway's registry refresher (never on the request path), the first
-- time that combination is deployed.

ALTER TABLE traces ADD COLUMN function       TEXT;
ALTER TABLE traces ADD COLUMN variant        TEXT;
ALTER TABLE traces ADD COLUMN prompt_name    TEXT;
ALTER TABLE traces ADD COLUMN prompt_version INTEGER;
ALTER TABLE traces ADD COLUMN release_id     TEXT;

CREATE INDEX traces_function ON traces (function, started_at_ms) WHERE function IS NOT NULL;
CREATE INDEX traces_release ON traces (release_id, started_at_ms) WHERE release_id IS NOT NULL;
CREATE INDEX traces_prompt ON traces (prompt_name, started_at_ms) WHERE prompt_name IS NOT NULL;

CREATE TABLE releases (
    id             TEXT    PRIMARY KEY,  -- content hash of everything below but the times
    function       TEXT    NOT NULL,
    variant        TEXT    NOT NULL,
    prompt_name    TEXT    NOT NULL,
    prompt_version INTEGER NOT NULL,
    prompt_hash    TEXT    NOT NULL,
    model          TEXT    NOT NULL,     -- the configured model name
    provider       TEXT    NOT NULL,
    upstream_model TEXT    NOT NULL,     -- the pinned id sent upstream
    params_json    TEXT    NOT NULL,     -- effective parameters (prompt defaults + variant)
    tools_json     TEXT,                 -- the prompt's tools, if any
    created_at_ms  INTEGER NOT NULL      -- first deployed
);
CREATE INDEX releases_function ON releases (function, created_at_ms);
