-- Usage history: every change of a pool's seat counts is rolled up into minute, hour and day
-- buckets, so a year's curve of a product is one index range, not a walk of the audit trail.

-- Live seat counts of each product, kept by the trigger below on every change of `seats`,
-- whatever statement makes it: no command can change a pool without it showing here. `dirty`
-- marks rows changed by the running command; the ledger writes them into `usage_buckets` (with
-- its own clock) at the end of that command and clears the mark, in the command's transaction.
CREATE TABLE pool_usage (
    tenant_id       BIGINT NOT NULL REFERENCES tenants (id),
    product_id      BIGINT NOT NULL,
    -- Seats bought (overflow excluded) and seats held (overflow included), as pool_status counts
    -- them before expiry.
    total           BIGINT NOT NULL DEFAULT 0,
    in_use          BIGINT NOT NULL DEFAULT 0,
    -- The counts as last written into the buckets, and the ones before them.
    recorded_total  BIGINT NOT NULL DEFAULT 0,
    recorded_in_use BIGINT NOT NULL DEFAULT 0,
    prior_total     BIGINT NOT NULL DEFAULT 0,
    prior_in_use    BIGINT NOT NULL DEFAULT 0,
    dirty           BIGINT NOT NULL DEFAULT 0 CHECK (dirty IN (0, 1)),
    -- When the counts were last recorded: a pool's history never goes back in time, even when
    -- ledgers with clocks a little apart share the store (a later write counts as later).
    recorded_at     BIGINT NOT NULL DEFAULT 0,
    -- Requests refused for want of a seat, ever (a Prometheus counter).
    denied          BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, product_id)
);
CREATE INDEX pool_usage_dirty ON pool_usage (tenant_id) WHERE dirty = 1;

-- One row per product, step (60, 3600 or 86400 seconds) and bucket start (microseconds, UTC,
-- a multiple of the step). `total`/`in_use` are the counts after the bucket's last change at
-- `last_at`; the areas integrate the counts over time (seat-microseconds) from the bucket start
-- to `last_at`, so the mean over the bucket needs no other row.
CREATE TABLE usage_buckets (
    tenant_id   BIGINT NOT NULL REFERENCES tenants (id),
    product_id  BIGINT NOT NULL,
    step        BIGINT NOT NULL CHECK (step IN (60, 3600, 86400)),
    start       BIGINT NOT NULL,
    total       BIGINT NOT NULL,
    in_use      BIGINT NOT NULL,
    in_use_max  BIGINT NOT NULL,
    in_use_area BIGINT NOT NULL,
    total_area  BIGINT NOT NULL,
    last_at     BIGINT NOT NULL,
    denied      BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, product_id, step, start)
);

-- Pools as they are now; history starts at their next change.
INSERT INTO pool_usage (tenant_id, product_id, total, in_use, recorded_total, recorded_in_use,
                        prior_total, prior_in_use)
SELECT tenant_id, product_id, sum(1 - overflow), count(holder_id), sum(1 - overflow),
       count(holder_id), sum(1 - overflow), count(holder_id)
FROM seats GROUP BY tenant_id, product_id;

CREATE FUNCTION allot_pool_usage() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO pool_usage (tenant_id, product_id, total, in_use, dirty)
        VALUES (NEW.tenant_id, NEW.product_id, 1 - NEW.overflow,
                CASE WHEN NEW.holder_id IS NULL THEN 0 ELSE 1 END, 1)
        ON CONFLICT (tenant_id, product_id) DO UPDATE
            SET total = pool_usage.total + excluded.total,
                in_use = pool_usage.in_use + excluded.in_use, dirty = 1;
    ELSIF TG_OP = 'DELETE' THEN
        UPDATE pool_usage SET total = total - (1 - OLD.overflow),
                              in_use = in_use - CASE WHEN OLD.holder_id IS NULL THEN 0 ELSE 1 END,
                              dirty = 1
        WHERE tenant_id = OLD.tenant_id AND product_id = OLD.product_id;
    ELSE
        UPDATE pool_usage SET in_use = in_use + CASE WHEN NEW.holder_id IS NULL THEN -1 ELSE 1 END,
                              dirty = 1
        WHERE tenant_id = NEW.tenant_id AND product_id = NEW.product_id;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER seats_usage_count AFTER INSERT OR DELETE ON seats
    FOR EACH ROW EXECUTE FUNCTION allot_pool_usage();
CREATE TRIGGER seats_usage_hold AFTER UPDATE OF holder_id ON seats
    FOR EACH ROW WHEN ((OLD.holder_id IS NULL) <> (NEW.holder_id IS NULL))
    EXECUTE FUNCTION allot_pool_usage();

-- A removed product takes its history along.
CREATE FUNCTION allot_product_usage_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM pool_usage WHERE tenant_id = OLD.tenant_id AND product_id = OLD.id;
    DELETE FROM usage_buckets WHERE tenant_id = OLD.tenant_id AND product_id = OLD.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER products_usage_delete AFTER DELETE ON products
    FOR EACH ROW EXECUTE FUNCTION allot_product_usage_delete();

-- An optional list price per seat and 30-day month, in ten-thousandths of the currency's unit
-- (integer: no binary floating point for money), and its ISO 4217 code; both or neither.
ALTER TABLE products ADD COLUMN seat_price_e4 BIGINT CHECK (seat_price_e4 IS NULL OR seat_price_e4 >= 0);
ALTER TABLE products ADD COLUMN seat_price_currency TEXT;
