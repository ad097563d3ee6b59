-- Webhooks (Standard Webhooks): a tenant's endpoints, and the outbox of deliveries to them.
-- A delivery row is written by the audit flush in the transaction of the change it reports, so
-- a change that rolls back leaves none and a committed change always has its rows. The delivery
-- worker claims due rows (one writer: one claim per row at a time) and records each
-- attempt on the row.

CREATE TABLE webhook_endpoints (
    tenant_id      INTEGER NOT NULL REFERENCES tenants (id),
    id             TEXT   NOT NULL,
    url            TEXT   NOT NULL,
    description    TEXT   NOT NULL DEFAULT '',
    -- JSON array of event types; empty array: every event.
    events         TEXT   NOT NULL,
    -- The signing secret, sealed like the license-signing keys ("plain:" or "chacha20poly1305:").
    secret         TEXT   NOT NULL,
    enabled        INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    -- When the current run of failed attempts began (NULL: the last attempt succeeded).
    failing_since  INTEGER,
    disabled_at    INTEGER,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE webhook_deliveries (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id        INTEGER NOT NULL,
    endpoint_id      TEXT   NOT NULL,
    -- The Standard Webhooks message id (webhook-id), the same for every endpoint of one event.
    event_id         TEXT   NOT NULL,
    event_type       TEXT   NOT NULL,
    -- The body as sent: {"type", "timestamp", "data"}.
    payload          TEXT   NOT NULL,
    audit_seq        INTEGER,
    status           TEXT   NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    last_attempt_at  INTEGER,
    last_status_code INTEGER,
    last_error       TEXT,
    -- A worker's claim: its token and until when it holds the row.
    claim            TEXT,
    claimed_until    INTEGER,
    created_at       INTEGER NOT NULL,
    FOREIGN KEY (tenant_id, endpoint_id) REFERENCES webhook_endpoints (tenant_id, id)
        ON DELETE CASCADE
);
-- The worker's scan: pending rows in order; the head of each endpoint's queue.
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (status, next_attempt_at, id);
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (tenant_id, endpoint_id, status, id);

-- Server-wide secrets made once per store (the Idempotency-Key fingerprint key).
CREATE TABLE server_secrets (
    name  TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
);
