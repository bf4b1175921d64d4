-- ledgerbridge store, migration 9: the HTTP API's tokens and idempotency
-- keys (issue 13).
--
-- A token is `lbt_<id>_<secret>`: only the SHA-256 of its secret is kept,
-- so the store cannot show a token again (it is shown once, when made).
-- `tenant_id` NULL is an admin token.
CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT REFERENCES tenants (id),
    label       TEXT NOT NULL,
    secret_sha256 BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    rotated_at  INTEGER,
    revoked_at  INTEGER
);
CREATE INDEX api_tokens_by_tenant ON api_tokens (tenant_id);

-- A write sent with an `Idempotency-Key` header, per caller's scope (the
-- tenant, or `admin`): the request's digest and, once answered, the
-- answer, so a retried request gets the first answer and a different
-- request under the same key is refused. `status` NULL: under way.
CREATE TABLE idempotency_keys (
    scope        TEXT NOT NULL,
    key          TEXT NOT NULL,
    request_sha256 BLOB NOT NULL,
    status       INTEGER,
    body         TEXT,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
);
