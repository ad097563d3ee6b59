-- Free seats per pool, kept by triggers (issue 12): the pool counts a request reads come from
-- `pool_usage` (total, in use) and this table (free, per company pool), not from counting a
-- product's seats, so they cost the same whatever the pool's size.

-- Unheld, unlapsed seats of a product in one pool: `company_id` is the seat's `pool_company_id`,
-- 0 for the tenant-wide pool. Kept by the triggers below on every insert, delete, change of
-- holder and lapse, whatever statement makes it. A free seat is never overflow (seats' CHECK).
-- Like `pool_usage`, it still counts a seat whose expiry passed since the last command's lapse
-- sweep: readers take those off (a range of `seats_unlapsed_expiring`, empty right after a sweep).
-- The unlapsed seats of a product that carry an expiry: what the counters still include once
-- that expiry passes, until the next sweep, is one range of this index (0014's index on the
-- same seats is by tenant, for the sweep).
CREATE INDEX seats_unlapsed_expiring ON seats (tenant_id, product_id, expires_at)
    WHERE lapsed = 0 AND expires_at IS NOT NULL;

CREATE TABLE pool_free (
    tenant_id  INTEGER NOT NULL REFERENCES tenants (id),
    product_id INTEGER NOT NULL,
    company_id INTEGER NOT NULL,
    free       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, product_id, company_id)
);

INSERT INTO pool_free (tenant_id, product_id, company_id, free)
SELECT tenant_id, product_id, COALESCE(pool_company_id, 0), count(*)
FROM seats WHERE holder_id IS NULL AND lapsed = 0
GROUP BY tenant_id, product_id, COALESCE(pool_company_id, 0);

CREATE TRIGGER seats_free_insert AFTER INSERT ON seats
WHEN NEW.holder_id IS NULL AND NEW.lapsed = 0
BEGIN
    INSERT INTO pool_free (tenant_id, product_id, company_id, free)
    VALUES (NEW.tenant_id, NEW.product_id, COALESCE(NEW.pool_company_id, 0), 1)
    ON CONFLICT (tenant_id, product_id, company_id) DO UPDATE SET free = free + 1;
END;

CREATE TRIGGER seats_free_delete AFTER DELETE ON seats
WHEN OLD.holder_id IS NULL AND OLD.lapsed = 0
BEGIN
    UPDATE pool_free SET free = free - 1
    WHERE tenant_id = OLD.tenant_id AND product_id = OLD.product_id
      AND company_id = COALESCE(OLD.pool_company_id, 0);
END;

-- A seat counts where it was before the update if it was free and unlapsed, and where it is
-- after if it is free and unlapsed; the update moves it between the two.
CREATE TRIGGER seats_free_update AFTER UPDATE OF holder_id, pool_company_id, product_id, lapsed ON seats
WHEN (OLD.holder_id IS NULL AND OLD.lapsed = 0) OR (NEW.holder_id IS NULL AND NEW.lapsed = 0)
BEGIN
    UPDATE pool_free SET free = free - 1
    WHERE OLD.holder_id IS NULL AND OLD.lapsed = 0
      AND tenant_id = OLD.tenant_id AND product_id = OLD.product_id
      AND company_id = COALESCE(OLD.pool_company_id, 0);
    INSERT INTO pool_free (tenant_id, product_id, company_id, free)
    SELECT NEW.tenant_id, NEW.product_id, COALESCE(NEW.pool_company_id, 0), 1
    WHERE NEW.holder_id IS NULL AND NEW.lapsed = 0
    ON CONFLICT (tenant_id, product_id, company_id) DO UPDATE SET free = free + 1;
END;

-- A removed product takes its counters along.
CREATE TRIGGER products_free_delete AFTER DELETE ON products
BEGIN
    DELETE FROM pool_free WHERE tenant_id = OLD.tenant_id AND product_id = OLD.id;
END;
