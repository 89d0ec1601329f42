-- How a feedback value was sent (`POST /v1/feedback`), so it reads back as the JSON the
-- app sent: 'number' (value_num), 'boolean' (value_num 1/0) or 'category' (value_text).
-- Rows written before this column existed are numbers or categories, told apart by
-- which value column is set.
ALTER TABLE feedback ADD COLUMN value_kind TEXT NOT NULL DEFAULT 'number'
    CHECK (value_kind IN ('number', 'boolean', 'category'));
UPDATE feedback SET value_kind = 'category' WHERE value_text IS NOT NULL;
