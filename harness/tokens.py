"""JSON Web Tokens as Pulsar's `bin/pulsar tokens create` makes them, for tests and probes.

HS256 over a secret key (the raw bytes of `tokens create-secret-key`), subject = the role,
optional `exp` (seconds since the epoch). The header is Pulsar's own, `{"alg":"HS256"}`, so a
token made here is byte for byte the kind the tool makes. Test tooling: never shipped.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def new_secret_key() -> bytes:
    """32 random bytes, as `tokens create-secret-key` writes (HS256 wants at least 256 bits)."""
    return os.urandom(32)


def hs256_token(secret: bytes, subject: str, *, expires_in: float | None = None, **claims: object) -> str:
    """A token for role `subject`; `expires_in` seconds from now (negative: already expired)."""
    header = b64url(json.dumps({"alg": "HS256"}, separators=(",", ":")).encode())
    body: dict[str, object] = {"sub": subject, **claims}
    if expires_in is not None:
        body["exp"] = int(time.time() + expires_in)
    payload = b64url(json.dumps(body, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode()
    signature = b64url(hmac.new(secret, signing_input, hashlib.sha256).digest())
    return f"{header}.{payload}.{signature}"
