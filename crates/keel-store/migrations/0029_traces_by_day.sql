-- Traces partitioned by day is PostgreSQL's (migrations/postgres/0029_traces_by_day.sql);
-- a SQLite store has one file and nothing to detach, so this version changes nothing
-- here. It exists so a store's version means the same schema on both backends.
SELECT 1;
