-- ledgerbridge store, migration 2: funding accounts, check numbers and
-- Failed to export.

-- C1, C2: each funding account's next check number.
CREATE TABLE funding_accounts (
    tenant_id          TEXT NOT NULL REFERENCES tenants(id),
    id                 TEXT NOT NULL,
    next_check_number  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

-- Every check number issued from a funding account, to a payment, or found
-- already used in an ERP (payment_id NULL): never issued twice.
CREATE TABLE check_numbers (
    tenant_id        TEXT NOT NULL,
    funding_account  TEXT NOT NULL,
    number           INTEGER NOT NULL,
    payment_id       TEXT,
    issued_at        INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, funding_account, number)
);
CREATE UNIQUE INDEX check_numbers_by_payment ON check_numbers(tenant_id, payment_id) WHERE payment_id IS NOT NULL;

-- L3: payments the ERP rejected, until an export succeeds.
CREATE TABLE failed_exports (
    connection_id  TEXT NOT NULL,
    tenant_id      TEXT NOT NULL,
    payment_id     TEXT NOT NULL,
    document_id    TEXT NOT NULL,
    error          TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    PRIMARY KEY (connection_id, payment_id)
);
