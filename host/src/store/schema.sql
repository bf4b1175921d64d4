-- ledgerbridge store, migration 1. Every table is keyed so that one tenant's
-- rows can be found, and removed, without touching another's.

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    created_at  INTEGER NOT NULL
);

CREATE TABLE connections (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    enabled      INTEGER NOT NULL,
    -- The whole connection as JSON (model::Connection) minus credentials.
    config       TEXT NOT NULL,
    -- Credential headers, JSON; never handed to a plugin.
    credentials  TEXT NOT NULL,
    created_at   INTEGER NOT NULL
);

CREATE TABLE documents (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    id          TEXT NOT NULL,
    status      TEXT NOT NULL,
    -- model::Document as JSON.
    body        TEXT NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE payments (
    tenant_id    TEXT NOT NULL,
    id           TEXT NOT NULL,
    document_id  TEXT NOT NULL,
    -- model::Payment as JSON.
    body         TEXT NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, document_id) REFERENCES documents(tenant_id, id)
);
CREATE INDEX payments_by_document ON payments(tenant_id, document_id);

-- The ERP's entry for a document (target bill) or payment (target payment)
-- in one connection. A row with no erp_id records an intent: a create is
-- (or was) under way with intent_key as its idempotency key.
CREATE TABLE entries (
    connection_id  TEXT NOT NULL REFERENCES connections(id),
    target         TEXT NOT NULL,
    subject_id     TEXT NOT NULL,
    document_id    TEXT NOT NULL,
    erp_id         TEXT,
    version        TEXT,
    state          TEXT,
    content_hash   TEXT,
    intent_key     TEXT,
    booked         INTEGER NOT NULL DEFAULT 0,
    booked_reason  TEXT,
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (connection_id, target, subject_id)
);
CREATE INDEX entries_by_document ON entries(connection_id, document_id);

-- The durable queue. One queued job per (connection, document, target):
-- later events for the same one coalesce into it.
CREATE TABLE jobs (
    id             INTEGER PRIMARY KEY,
    connection_id  TEXT NOT NULL REFERENCES connections(id),
    tenant_id      TEXT NOT NULL,
    document_id    TEXT NOT NULL,
    target         TEXT NOT NULL,
    trigger        TEXT NOT NULL,
    force          INTEGER NOT NULL DEFAULT 0,
    -- queued | running | waiting (for the bill) | blocked | done | failed
    state          TEXT NOT NULL,
    attempts       INTEGER NOT NULL DEFAULT 0,
    due_at         INTEGER NOT NULL,
    lease_until    INTEGER,
    -- The process holding the lease (`pid:<n>`), so a restarted host can
    -- tell a dead worker's jobs from a live one's.
    lease_owner    TEXT,
    run_id         TEXT,
    outcome        TEXT,
    error          TEXT,
    created_at     INTEGER NOT NULL,
    finished_at    INTEGER
);
CREATE UNIQUE INDEX jobs_one_queued ON jobs(connection_id, document_id, target) WHERE state = 'queued';
-- Claims walk this in order, so claiming costs the same however long the queue.
CREATE INDEX jobs_due ON jobs(state, due_at, target, id);
CREATE INDEX jobs_by_document ON jobs(connection_id, document_id, state);
CREATE INDEX jobs_by_run ON jobs(run_id, state);

-- L1: every sync attempt, per document and connection.
CREATE TABLE sync_log (
    id             INTEGER PRIMARY KEY,
    tenant_id      TEXT NOT NULL,
    connection_id  TEXT NOT NULL,
    document_id    TEXT NOT NULL,
    at             INTEGER NOT NULL,
    trigger        TEXT NOT NULL,
    target         TEXT NOT NULL,
    -- JSON list of {operation, result}.
    operations     TEXT NOT NULL,
    outcome        TEXT NOT NULL,
    erp_id         TEXT,
    error          TEXT,
    -- JSON list of the plugin's log lines.
    plugin_log     TEXT NOT NULL
);
CREATE INDEX sync_log_by_document ON sync_log(tenant_id, document_id, connection_id, id);

-- L2: what a person must fix.
CREATE TABLE attention (
    connection_id  TEXT NOT NULL,
    tenant_id      TEXT NOT NULL,
    document_id    TEXT NOT NULL,
    target         TEXT NOT NULL,
    message        TEXT NOT NULL,
    hint           TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    PRIMARY KEY (connection_id, document_id, target)
);
