-- OpenTelemetry: each trace's W3C trace context (the caller's trace id from
-- `traceparent`, or a new one when spans are exported; Keel's own span id; the caller's
-- span as parent), so a trace can be found by its OpenTelemetry trace id.
ALTER TABLE traces ADD COLUMN otel_trace_id TEXT;
ALTER TABLE traces ADD COLUMN otel_span_id TEXT;
ALTER TABLE traces ADD COLUMN otel_parent_span_id TEXT;
CREATE INDEX traces_otel_trace ON traces (otel_trace_id) WHERE otel_trace_id IS NOT NULL;

-- Spans an application sent to `POST /v1/traces` (OTLP): its retrieval, tool calls and
-- other work, shown beside Keel's own call on the trace page. Ids are lowercase hex;
-- times are unix nanoseconds; attributes are a JSON object (resource attributes under
-- their own keys are not merged in: `service` keeps service.name).
CREATE TABLE app_spans (
    trace_id        TEXT    NOT NULL,
    span_id         TEXT    NOT NULL,
    parent_span_id  TEXT,
    name            TEXT    NOT NULL,
    service         TEXT,
    kind            INTEGER NOT NULL DEFAULT 0,  -- OTLP SpanKind (0 unspecified … 5 consumer)
    start_unix_nano INTEGER NOT NULL,
    end_unix_nano   INTEGER NOT NULL,
    attributes_json TEXT    NOT NULL DEFAULT '{}',
    status          TEXT    NOT NULL,            -- unset | ok | error
    status_message  TEXT,
    received_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (trace_id, span_id)
);
CREATE INDEX app_spans_received ON app_spans (received_at_ms);
