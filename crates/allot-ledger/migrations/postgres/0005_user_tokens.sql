-- Retiring a user revokes every live credential acting as it, found by this index.
CREATE INDEX api_tokens_live_by_user ON api_tokens (tenant_id, user_id) WHERE revoked_at IS NULL AND user_id IS NOT NULL;

-- From now on retiring revokes a user's credentials; revoke those that retired users of older
-- stores still have, so that a live token always belongs to a user who is not retired.
UPDATE api_tokens SET revoked_at = created_at
 WHERE revoked_at IS NULL
   AND EXISTS (SELECT 1 FROM users u
               WHERE u.tenant_id = api_tokens.tenant_id AND u.id = api_tokens.user_id AND u.retired = 1);
