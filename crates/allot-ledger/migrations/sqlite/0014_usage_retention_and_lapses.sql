-- Pruning of the usage history's minute buckets past their retention finds them by time,
-- across every tenant and product, without walking the hour and day buckets.
CREATE INDEX usage_buckets_minutes ON usage_buckets (start) WHERE step = 60;

-- A seat that lapsed by the passage of time (its own expiry, or its product's): it no longer
-- counts in `pool_usage`. The ledger sets it at the start of every command, for each moment an
-- expiry passed since, in time order, and writes the pool's change into the buckets at that
-- moment (so the history shows the lapse when it happened, not when someone next touched the
-- pool); the server's session reaper runs a command every few seconds in every tenant, so a
-- pool nobody touches is swept too. Seats inserted already expired start lapsed, and an edit
-- of a product's expiry re-decides its seats at the edit.
ALTER TABLE seats ADD COLUMN lapsed INTEGER NOT NULL DEFAULT 0 CHECK (lapsed IN (0, 1));
CREATE INDEX seats_unlapsed_expiry ON seats (tenant_id, expires_at)
    WHERE lapsed = 0 AND expires_at IS NOT NULL;
-- A product whose own expiry was swept (its seats lapsed with it), so the sweep finds the
-- products still to do by an index, however many expired long ago.
ALTER TABLE products ADD COLUMN lapsed INTEGER NOT NULL DEFAULT 0 CHECK (lapsed IN (0, 1));
CREATE INDEX products_unlapsed_expiry ON products (tenant_id, expires_at)
    WHERE lapsed = 0 AND expires_at IS NOT NULL;

-- The counting triggers of 0009, now leaving lapsed seats out.
DROP TRIGGER seats_usage_insert;
DROP TRIGGER seats_usage_delete;
DROP TRIGGER seats_usage_hold;

CREATE TRIGGER seats_usage_insert AFTER INSERT ON seats
BEGIN
    INSERT INTO pool_usage (tenant_id, product_id, total, in_use, dirty)
    VALUES (NEW.tenant_id, NEW.product_id, (1 - NEW.overflow) * (1 - NEW.lapsed),
            (NEW.holder_id IS NOT NULL) * (1 - NEW.lapsed), 1)
    ON CONFLICT (tenant_id, product_id) DO UPDATE
        SET total = total + excluded.total, in_use = in_use + excluded.in_use, dirty = 1;
END;

CREATE TRIGGER seats_usage_delete AFTER DELETE ON seats
BEGIN
    UPDATE pool_usage SET total = total - (1 - OLD.overflow) * (1 - OLD.lapsed),
                          in_use = in_use - (OLD.holder_id IS NOT NULL) * (1 - OLD.lapsed),
                          dirty = 1
    WHERE tenant_id = OLD.tenant_id AND product_id = OLD.product_id;
END;

CREATE TRIGGER seats_usage_hold AFTER UPDATE OF holder_id, lapsed ON seats
WHEN (OLD.holder_id IS NULL) <> (NEW.holder_id IS NULL) OR OLD.lapsed <> NEW.lapsed
BEGIN
    UPDATE pool_usage
    SET total = total + (1 - NEW.overflow) * (1 - NEW.lapsed) - (1 - OLD.overflow) * (1 - OLD.lapsed),
        in_use = in_use + (NEW.holder_id IS NOT NULL) * (1 - NEW.lapsed)
                        - (OLD.holder_id IS NOT NULL) * (1 - OLD.lapsed),
        dirty = 1
    WHERE tenant_id = NEW.tenant_id AND product_id = NEW.product_id;
END;
