-- ledgerbridge store, migration 5: each Requires attention item has a kind
-- of its own, so no code tells items apart by their message text.
--   failed       a sync failed in a way a person must fix
--   gave_up      a transient failure went on past the last retry
--   blocked      a payment blocked because its bill could not be synced (A5)
--   quarantined  a job that kept crashing its workers (P7)
--   host_fault   the host itself failed while running the sync
ALTER TABLE attention ADD COLUMN kind TEXT NOT NULL DEFAULT 'failed';

-- Existing items: their kind from the words the engine wrote until now.
UPDATE attention SET kind = 'blocked' WHERE message LIKE 'blocked:%';
UPDATE attention SET kind = 'quarantined' WHERE message LIKE 'quarantined:%';
UPDATE attention SET kind = 'gave_up' WHERE message LIKE 'gave up after %';
UPDATE attention SET kind = 'host_fault' WHERE message LIKE 'the host failed%';
