-- Responses API state (`POST /v1/responses` with `store`, the default): the response
-- object `GET /v1/responses/{id}` returns, and the conversation — earlier turns, this
-- turn's input and its output, as chat messages — that a request naming it as
-- `previous_response_id` continues from, on any upstream. Scoped to the tenant and key
-- that made it.

CREATE TABLE responses (
    id                TEXT    PRIMARY KEY,
    tenant            TEXT,
    key_id            TEXT,
    trace_id          TEXT    NOT NULL,
    created_ms        INTEGER NOT NULL,
    response_json     TEXT    NOT NULL,
    conversation_json TEXT    NOT NULL
);
CREATE INDEX responses_created ON responses (created_ms);
