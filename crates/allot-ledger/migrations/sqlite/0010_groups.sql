-- Groups of users, licenses given to a group, and the state of each member's assignment
-- (issue 15); disabled users and the tenant setting that says whether disabling frees seats.

ALTER TABLE tenants ADD COLUMN last_group_id INTEGER NOT NULL DEFAULT 0;
-- The waiting list's order: every assignment that starts waiting takes the next number.
ALTER TABLE tenants ADD COLUMN last_queue_number INTEGER NOT NULL DEFAULT 0;
-- 1: disabling a user keeps its seats; 0 (default): they are released.
ALTER TABLE tenants ADD COLUMN disabled_keep_seats INTEGER NOT NULL DEFAULT 0 CHECK (disabled_keep_seats IN (0, 1));
ALTER TABLE users ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1));

CREATE TABLE user_groups (
    tenant_id  INTEGER NOT NULL REFERENCES tenants (id),
    id         INTEGER NOT NULL,
    uuid       TEXT    NOT NULL UNIQUE,
    name       TEXT    NOT NULL,
    name_key   TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, name_key)
);

CREATE TABLE group_members (
    tenant_id INTEGER NOT NULL,
    group_id  INTEGER NOT NULL,
    user_id   INTEGER NOT NULL,
    added_at  INTEGER NOT NULL,
    -- Joining order (from the tenant's queue counter): a license given later queues members so.
    position  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, group_id, user_id),
    FOREIGN KEY (tenant_id, group_id) REFERENCES user_groups (tenant_id, id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id)
);
CREATE INDEX group_members_by_user ON group_members (tenant_id, user_id);

CREATE TABLE group_licenses (
    tenant_id  INTEGER NOT NULL,
    group_id   INTEGER NOT NULL,
    product_id INTEGER NOT NULL,
    added_at   INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, group_id, product_id),
    FOREIGN KEY (tenant_id, group_id) REFERENCES user_groups (tenant_id, id),
    FOREIGN KEY (tenant_id, product_id) REFERENCES products (tenant_id, id)
);
CREATE INDEX group_licenses_by_product ON group_licenses (tenant_id, product_id);

-- One row per member and group license: 'active' (the member holds a seat of the product, and
-- this group is one reason why), 'waiting' (first come, first served by queue_number; reason
-- no_free_seat or quota_exhausted) or 'error' (reason prerequisite_missing, user_disabled, ...).
CREATE TABLE group_assignments (
    tenant_id    INTEGER NOT NULL,
    group_id     INTEGER NOT NULL,
    user_id      INTEGER NOT NULL,
    product_id   INTEGER NOT NULL,
    state        TEXT    NOT NULL CHECK (state IN ('active', 'waiting', 'error')),
    reason       TEXT,
    queue_number INTEGER NOT NULL,
    since        INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, group_id, user_id, product_id),
    FOREIGN KEY (tenant_id, group_id, user_id) REFERENCES group_members (tenant_id, group_id, user_id),
    FOREIGN KEY (tenant_id, group_id, product_id) REFERENCES group_licenses (tenant_id, group_id, product_id),
    CHECK ((state = 'active') = (reason IS NULL))
);
CREATE INDEX group_assignments_queue ON group_assignments (tenant_id, product_id, queue_number) WHERE state <> 'active';
CREATE INDEX group_assignments_by_user ON group_assignments (tenant_id, user_id, product_id);
-- A product newly held may let the group products that need it follow (found by this index).
CREATE INDEX products_by_prerequisite ON products (tenant_id, prerequisite_id) WHERE prerequisite_id IS NOT NULL;
