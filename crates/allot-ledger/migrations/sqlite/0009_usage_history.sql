-- Usage history: every change of a pool's seat counts is rolled up into minute, hour and day
-- buckets, so a year's curve of a product is one index range, not a walk of the audit trail.

-- Live seat counts of each product, kept by the triggers below on every change of `seats`,
-- whatever statement makes it: no command can change a pool without it showing here. `dirty`
-- marks rows changed by the running command; the ledger writes them into `usage_buckets` (with
-- its own clock) at the end of that command and clears the mark, in the command's transaction.
CREATE TABLE pool_usage (
    tenant_id       INTEGER NOT NULL REFERENCES tenants (id),
    product_id      INTEGER NOT NULL,
    -- Seats bought (overflow excluded) and seats held (overflow included), as pool_status counts
    -- them before expiry.
    total           INTEGER NOT NULL DEFAULT 0,
    in_use          INTEGER NOT NULL DEFAULT 0,
    -- The counts as last written into the buckets, and the ones before them.
    recorded_total  INTEGER NOT NULL DEFAULT 0,
    recorded_in_use INTEGER NOT NULL DEFAULT 0,
    prior_total     INTEGER NOT NULL DEFAULT 0,
    prior_in_use    INTEGER NOT NULL DEFAULT 0,
    dirty           INTEGER NOT NULL DEFAULT 0 CHECK (dirty IN (0, 1)),
    -- When the counts were last recorded: a pool's history never goes back in time, even when
    -- ledgers with clocks a little apart share the store (a later write counts as later).
    recorded_at     INTEGER NOT NULL DEFAULT 0,
    -- Requests refused for want of a seat, ever (a Prometheus counter).
    denied          INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, product_id)
);
CREATE INDEX pool_usage_dirty ON pool_usage (tenant_id) WHERE dirty = 1;

-- One row per product, step (60, 3600 or 86400 seconds) and bucket start (microseconds, UTC,
-- a multiple of the step). `total`/`in_use` are the counts after the bucket's last change at
-- `last_at`; the areas integrate the counts over time (seat-microseconds) from the bucket start
-- to `last_at`, so the mean over the bucket needs no other row.
CREATE TABLE usage_buckets (
    tenant_id   INTEGER NOT NULL REFERENCES tenants (id),
    product_id  INTEGER NOT NULL,
    step        INTEGER NOT NULL CHECK (step IN (60, 3600, 86400)),
    start       INTEGER NOT NULL,
    total       INTEGER NOT NULL,
    in_use      INTEGER NOT NULL,
    in_use_max  INTEGER NOT NULL,
    in_use_area INTEGER NOT NULL,
    total_area  INTEGER NOT NULL,
    last_at     INTEGER NOT NULL,
    denied      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, product_id, step, start)
);

-- Pools as they are now; history starts at their next change.
INSERT INTO pool_usage (tenant_id, product_id, total, in_use, recorded_total, recorded_in_use,
                        prior_total, prior_in_use)
SELECT tenant_id, product_id, sum(1 - overflow), count(holder_id), sum(1 - overflow),
       count(holder_id), sum(1 - overflow), count(holder_id)
FROM seats GROUP BY tenant_id, product_id;

CREATE TRIGGER seats_usage_insert AFTER INSERT ON seats
BEGIN
    INSERT INTO pool_usage (tenant_id, product_id, total, in_use, dirty)
    VALUES (NEW.tenant_id, NEW.product_id, 1 - NEW.overflow, NEW.holder_id IS NOT NULL, 1)
    ON CONFLICT (tenant_id, product_id) DO UPDATE
        SET total = total + excluded.total, in_use = in_use + excluded.in_use, dirty = 1;
END;

CREATE TRIGGER seats_usage_delete AFTER DELETE ON seats
BEGIN
    UPDATE pool_usage SET total = total - (1 - OLD.overflow),
                          in_use = in_use - (OLD.holder_id IS NOT NULL), dirty = 1
    WHERE tenant_id = OLD.tenant_id AND product_id = OLD.product_id;
END;

CREATE TRIGGER seats_usage_hold AFTER UPDATE OF holder_id ON seats
WHEN (OLD.holder_id IS NULL) <> (NEW.holder_id IS NULL)
BEGIN
    UPDATE pool_usage SET in_use = in_use + (CASE WHEN NEW.holder_id IS NULL THEN -1 ELSE 1 END),
                          dirty = 1
    WHERE tenant_id = NEW.tenant_id AND product_id = NEW.product_id;
END;

-- A removed product takes its history along.
CREATE TRIGGER products_usage_delete AFTER DELETE ON products
BEGIN
    DELETE FROM pool_usage WHERE tenant_id = OLD.tenant_id AND product_id = OLD.id;
    DELETE FROM usage_buckets WHERE tenant_id = OLD.tenant_id AND product_id = OLD.id;
END;

-- An optional list price per seat and 30-day month, in ten-thousandths of the currency's unit
-- (integer: no binary floating point for money), and its ISO 4217 code; both or neither.
ALTER TABLE products ADD COLUMN seat_price_e4 INTEGER CHECK (seat_price_e4 IS NULL OR seat_price_e4 >= 0);
ALTER TABLE products ADD COLUMN seat_price_currency TEXT;
