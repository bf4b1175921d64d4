-- ledgerbridge store, migration 4: fair scheduling and rate limits (R2, R5).

-- A job's priority on its connection: 0 a funding-complete payment (A4),
-- 1 an automatic or manual sync, 2 bulk re-sync work. Claims take each
-- connection's jobs in this order, round-robin over connections.
ALTER TABLE jobs ADD COLUMN priority INTEGER NOT NULL DEFAULT 1;
UPDATE jobs SET priority = 0 WHERE trigger = 'funding_complete';
UPDATE jobs SET priority = 2 WHERE trigger = 'bulk';
CREATE INDEX jobs_by_connection ON jobs(state, connection_id, priority, due_at, target, id);

-- A connection paused until `paused_until`, by its ERP's rate limit
-- (`paused_by` = 'erp': nothing may be sent) or by its own call budget
-- ('budget': calls already paid for may still go); claims skip it till then.
ALTER TABLE connections ADD COLUMN paused_until INTEGER;
ALTER TABLE connections ADD COLUMN paused_by TEXT;
ALTER TABLE connections ADD COLUMN paused_reason TEXT;

-- Each worker's count of calls made per connection, for operators: the
-- budget a connection has left. Written with the worker's heartbeat.
CREATE TABLE connection_usage (
    connection_id  TEXT NOT NULL,
    worker_id      TEXT NOT NULL,
    calls_minute   INTEGER NOT NULL,
    calls_day      INTEGER NOT NULL,
    at             INTEGER NOT NULL,
    PRIMARY KEY (connection_id, worker_id)
);
