-- SCIM Groups and harvest exemptions by group (issue 15).

-- The identity provider's own id for a group (SCIM externalId); NULL when never sent.
ALTER TABLE user_groups ADD COLUMN external_id TEXT;
-- When the group last changed (its name, externalId or members; SCIM meta.lastModified); NULL:
-- never since created.
ALTER TABLE user_groups ADD COLUMN modified_at INTEGER;
CREATE INDEX user_groups_by_external_id ON user_groups (tenant_id, external_id) WHERE external_id IS NOT NULL;

-- Groups whose members' seats the harvest never reclaims (any product), beside exempt users.
CREATE TABLE harvest_exempt_groups (
    tenant_id INTEGER NOT NULL,
    group_id  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, group_id),
    FOREIGN KEY (tenant_id, group_id) REFERENCES user_groups (tenant_id, id)
);
