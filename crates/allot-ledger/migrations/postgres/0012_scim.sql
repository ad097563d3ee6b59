-- SCIM (issue 15): what an identity provider sends for a user beyond allot's own fields, and
-- the `scim` token role.

-- The identity provider's own id for the user (SCIM externalId) and the name to show
-- (displayName); NULL when never sent.
ALTER TABLE users ADD COLUMN external_id TEXT;
ALTER TABLE users ADD COLUMN display_name TEXT;
-- When the user's own fields last changed (SCIM meta.lastModified); NULL: never since created.
ALTER TABLE users ADD COLUMN modified_at BIGINT;
CREATE INDEX users_by_external_id ON users (tenant_id, external_id) WHERE external_id IS NOT NULL;

-- API tokens may carry the role `scim` (the SCIM endpoint and nothing else).
ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_role_check;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_role_check
    CHECK (role IN ('operator', 'admin', 'reader', 'user', 'scim'));
