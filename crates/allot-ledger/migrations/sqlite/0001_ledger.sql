-- The seat ledger. Every table carries tenant_id and every reference between tables is a
-- composite (tenant_id, id) foreign key, so no row can ever point into another tenant.
-- Times are microseconds since the Unix epoch; flags are 0/1 integers (same DDL on both stores).

CREATE TABLE tenants (
    id                  INTEGER PRIMARY KEY,
    name                TEXT    NOT NULL UNIQUE,
    created_at          INTEGER NOT NULL,
    -- Per-tenant counters. The audit counter is what makes the audit sequence gap-free: it is
    -- bumped in the same transaction as the change it numbers, so a rollback returns the number.
    last_audit_seq      INTEGER NOT NULL DEFAULT 0,
    last_seat_number    INTEGER NOT NULL DEFAULT 0,
    last_user_id        INTEGER NOT NULL DEFAULT 0,
    last_product_id     INTEGER NOT NULL DEFAULT 0,
    last_company_id     INTEGER NOT NULL DEFAULT 0,
    last_owner_id       INTEGER NOT NULL DEFAULT 0,
    last_session_number INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE owners (
    tenant_id   INTEGER NOT NULL REFERENCES tenants (id),
    id          INTEGER NOT NULL,
    name        TEXT    NOT NULL,
    name_key    TEXT    NOT NULL,
    description TEXT    NOT NULL DEFAULT '',
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, name_key)
);

CREATE TABLE companies (
    tenant_id  INTEGER NOT NULL REFERENCES tenants (id),
    id         INTEGER NOT NULL,
    uuid       TEXT    NOT NULL UNIQUE,
    name       TEXT    NOT NULL,
    name_key   TEXT    NOT NULL,
    pool_mode  TEXT    NOT NULL CHECK (pool_mode IN ('global', 'company', 'custom')),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, name_key)
);

CREATE TABLE users (
    tenant_id    INTEGER NOT NULL REFERENCES tenants (id),
    id           INTEGER NOT NULL,
    uuid         TEXT    NOT NULL UNIQUE,
    login        TEXT    NOT NULL,
    login_key    TEXT    NOT NULL,
    first_name   TEXT    NOT NULL DEFAULT '',
    last_name    TEXT    NOT NULL DEFAULT '',
    email        TEXT    NOT NULL DEFAULT '',
    company_id   INTEGER,
    license_mode TEXT    NOT NULL CHECK (license_mode IN ('manual', 'automatic', 'company')),
    retired      INTEGER NOT NULL DEFAULT 0 CHECK (retired IN (0, 1)),
    user_type    TEXT    NOT NULL DEFAULT 'internal',
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, login_key),
    FOREIGN KEY (tenant_id, company_id) REFERENCES companies (tenant_id, id)
);

CREATE TABLE products (
    tenant_id       INTEGER NOT NULL REFERENCES tenants (id),
    id              INTEGER NOT NULL,
    owner_id        INTEGER NOT NULL,
    name            TEXT    NOT NULL,
    name_key        TEXT    NOT NULL,
    description     TEXT    NOT NULL DEFAULT '',
    tooltip         TEXT    NOT NULL DEFAULT '',
    kind            TEXT    NOT NULL CHECK (kind IN ('user', 'site', 'floating')),
    unrestricted    INTEGER NOT NULL DEFAULT 0 CHECK (unrestricted IN (0, 1)),
    hidden          INTEGER NOT NULL DEFAULT 0 CHECK (hidden IN (0, 1)),
    sort_order      INTEGER NOT NULL DEFAULT 0,
    extra_flags     INTEGER NOT NULL DEFAULT 0,
    prerequisite_id INTEGER,
    expires_at      INTEGER,
    trial           INTEGER NOT NULL DEFAULT 0 CHECK (trial IN (0, 1)),
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, owner_id, name_key),
    FOREIGN KEY (tenant_id, owner_id) REFERENCES owners (tenant_id, id),
    FOREIGN KEY (tenant_id, prerequisite_id) REFERENCES products (tenant_id, id),
    CHECK (prerequisite_id IS NULL OR prerequisite_id <> id)
);

-- What a user plan (extra_flags & 1) brings along.
CREATE TABLE plan_members (
    tenant_id INTEGER NOT NULL,
    plan_id   INTEGER NOT NULL,
    member_id INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, plan_id, member_id),
    FOREIGN KEY (tenant_id, plan_id) REFERENCES products (tenant_id, id),
    FOREIGN KEY (tenant_id, member_id) REFERENCES products (tenant_id, id),
    CHECK (plan_id <> member_id)
);

CREATE TABLE sessions (
    tenant_id         INTEGER NOT NULL REFERENCES tenants (id),
    uuid              TEXT    NOT NULL,
    -- Per-tenant sequence: the listing order and cursor.
    number            INTEGER NOT NULL,
    user_id           INTEGER NOT NULL,
    client            TEXT    NOT NULL CHECK (client IN ('windows', 'web', 'mobile', 'api')),
    device            TEXT    NOT NULL DEFAULT '',
    product_id        INTEGER,
    started_at        INTEGER NOT NULL,
    last_heartbeat_at INTEGER NOT NULL,
    lease_expires_at  INTEGER NOT NULL,
    lease_token_hash  TEXT    NOT NULL,
    ended_at          INTEGER,
    end_reason        TEXT CHECK (end_reason IN ('logoff', 'expiry', 'admin')),
    PRIMARY KEY (tenant_id, uuid),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id),
    FOREIGN KEY (tenant_id, product_id) REFERENCES products (tenant_id, id),
    CHECK ((ended_at IS NULL) = (end_reason IS NULL))
);
CREATE INDEX sessions_live ON sessions (tenant_id, user_id) WHERE ended_at IS NULL;
CREATE UNIQUE INDEX sessions_by_number ON sessions (tenant_id, number);

