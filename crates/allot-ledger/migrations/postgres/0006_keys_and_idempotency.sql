-- Offline license files: each tenant's Ed25519 signing keys. The highest seq signs new files;
-- older keys stay so that files they signed still verify. private_key is sealed by the ledger
-- ("chacha20poly1305:..." under the operator's key, or "plain:..." when none is configured).

CREATE TABLE signing_keys (
    tenant_id   BIGINT NOT NULL REFERENCES tenants (id),
    seq         BIGINT NOT NULL,
    kid         TEXT    NOT NULL,
    public_key  TEXT    NOT NULL,
    private_key TEXT    NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, seq),
    UNIQUE (tenant_id, kid)
);

-- Per-tenant license settings; a tenant without a row uses the defaults (7 days).
CREATE TABLE license_settings (
    tenant_id        BIGINT NOT NULL PRIMARY KEY REFERENCES tenants (id),
    validity_seconds BIGINT NOT NULL CHECK (validity_seconds > 0)
);

-- Idempotency-Key records of the native API, scoped to tenant and principal. The claim and the
-- ledger's outcome are written in the transaction of the change itself (so a retry never
-- changes twice); the rendered HTTP answer follows once it is known. Expired after 24 hours.
CREATE TABLE idempotency_keys (
    tenant_id   BIGINT NOT NULL REFERENCES tenants (id),
    principal   TEXT    NOT NULL,
    idem_key    TEXT    NOT NULL,
    fingerprint TEXT    NOT NULL,
    outcome     TEXT,
    status      BIGINT,
    body        TEXT,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, principal, idem_key)
);
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (tenant_id, expires_at);
