-- Credentials. Passwords are stored only as argon2id PHC strings, API tokens only as SHA-256.

CREATE TABLE logins (
    tenant_id           INTEGER NOT NULL REFERENCES tenants (id),
    login               TEXT    NOT NULL,
    login_key           TEXT    NOT NULL,
    password_hash       TEXT    NOT NULL,
    role                TEXT    NOT NULL CHECK (role IN ('admin', 'reader', 'user')),
    user_id             INTEGER,
    created_at          INTEGER NOT NULL,
    password_changed_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, login_key),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id)
);

CREATE TABLE api_tokens (
    id          TEXT    NOT NULL PRIMARY KEY,
    -- NULL only for server-wide operator tokens.
    tenant_id   INTEGER REFERENCES tenants (id),
    token_hash  TEXT    NOT NULL UNIQUE,
    role        TEXT    NOT NULL CHECK (role IN ('operator', 'admin', 'reader', 'user')),
    login       TEXT    NOT NULL,
    user_id     INTEGER,
    label       TEXT    NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    revoked_at  INTEGER,
    CHECK ((tenant_id IS NULL) = (role = 'operator')),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id)
);
CREATE INDEX api_tokens_by_tenant ON api_tokens (tenant_id, login);
