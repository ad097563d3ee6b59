-- Retiring a user revokes every live credential acting as it, found by this index.
CREATE INDEX api_tokens_live_by_user ON api_tokens (tenant_id, user_id) WHERE revoked_at IS NULL AND user_id IS NOT NULL;
