"""Who may talk to the broker: a shared token, or a one-time password obtained with it.

With `BROKER_AUTH_TOKEN` set, a request carries it as `Authorization: Bearer <t>`,
`Authorization: apikey <t>` (Macrometa; the token is the API key), `?token=<t>`, or
`?otp=<one-time password>`. Without it, any or no credential is accepted, except that an
`?otp=` is always checked: it was issued by us or it is refused, as GDN would.
OTPs are single use and expire after `BROKER_OTP_TTL_SECONDS` (60 s).
"""

from __future__ import annotations

import hmac
import secrets
import time

from aiohttp import web
from pydantic import SecretStr

#: Outstanding OTPs at most; beyond that issuing answers 429 instead of growing memory.
MAX_OTPS = 10_000


class Authenticator:
    def __init__(self, token: SecretStr | None, otp_ttl: float = 60.0) -> None:
        self._token = token.get_secret_value().encode() if token is not None else None
        self._otp_ttl = otp_ttl
        self._otps: dict[str, float] = {}

    def _matches(self, candidate: str) -> bool:
        assert self._token is not None
        return hmac.compare_digest(candidate.encode(), self._token)

    def check(self, request: web.Request) -> bool:
        """True when the request may proceed; consumes an OTP it carries."""
        otp = request.query.get("otp")
        if otp is not None:
            return self.use_otp(otp)
        if self._token is None:
            return True
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() in ("bearer", "apikey") and value and self._matches(value.strip()):
            return True
        token = request.query.get("token")
        return token is not None and self._matches(token)

    def issue_otp(self) -> str | None:
        now = time.monotonic()
        if len(self._otps) >= MAX_OTPS:
            self._otps = {otp: expiry for otp, expiry in self._otps.items() if expiry > now}
            if len(self._otps) >= MAX_OTPS:
                return None
        otp = secrets.token_urlsafe(24)
        self._otps[otp] = now + self._otp_ttl
        return otp

    def use_otp(self, otp: str) -> bool:
        expiry = self._otps.pop(otp, None)
        return expiry is not None and expiry > time.monotonic()
