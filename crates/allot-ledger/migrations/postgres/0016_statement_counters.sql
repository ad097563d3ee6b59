-- The pool counters (`pool_usage`, `pool_free`) kept once per statement for inserted and
-- deleted seats, instead of once per row (issue 12). PostgreSQL writes a new version of a row
-- on every update, so a statement that added 100,000 seats updated its product's counter row
-- 200,000 times in one transaction, each update finding the newest version at the end of a
-- growing chain: creating such a product took over 30 s. A statement-level trigger sees all the
-- statement's rows at once (a transition table) and moves each counter once.
--
-- Changes of holder, pool and lapse keep their row-level triggers (0014, 0015): a statement-level
-- UPDATE trigger cannot name the columns it watches, so it would run for every update of a seat
-- (last use, activation, session) on the hot path.
--
-- PostgreSQL only: SQLite updates a row in place, and its row triggers cost no more than this.

DROP TRIGGER seats_usage_count ON seats;
DROP TRIGGER seats_usage_free ON seats;

CREATE FUNCTION allot_seats_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO pool_usage (tenant_id, product_id, total, in_use, dirty)
    SELECT tenant_id, product_id, sum((1 - overflow) * (1 - lapsed)),
           sum(CASE WHEN holder_id IS NULL THEN 0 ELSE 1 END * (1 - lapsed)), 1
    FROM inserted_seats GROUP BY tenant_id, product_id
    ORDER BY tenant_id, product_id
    ON CONFLICT (tenant_id, product_id) DO UPDATE
        SET total = pool_usage.total + excluded.total,
            in_use = pool_usage.in_use + excluded.in_use, dirty = 1;
    INSERT INTO pool_free (tenant_id, product_id, company_id, free)
    SELECT tenant_id, product_id, COALESCE(pool_company_id, 0), count(*)
    FROM inserted_seats WHERE holder_id IS NULL AND lapsed = 0
    GROUP BY tenant_id, product_id, COALESCE(pool_company_id, 0)
    ORDER BY 1, 2, 3
    ON CONFLICT (tenant_id, product_id, company_id) DO UPDATE
        SET free = pool_free.free + excluded.free;
    RETURN NULL;
END
$$;

CREATE FUNCTION allot_seats_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE pool_usage u
    SET total = u.total - d.total, in_use = u.in_use - d.in_use, dirty = 1
    FROM (SELECT tenant_id, product_id, sum((1 - overflow) * (1 - lapsed)) AS total,
                 sum(CASE WHEN holder_id IS NULL THEN 0 ELSE 1 END * (1 - lapsed)) AS in_use
          FROM deleted_seats GROUP BY tenant_id, product_id) d
    WHERE u.tenant_id = d.tenant_id AND u.product_id = d.product_id;
    UPDATE pool_free f
    SET free = f.free - d.free
    FROM (SELECT tenant_id, product_id, COALESCE(pool_company_id, 0) AS company_id,
                 count(*) AS free
          FROM deleted_seats WHERE holder_id IS NULL AND lapsed = 0
          GROUP BY tenant_id, product_id, COALESCE(pool_company_id, 0)) d
    WHERE f.tenant_id = d.tenant_id AND f.product_id = d.product_id
      AND f.company_id = d.company_id;
    RETURN NULL;
END
$$;

CREATE TRIGGER seats_counted_insert AFTER INSERT ON seats
    REFERENCING NEW TABLE AS inserted_seats
    FOR EACH STATEMENT EXECUTE FUNCTION allot_seats_inserted();
CREATE TRIGGER seats_counted_delete AFTER DELETE ON seats
    REFERENCING OLD TABLE AS deleted_seats
    FOR EACH STATEMENT EXECUTE FUNCTION allot_seats_deleted();
