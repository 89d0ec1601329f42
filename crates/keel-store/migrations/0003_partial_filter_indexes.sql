-- Filter indexes that cost nothing for traces without the attribute.
--
-- Most deployments set only some attribution headers, and most calls succeed: a partial
-- index (WHERE col IS NOT NULL) is not touched by a row that lacks the value, which
-- keeps the writer's per-row cost down. Each index carries started_at_ms so a filtered
-- listing comes out newest-first without a sort. The status index goes: three values,
-- never selective; error listings use error_class.
DROP INDEX IF EXISTS traces_model_requested;
DROP INDEX IF EXISTS traces_tenant;
DROP INDEX IF EXISTS traces_feature;
DROP INDEX IF EXISTS traces_user;
DROP INDEX IF EXISTS traces_session;
DROP INDEX IF EXISTS traces_status;
DROP INDEX IF EXISTS traces_error_class;

CREATE INDEX traces_model_time ON traces (model_requested, started_at_ms) WHERE model_requested IS NOT NULL;
CREATE INDEX traces_tenant_time ON traces (tenant, started_at_ms) WHERE tenant IS NOT NULL;
CREATE INDEX traces_feature_time ON traces (feature, started_at_ms) WHERE feature IS NOT NULL;
CREATE INDEX traces_user_time ON traces (user, started_at_ms) WHERE user IS NOT NULL;
CREATE INDEX traces_session_time ON traces (session, started_at_ms) WHERE session IS NOT NULL;
CREATE INDEX traces_error_time ON traces (error_class, started_at_ms) WHERE error_class IS NOT NULL;
