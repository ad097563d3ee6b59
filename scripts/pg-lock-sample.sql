-- Run connected to allot_bench during a bench: every 50 ms, 200 times, how many of the
-- database's backends are active, how many wait on a lock, and how many queue for a row of
-- `tenants` (the audit counter) or of `pool_usage` (a pool's counters).
DROP TABLE IF EXISTS perf_samples;
CREATE TABLE perf_samples (i int, active int, lock_waiting int, tenants_queue int, pool_queue int);
DO $$
DECLARE db oid := (SELECT oid FROM pg_database WHERE datname = current_database());
BEGIN
  FOR i IN 1..200 LOOP
    PERFORM pg_stat_clear_snapshot();
    INSERT INTO perf_samples SELECT i,
      (SELECT count(*) FROM pg_stat_activity WHERE datid = db AND state = 'active' AND pid <> pg_backend_pid()),
      (SELECT count(*) FROM pg_stat_activity WHERE datid = db AND wait_event_type = 'Lock'),
      (SELECT count(*) FROM pg_locks WHERE database = db AND locktype = 'tuple' AND relation = 'tenants'::regclass),
      (SELECT count(*) FROM pg_locks WHERE database = db AND locktype = 'tuple' AND relation = 'pool_usage'::regclass);
    PERFORM pg_sleep(0.05);
  END LOOP;
END $$;
SELECT count(*) AS samples, round(avg(active), 2) AS active, round(avg(lock_waiting), 2) AS waiting_on_locks,
       round(avg(tenants_queue), 2) AS tenants_row_queue, round(avg(pool_queue), 2) AS pool_row_queue FROM perf_samples;
DROP TABLE perf_samples;
