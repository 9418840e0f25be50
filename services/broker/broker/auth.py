"""Who is talking to the broker: a role from a JWT, the shared token, or a one-time password.

Two modes, which may be combined:
- `BROKER_AUTH_TOKEN` (one shared secret): a request carries it as `Authorization: Bearer <t>`,
  `Authorization: apikey <t>` (Macrometa; the token is the API key), `?token=<t>`, or
  `?otp=<one-time password>` obtained with it. Whoever has it may do anything (a superuser).
- `BROKER_TOKEN_SECRET_KEY` (roles, as Pulsar's `AuthenticationProviderToken`): a JWT signed with
  HS256 and that key, its `sub` claim the role; `exp` and `nbf` are honoured. Pulsar's rules: the
  header must be exactly `Authorization: Bearer <jwt>` (a lower-case `bearer` is refused); a
  WebSocket upgrade without an `Authorization` header may carry `?token=<jwt>` instead (browsers
  cannot set headers). Roles in `BROKER_SUPERUSER_ROLES` may do anything; the others what they
  were granted (broker.permissions).
Without either, every request is anonymous and allowed; an `?otp=` is still checked (it was
issued by us or it is refused, as GDN would). OTPs are single use and expire after
`BROKER_OTP_TTL_SECONDS` (60 s); one issued to a role stands for that role.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from pydantic import SecretStr

#: Outstanding OTPs at most; beyond that issuing answers 429 instead of growing memory.
MAX_OTPS = 10_000
#: The role the shared BROKER_AUTH_TOKEN stands for (never a JWT subject: it has spaces).
SHARED_TOKEN_ROLE = "<BROKER_AUTH_TOKEN>"


@dataclass(frozen=True)
class Principal:
    """Who made a request: `role` None is anonymous (authentication is off)."""

    role: str | None
    superuser: bool

    @property
    def name(self) -> str:
        """For Pulsar-like refusal texts (`clientAppId [...]`)."""
        return self.role or "anonymous"


ANONYMOUS = Principal(None, True)
#: Where the router keeps a request's Principal (None: not authenticated, on a public route).
PRINCIPAL: web.RequestKey[Principal | None] = web.RequestKey("principal")


class TokenKeyError(ValueError):
    """BROKER_TOKEN_SECRET_KEY cannot be read."""


def load_secret_key(value: str) -> bytes:
    """Pulsar's `tokenSecretKey` forms: `file:///path` (raw bytes) or `data:;base64,<key>`."""
    if value.startswith("file://"):
        path = Path(value.removeprefix("file://"))
        try:
            key = path.read_bytes()
        except OSError as error:
            raise TokenKeyError(f"cannot read {path}: {error.strerror}") from None
    elif value.startswith("data:;base64,"):
        try:
            key = base64.b64decode(value.removeprefix("data:;base64,"), validate=True)
        except binascii.Error:
            raise TokenKeyError("the data: value is not base64") from None
    else:
        raise TokenKeyError("must be file:///path/to/secret.key or data:;base64,<key>")
    if len(key) < 32:
        raise TokenKeyError("the key must be at least 32 bytes (HS256; Pulsar's tokens tool makes 32)")
    return key


def _b64url(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def verify_hs256(token: str, key: bytes, now: float | None = None) -> str | None:
    """The role (`sub`) of a valid, current HS256 token signed with `key`; None otherwise."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        header = json.loads(_b64url(parts[0]))
        payload = json.loads(_b64url(parts[1]))
        signature = _b64url(parts[2])
    except (ValueError, binascii.Error):
        return None
    if not isinstance(header, dict) or header.get("alg") != "HS256" or not isinstance(payload, dict):
        return None  # "none" and every other algorithm are refused
    expected = hmac.new(key, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(signature, expected):
        return None
    now = time.time() if now is None else now
    expires, not_before = payload.get("exp"), payload.get("nbf")
    for value in (expires, not_before):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            return None
    if (expires is not None and now >= expires) or (not_before is not None and now < not_before):
        return None
    subject = payload.get("sub")
    return subject if isinstance(subject, str) and subject else None


class Authenticator:
    def __init__(
        self,
        token: SecretStr | None,
        otp_ttl: float = 60.0,
        *,
        secret_key: bytes | None = None,
        superusers: frozenset[str] = frozenset(),
    ) -> None:
        self._token = token.get_secret_value().encode() if token is not None else None
        self._key = secret_key
        self.superusers = superusers
        self._otp_ttl = otp_ttl
        self._otps: dict[str, tuple[float, Principal]] = {}

    @property
    def enabled(self) -> bool:
        return self._token is not None or self._key is not None

    @property
    def roles(self) -> bool:
        """Roles and permissions are checked (BROKER_TOKEN_SECRET_KEY is set)."""
        return self._key is not None

    def _shared(self, candidate: str) -> bool:
        return self._token is not None and hmac.compare_digest(candidate.encode(), self._token)

    def _role(self, role: str) -> Principal:
        return Principal(role, role in self.superusers)

    def authenticate(self, request: web.Request, *, websocket: bool = False) -> Principal | None:
        """Who made the request; None when it must be refused with 401. Consumes an OTP it carries."""
        otp = request.query.get("otp")
        if otp is not None:
            return self.use_otp(otp)
        if not self.enabled:
            return ANONYMOUS
        header = request.headers.get("Authorization")
        scheme, _, value = (header or "").strip().partition(" ")
        value = value.strip()
        if scheme.lower() in ("bearer", "apikey") and value and self._shared(value):
            return Principal(SHARED_TOKEN_ROLE, True)
        query_token = request.query.get("token")
        if header is None and query_token is not None and self._shared(query_token):
            return Principal(SHARED_TOKEN_ROLE, True)
        if self._key is None:
            return None
        if header is not None:
            jwt = value if scheme == "Bearer" else None  # Pulsar: exactly "Bearer "
        else:
            jwt = query_token.removeprefix("Bearer ") if websocket and query_token is not None else None
        role = verify_hs256(jwt, self._key) if jwt else None
        return self._role(role) if role is not None else None

    def issue_otp(self, principal: Principal = ANONYMOUS) -> str | None:
        now = time.monotonic()
        if len(self._otps) >= MAX_OTPS:
            self._otps = {otp: entry for otp, entry in self._otps.items() if entry[0] > now}
            if len(self._otps) >= MAX_OTPS:
                return None
        otp = secrets.token_urlsafe(24)
        self._otps[otp] = (now + self._otp_ttl, principal)
        return otp

    def use_otp(self, otp: str) -> Principal | None:
        entry = self._otps.pop(otp, None)
        if entry is None or entry[0] <= time.monotonic():
            return None
        return entry[1]
