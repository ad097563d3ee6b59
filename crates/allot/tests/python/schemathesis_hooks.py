"""Schemathesis hooks for the allot schema gate (tests/it/schemathesis.rs).

An Idempotency-Key names one request: the same key with another request is answered 422 by
design (the document says so), and no schema can say "unique per request". Generated keys are
short and repeat across operations, so each sent key is replaced by a fresh one of the same
documented shape (visible ASCII, 1 to 255 characters).

License files are served as `application/jwt` (RFC 7519), a media type schemathesis has no
reader for: the body is the compact JWS text, checked against the documented string schema.
"""

import uuid

import schemathesis


@schemathesis.hook
def before_call(context, case, kwargs):
    # Every call of every phase (coverage, fuzzing, stateful) passes here.
    if case.headers and "Idempotency-Key" in case.headers:
        case.headers["Idempotency-Key"] = uuid.uuid4().hex


@schemathesis.deserializer("application/jwt")
def deserialize_jwt(ctx, response):
    return response.content.decode("ascii")
