-- SCIM (issue 15): what an identity provider sends for a user beyond allot's own fields, and
-- the `scim` token role.

-- The identity provider's own id for the user (SCIM externalId) and the name to show
-- (displayName); NULL when never sent.
ALTER TABLE users ADD COLUMN external_id TEXT;
ALTER TABLE users ADD COLUMN display_name TEXT;
-- When the user's own fields last changed (SCIM meta.lastModified); NULL: never since created.
ALTER TABLE users ADD COLUMN modified_at INTEGER;
CREATE INDEX users_by_external_id ON users (tenant_id, external_id) WHERE external_id IS NOT NULL;

-- API tokens may carry the role `scim` (the SCIM endpoint and nothing else). SQLite cannot
-- alter a CHECK constraint: the table is rebuilt with the same columns, rows and indexes.
CREATE TABLE api_tokens_new (
    id          TEXT    NOT NULL PRIMARY KEY,
    -- NULL only for server-wide operator tokens.
    tenant_id   INTEGER REFERENCES tenants (id),
    token_hash  TEXT    NOT NULL UNIQUE,
    role        TEXT    NOT NULL CHECK (role IN ('operator', 'admin', 'reader', 'user', 'scim')),
    login       TEXT    NOT NULL,
    user_id     INTEGER,
    label       TEXT    NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    revoked_at  INTEGER,
    CHECK ((tenant_id IS NULL) = (role = 'operator')),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id)
);
INSERT INTO api_tokens_new (id, tenant_id, token_hash, role, login, user_id, label, created_at, expires_at, revoked_at)
    SELECT id, tenant_id, token_hash, role, login, user_id, label, created_at, expires_at, revoked_at FROM api_tokens;
DROP TABLE api_tokens;
ALTER TABLE api_tokens_new RENAME TO api_tokens;
CREATE INDEX api_tokens_by_tenant ON api_tokens (tenant_id, login);
CREATE INDEX api_tokens_live_by_user ON api_tokens (tenant_id, user_id) WHERE revoked_at IS NULL AND user_id IS NOT NULL;
