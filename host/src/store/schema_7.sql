-- ledgerbridge store, migration 7: the group a running job was claimed in
-- (issue 10). A group's jobs run together and their calls go out batched,
-- so a connection's calls at once bound its running groups, counted here
-- over every worker process.
ALTER TABLE jobs ADD COLUMN claim_group TEXT;
