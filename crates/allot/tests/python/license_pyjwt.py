"""Verifies allot's offline license files as an offline client would, with PyJWT (PyPI) and
nothing but the tenant's JWK Set from GET /v1/keys.

usage: license_pyjwt.py BASE_URL TENANT EXPECT:FILE...
EXPECT is "ok" (must verify: EdDSA, the kid in the set, signature, exp/nbf/iat present and
current) or "bad" (must be rejected). Prints {FILE: claims or the rejection's class} as JSON;
exits non-zero on any surprise.
"""
import json
import sys

import jwt
import requests

base, tenant = sys.argv[1:3]
r = requests.get(f"{base}/v1/keys", params={"tenant": tenant})
assert r.status_code == 200, (r.status_code, r.text)
assert r.headers["content-type"].startswith("application/jwk-set+json"), r.headers
jwks = r.json()
for key in jwks["keys"]:
    assert key["kty"] == "OKP" and key["crv"] == "Ed25519" and key["kid"], key
keyset = jwt.PyJWKSet.from_dict(jwks)

report = {"kids": [k["kid"] for k in jwks["keys"]], "files": {}}
for arg in sys.argv[3:]:
    expect, path = arg.split(":", 1)
    with open(path) as f:
        token = f.read().strip()
    try:
        header = jwt.get_unverified_header(token)
        assert header["alg"] == "EdDSA", header
        key = keyset[header["kid"]]
        claims = jwt.decode(
            token,
            key=key,
            algorithms=["EdDSA"],
            options={"require": ["exp", "iat", "nbf"]},
        )
        outcome = ("ok", {"kid": header["kid"], "claims": claims})
    except (jwt.PyJWTError, KeyError) as e:
        outcome = ("bad", type(e).__name__)
    assert outcome[0] == expect, (path, expect, outcome)
    report["files"][path] = outcome[1]
print(json.dumps(report))
