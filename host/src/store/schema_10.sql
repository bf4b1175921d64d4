-- ledgerbridge store, migration 10: cancelling a run (issue 13, M2).
--
-- A queued job carries an event from outside any run (approved, changed,
-- paid, funding complete, or a retry of one) once such an event was queued
-- or merged into it. Cancelling a run ends only the jobs that carry none:
-- a change the AP product sent is never dropped with a run.
ALTER TABLE jobs ADD COLUMN carries_event INTEGER NOT NULL DEFAULT 1;

-- Idempotency keys are kept for a day (the API's promise): the oldest are
-- found by age and dropped a few at a time as new keys arrive.
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
