-- The tamper-evident audit: each record carries the hash of its predecessor in the tenant's
-- chain (NULL before the first), and the tenant row carries the chain's head (the hash of its
-- last record), both written by the audit flush in the record's own transaction. Records
-- written before this migration are chained by a one-time ledger step at open.
ALTER TABLE tenants ADD COLUMN audit_head TEXT;
ALTER TABLE audit_events ADD COLUMN prev_hash TEXT;
