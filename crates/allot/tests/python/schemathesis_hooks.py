"""Schemathesis hooks for the allot schema gate (tests/it/schemathesis.rs).

An Idempotency-Key names one request: the same key with another request is answered 422 by
design (the document says so), and no schema can say "unique per request". Generated keys are
short and repeat across operations, so each sent key is replaced by a fresh one of the same
documented shape (visible ASCII, 1 to 255 characters).

License files are served as `application/jwt` (RFC 7519): compact JWS text, not JSON, though
schemathesis 4 counts `application/jwt` among its JSON media types. Its reader for them is put
first (ahead of JSON, which would otherwise claim the type); it reads every other response as
before.
"""

import uuid

import schemathesis
import schemathesis.core.deserialization


@schemathesis.hook
def before_call(context, case, kwargs):
    # Every call of every phase (coverage, fuzzing, stateful) passes here.
    if case.headers and "Idempotency-Key" in case.headers:
        case.headers["Idempotency-Key"] = uuid.uuid4().hex


def deserialize_jwt_or_json(ctx, response):
    values = [v for k, v in response.headers.items() if k.lower() == "content-type"]
    content_type = values[0] if values else ""
    if isinstance(content_type, list):
        content_type = content_type[0] if content_type else ""
    if content_type.split(";")[0].strip().lower() == "application/jwt":
        return response.content.decode("ascii")
    return response.json()


# Private in schemathesis (pinned in requirements.txt): the registry is matched in order.
_deserializers = schemathesis.core.deserialization._DESERIALIZERS
_registered = dict(_deserializers)
_deserializers.clear()
_deserializers["application/jwt"] = deserialize_jwt_or_json
_deserializers.update((k, v) for k, v in _registered.items() if k != "application/jwt")
