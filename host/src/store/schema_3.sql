-- ledgerbridge store, migration 3: workers identified by a unique id with a
-- heartbeat (not by process id, which means nothing across PID namespaces),
-- crash counts for quarantine, why a check number is marked used, and when a
-- connection was disabled.

-- A running worker. `id` is a UUID; jobs.lease_owner names it.
CREATE TABLE workers (
    id            TEXT PRIMARY KEY,
    -- Host name and process id, for operators only: never used to judge
    -- whether a worker lives.
    label         TEXT NOT NULL,
    started_at    INTEGER NOT NULL,
    heartbeat_at  INTEGER NOT NULL
);

-- How many workers stopped without finishing this job while it ran: a job
-- that keeps taking its worker down is quarantined, not retried forever.
ALTER TABLE jobs ADD COLUMN crashes INTEGER NOT NULL DEFAULT 0;

-- For numbers marked used in the ERP (payment_id NULL): `in-use` (the
-- connector reported it), `rejected` (the ERP refused a payment with it).
ALTER TABLE check_numbers ADD COLUMN reason TEXT;
UPDATE check_numbers SET reason = 'in-use' WHERE payment_id IS NULL;

-- When the connection was last disabled (P4), to count what changed meanwhile.
ALTER TABLE connections ADD COLUMN disabled_at INTEGER;
