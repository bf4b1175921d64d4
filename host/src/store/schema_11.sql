-- ledgerbridge store, migration 11: which plugin version ran each attempt's
-- operations (issue 14, P3, L1), as JSON {name, version, digest}; NULL when
-- the attempt made no call (or was recorded before this migration).
ALTER TABLE integration_log ADD COLUMN plugin TEXT;
