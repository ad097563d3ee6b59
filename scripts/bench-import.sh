#!/bin/sh
# 100k users imported on SQLite: release build, the server as its own process.
set -e
# Usage: cargo build --release && sh scripts/bench-import.sh
B=${ALLOT_BIN:-target/release/allot}
D=${BENCH_DIR:-/tmp/allot-import-bench}
mkdir -p $D
rm -f $D/allot.db*
python3 - "$D/users.csv" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    f.write("login,first_name,last_name,email,company,licenses\n")
    for i in range(100000):
        f.write(f"user{i},First{i},Last{i},user{i}@example.com,company{i % 100},SuperOffice/user\n")
PY
ALLOT_ADMIN_PASSWORD=bench-admin-pass $B serve --db sqlite://$D/allot.db --listen 127.0.0.1:18089 --metrics-listen 127.0.0.1:18099 --rate-limit 0 > $D/serve.log 2>&1 &
PID=$!
sleep 2
export ALLOT_URL=http://127.0.0.1:18089 ALLOT_CONFIG_DIR=$D/config
echo bench-admin-pass | $B login --login admin --password-stdin
$B product add --owner SuperOffice --name user --seats 100000 > /dev/null
/usr/bin/time -f "first run: %e s wall, client %U s user" $B import $D/users.csv
/usr/bin/time -f "second run: %e s wall, client %U s user" $B import $D/users.csv
echo "server CPU (utime+stime ticks): $(awk '{print $14+$15}' /proc/$PID/stat)"
kill $PID
