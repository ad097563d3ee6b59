-- Seat lifecycle: when each held seat was last used, and the per-product policies that reclaim
-- seats nobody uses (issue 15).

-- Set when the holder uses the seat: a log-on of the holder, the end of the holder's session (to
-- its last heartbeat), an activation, a license file fetched. Written only when the stored value
-- is older than an hour (see rules::USE_GRANULARITY), so a busy user costs no write per call.
-- NULL means never used since held_since.
ALTER TABLE seats ADD COLUMN last_used_at INTEGER;

-- One policy per product: seats idle for idle_days are released, or only reported.
CREATE TABLE harvest_policies (
    tenant_id  INTEGER NOT NULL,
    product_id INTEGER NOT NULL,
    idle_days  INTEGER NOT NULL CHECK (idle_days >= 1 AND idle_days <= 3650),
    action     TEXT    NOT NULL CHECK (action IN ('release', 'report')),
    PRIMARY KEY (tenant_id, product_id),
    FOREIGN KEY (tenant_id, product_id) REFERENCES products (tenant_id, id)
);

-- Users whose seats the harvest never reclaims (any product).
CREATE TABLE harvest_exempt_users (
    tenant_id INTEGER NOT NULL,
    user_id   INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, user_id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id)
);