-- One row per seat. A seat has at most one holder by construction (one column); overflow rows
-- exist only for unrestricted products assigned past what was bought, and only while held.
CREATE TABLE seats (
    tenant_id          INTEGER NOT NULL REFERENCES tenants (id),
    number             INTEGER NOT NULL,
    uuid               TEXT    NOT NULL UNIQUE,
    product_id         INTEGER NOT NULL,
    trial              INTEGER NOT NULL DEFAULT 0 CHECK (trial IN (0, 1)),
    expires_at         INTEGER,
    transaction_id     TEXT,
    pool_company_id    INTEGER,
    overflow           INTEGER NOT NULL DEFAULT 0 CHECK (overflow IN (0, 1)),
    holder_id          INTEGER,
    held_since         INTEGER,
    charged_company_id INTEGER,
    session_uuid       TEXT,
    activation_hid     TEXT,
    activation_name    TEXT,
    activation_os      TEXT,
    created_at         INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, number),
    FOREIGN KEY (tenant_id, product_id) REFERENCES products (tenant_id, id),
    FOREIGN KEY (tenant_id, pool_company_id) REFERENCES companies (tenant_id, id),
    FOREIGN KEY (tenant_id, holder_id) REFERENCES users (tenant_id, id),
    FOREIGN KEY (tenant_id, charged_company_id) REFERENCES companies (tenant_id, id),
    FOREIGN KEY (tenant_id, session_uuid) REFERENCES sessions (tenant_id, uuid),
    CHECK ((holder_id IS NULL) = (held_since IS NULL)),
    CHECK (overflow = 0 OR holder_id IS NOT NULL),
    CHECK (session_uuid IS NULL OR holder_id IS NOT NULL),
    CHECK (charged_company_id IS NULL OR holder_id IS NOT NULL),
    CHECK (activation_hid IS NULL OR holder_id IS NOT NULL)
);
CREATE INDEX seats_by_product_holder ON seats (tenant_id, product_id, holder_id);
CREATE INDEX seats_by_holder ON seats (tenant_id, holder_id) WHERE holder_id IS NOT NULL;
-- A computer activates at most one seat of a product.
CREATE UNIQUE INDEX seats_one_activation_per_computer
    ON seats (tenant_id, product_id, activation_hid) WHERE activation_hid IS NOT NULL;
-- A session holds at most one seat.
CREATE UNIQUE INDEX seats_one_per_session ON seats (tenant_id, session_uuid) WHERE session_uuid IS NOT NULL;

-- Why a user holds a (user-kind) product: 'via' is the product itself for a direct assignment
-- or grant, or the user plan that brought it along. The user holds a seat of the product
-- exactly while at least one reason exists.
CREATE TABLE grants (
    tenant_id  INTEGER NOT NULL,
    user_id    INTEGER NOT NULL,
    product_id INTEGER NOT NULL,
    via_id     INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, user_id, product_id, via_id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id),
    FOREIGN KEY (tenant_id, product_id) REFERENCES products (tenant_id, id),
    FOREIGN KEY (tenant_id, via_id) REFERENCES products (tenant_id, id)
);

-- A company-pool company's allowance of tenant-wide seats per product.
CREATE TABLE company_quotas (
    tenant_id  INTEGER NOT NULL,
    company_id INTEGER NOT NULL,
    product_id INTEGER NOT NULL,
    quota      INTEGER NOT NULL CHECK (quota >= 0),
    used       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, company_id, product_id),
    FOREIGN KEY (tenant_id, company_id) REFERENCES companies (tenant_id, id),
    FOREIGN KEY (tenant_id, product_id) REFERENCES products (tenant_id, id),
    CHECK (used >= 0 AND used <= quota)
);

CREATE TABLE computers (
    tenant_id  INTEGER NOT NULL REFERENCES tenants (id),
    hid        TEXT    NOT NULL,
    name       TEXT    NOT NULL DEFAULT '',
    os         TEXT    NOT NULL DEFAULT '',
    user_id    INTEGER,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, hid),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id)
);

-- Append-only. (tenant_id, seq) is dense: 1, 2, 3, ... per tenant.
CREATE TABLE audit_events (
    tenant_id    INTEGER NOT NULL REFERENCES tenants (id),
    seq          INTEGER NOT NULL,
    at           INTEGER NOT NULL,
    actor        TEXT    NOT NULL,
    action       TEXT    NOT NULL,
    user_id      INTEGER,
    product_id   INTEGER,
    seat_uuid    TEXT,
    company_id   INTEGER,
    session_uuid TEXT,
    detail       TEXT    NOT NULL,
    request_id   TEXT,
    PRIMARY KEY (tenant_id, seq)
);
CREATE INDEX audit_by_time ON audit_events (tenant_id, at);
CREATE INDEX audit_by_user ON audit_events (tenant_id, user_id) WHERE user_id IS NOT NULL;
CREATE INDEX audit_by_product ON audit_events (tenant_id, product_id) WHERE product_id IS NOT NULL;
