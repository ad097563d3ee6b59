"""Runs scim2-tester (every check it has) against allot's /scim/v2 with a token of the role scim.

Usage: scim_tester.py BASE_URL TOKEN. Prints one line per check and a closing count; exits 1
if any check did not succeed (a skipped check counts as not succeeded unless listed below).
"""

import sys

import httpx2
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server

base, token = sys.argv[1], sys.argv[2]
client = SyncSCIMClient(
    httpx2.Client(base_url=base.rstrip("/") + "/scim/v2", headers={"Authorization": f"Bearer {token}"})
)
results = check_server(client, raise_exceptions=False)
bad = 0
for r in results:
    line = f"{r.status.name:8} {r.resource_type or '-':6} {r.title}: {r.reason or ''}".replace("\n", " ")
    print(line[:400])
    if r.status not in (Status.SUCCESS,):
        bad += 1
ok = len(results) - bad
print(f"scim2-tester: {ok} passed, {bad} failed")
sys.exit(1 if bad else 0)
