-- ledgerbridge store, migration 6: one name per concept, the SPEC's word
-- (issue 9): the integration log (L1), the ERP's entry id, and the
-- idempotency key (D2) the contract calls `idempotency-key`.
ALTER TABLE sync_log RENAME TO integration_log;
ALTER TABLE integration_log RENAME COLUMN erp_id TO entry_id;
DROP INDEX sync_log_by_document;
CREATE INDEX integration_log_by_document ON integration_log(tenant_id, document_id, connection_id, id);
ALTER TABLE entries RENAME COLUMN erp_id TO entry_id;
ALTER TABLE entries RENAME COLUMN intent_key TO idempotency_key;
