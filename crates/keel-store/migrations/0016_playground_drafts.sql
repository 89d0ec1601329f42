-- The prompt playground's drafts (dashboard `/ui/playground`): a prompt file's text as
-- someone edits it in the browser, the model it is tried on and the sample variables
-- last typed, kept so a draft survives a reload and can be shared by its id. A draft
-- never moves a label; saving it as a version goes through `prompt_versions` (audited)
-- and is remembered here in `saved_version`.
CREATE TABLE playground_drafts (
    id              TEXT    PRIMARY KEY NOT NULL,   -- drf_<uuid v7>
    prompt_name     TEXT    NOT NULL,
    base_ref        TEXT    NOT NULL,               -- what the editor started from: a label, or vN
    base_version    INTEGER,                        -- the version that ref pointed at then
    source          TEXT    NOT NULL,               -- the prompt file (TOML) as edited
    model           TEXT    NOT NULL,               -- the configured model it is tried on
    variables_json  TEXT    NOT NULL DEFAULT '{}',  -- the sample variables last typed
    author          TEXT    NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    updated_at_ms   INTEGER NOT NULL,
    saved_version   INTEGER                         -- set once saved as a prompt version
);
CREATE INDEX playground_drafts_prompt ON playground_drafts (prompt_name, updated_at_ms);
