-- Indexes that let every statement on the write path seek instead of walking the tenant's rows
-- (tests/plans.rs checks the plans).

-- Free seats of a product in the order the pick wants them (bought before trial, then lowest
-- number): taking a free seat reads the first matching entry instead of sorting the pool.
DROP INDEX seats_by_product_holder;
CREATE INDEX seats_by_product_holder ON seats (tenant_id, product_id, holder_id, trial, number);

-- A holder's seats by product, in number order: one user's rows, never the tenant's. Not partial,
-- so that `holder_id = $n` with a bound value can use it.
DROP INDEX seats_by_holder;
CREATE INDEX seats_by_holder ON seats (tenant_id, holder_id, product_id, number);

-- Lapsed leases, found without walking every live session of the tenant.
CREATE INDEX sessions_live_by_lease ON sessions (tenant_id, lease_expires_at) WHERE ended_at IS NULL;
