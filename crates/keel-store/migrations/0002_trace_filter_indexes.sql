-- Indexes for the filters of `keel traces` and the breakdowns of `keel report`.
CREATE INDEX traces_model_requested ON traces (model_requested);
CREATE INDEX traces_tenant ON traces (tenant);
CREATE INDEX traces_feature ON traces (feature);
CREATE INDEX traces_user ON traces (user);
CREATE INDEX traces_session ON traces (session);
CREATE INDEX traces_status ON traces (status);
CREATE INDEX traces_error_class ON traces (error_class);
