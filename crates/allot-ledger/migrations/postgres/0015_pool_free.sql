-- Free seats per pool, kept by a trigger (issue 12): the pool counts a request reads come from
-- `pool_usage` (total, in use) and this table (free, per company pool), not from counting a
-- product's seats, so they cost the same whatever the pool's size.

-- Unheld, unlapsed seats of a product in one pool: `company_id` is the seat's `pool_company_id`,
-- 0 for the tenant-wide pool. Kept by the trigger below on every insert, delete, change of
-- holder and lapse, whatever statement makes it. A free seat is never overflow (seats' CHECK).
-- Like `pool_usage`, it still counts a seat whose expiry passed since the last command's lapse
-- sweep: readers take those off (a range of `seats_unlapsed_expiring`, empty right after a sweep).
-- The unlapsed seats of a product that carry an expiry: what the counters still include once
-- that expiry passes, until the next sweep, is one range of this index (0014's index on the
-- same seats is by tenant, for the sweep).
CREATE INDEX seats_unlapsed_expiring ON seats (tenant_id, product_id, expires_at)
    WHERE lapsed = 0 AND expires_at IS NOT NULL;

CREATE TABLE pool_free (
    tenant_id  BIGINT NOT NULL REFERENCES tenants (id),
    product_id BIGINT NOT NULL,
    company_id BIGINT NOT NULL,
    free       BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, product_id, company_id)
);

INSERT INTO pool_free (tenant_id, product_id, company_id, free)
SELECT tenant_id, product_id, COALESCE(pool_company_id, 0), count(*)
FROM seats WHERE holder_id IS NULL AND lapsed = 0
GROUP BY tenant_id, product_id, COALESCE(pool_company_id, 0);

-- A seat counts where it was before the change if it was free and unlapsed, and where it is
-- after if it is free and unlapsed; the change moves it between the two.
CREATE FUNCTION allot_pool_free() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') AND OLD.holder_id IS NULL AND OLD.lapsed = 0 THEN
        UPDATE pool_free SET free = free - 1
        WHERE tenant_id = OLD.tenant_id AND product_id = OLD.product_id
          AND company_id = COALESCE(OLD.pool_company_id, 0);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.holder_id IS NULL AND NEW.lapsed = 0 THEN
        INSERT INTO pool_free (tenant_id, product_id, company_id, free)
        VALUES (NEW.tenant_id, NEW.product_id, COALESCE(NEW.pool_company_id, 0), 1)
        ON CONFLICT (tenant_id, product_id, company_id) DO UPDATE SET free = pool_free.free + 1;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER seats_usage_free AFTER INSERT OR DELETE ON seats
    FOR EACH ROW EXECUTE FUNCTION allot_pool_free();
CREATE TRIGGER seats_usage_free_update
    AFTER UPDATE OF holder_id, pool_company_id, product_id, lapsed ON seats
    FOR EACH ROW WHEN ((OLD.holder_id IS NULL AND OLD.lapsed = 0)
                       OR (NEW.holder_id IS NULL AND NEW.lapsed = 0))
    EXECUTE FUNCTION allot_pool_free();

-- A removed product takes its counters along.
CREATE FUNCTION allot_product_free_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM pool_free WHERE tenant_id = OLD.tenant_id AND product_id = OLD.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER products_free_delete AFTER DELETE ON products
    FOR EACH ROW EXECUTE FUNCTION allot_product_free_delete();
