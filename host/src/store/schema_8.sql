-- ledgerbridge store, migration 8: each connection's OAuth2 grant (P2, O2,
-- issue 11). The refresh token the ERP rotated to is written here before
-- the access token that came with it is used, so a crash can never leave
-- the host holding only a spent token. `refreshing_until` is a lease: one
-- worker, in any process, refreshes a connection's token at a time.
CREATE TABLE oauth_grants (
    connection_id TEXT PRIMARY KEY REFERENCES connections (id) ON DELETE CASCADE,
    client_secret TEXT NOT NULL,
    refresh_token TEXT NOT NULL,
    access_token TEXT,
    -- Unix ms at which the access token expires.
    access_expires_at INTEGER,
    -- NULL while the grant works; else why the ERP refused it (the
    -- connection needs re-authorisation).
    refused TEXT,
    refreshing_until INTEGER,
    refreshing_by TEXT,
    -- Counts rotations: a worker that read generation N stores only over N.
    generation INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL
);
