-- Traffic-split overrides (`keel function canary`): the split a function serves instead
-- of its configured weights, one row per function (no row: the config's weights), and
-- every move of it, kept for `keel function history`. Weights are basis points in a JSON
-- array of {"variant", "weight"} objects, summing to 10,000.

CREATE TABLE function_splits (
    function      TEXT    PRIMARY KEY,
    weights_json  TEXT    NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    actor         TEXT    NOT NULL,
    reason        TEXT    NOT NULL
);

CREATE TABLE function_split_moves (
    id           INTEGER PRIMARY KEY,
    function     TEXT    NOT NULL,
    action       TEXT    NOT NULL,   -- 'canary' or 'reset'
    variant      TEXT,               -- the canary variant (NULL for a reset)
    percent_bps  INTEGER,            -- its share in basis points (NULL for a reset)
    from_weights TEXT,               -- NULL: the configured weights were serving
    to_weights   TEXT,               -- NULL: back to the configured weights
    at_ms        INTEGER NOT NULL,
    actor        TEXT    NOT NULL,
    reason       TEXT    NOT NULL
);
CREATE INDEX function_split_moves_function ON function_split_moves (function, id);
