"""Edits one audit record of a SQLite store the way an attacker with the file would: drop the
append-only trigger, change the record, leave everything else as it was. Uses only Python's
own sqlite3 module, so the test does not rely on allot's code to do the tampering."""
import sqlite3
import sys

path, seq = sys.argv[1], int(sys.argv[2])
db = sqlite3.connect(path)
triggers = [name for (name,) in db.execute(
    "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_events'")]
for name in triggers:
    db.execute(f'DROP TRIGGER "{name}"')
changed = db.execute(
    "UPDATE audit_events SET actor = 'mallory' WHERE seq = ? AND tenant_id = "
    "(SELECT id FROM tenants WHERE name = 'default')", (seq,)).rowcount
db.commit()
print(f"dropped {len(triggers)} trigger(s), edited {changed} record(s)")
