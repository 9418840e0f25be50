"""Ask a secured broker who may do what: the status of every handshake and admin call per role.

Used to write "Authentication and authorization" in scripts/pulsar/FINDINGS.md and to compare the
embedded broker (BROKER_AUTH_SECRET_KEY) with a real Pulsar (scripts/pulsar-standalone with
PULSAR_AUTH=token), which the conformance suite then asserts on both:

    .venv/bin/python scripts/pulsar/probe_auth.py http://127.0.0.1:PORT SECRET_KEY_FILE [SUPERUSER]

SECRET_KEY_FILE holds the HS256 key's raw bytes (Pulsar's `tokens create-secret-key`). Roles get
fresh names each run (`prod-…` may produce, `cons-…` may consume, `nobody-…` has no grant), granted
on public/default through the admin API as the superuser. One JSON object per line.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from harness.tokens import hs256_token, new_secret_key


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class AuthProbe:
    def __init__(self, http: str, secret: bytes, superuser: str, session: aiohttp.ClientSession) -> None:
        self.http = http.rstrip("/")
        self.ws = "ws" + self.http.removeprefix("http")
        self.secret = secret
        self.session = session
        self.admin = self.token(superuser)
        self.roles = {name: uniq(name) for name in ("prod", "cons", "both", "nobody")}

    def token(self, role: str, **kw: Any) -> str:
        return hs256_token(self.secret, role, **kw)

    def out(self, case: str, value: Any) -> None:
        print(json.dumps({"case": case, "result": value}), flush=True)

    async def call(
        self,
        method: str,
        path: str,
        token: str | None,
        body: Any = None,
        raw: str | None = None,
        limit: int | None = 300,
    ) -> tuple[int, str]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        kwargs: dict[str, Any] = {"headers": headers}
        if body is not None:
            kwargs["json"] = body
        elif raw is not None:
            kwargs["data"] = raw
            headers["Content-Type"] = "application/json"
        async with self.session.request(method, self.http + path, **kwargs) as r:
            return r.status, (await r.text())[:limit]

    async def handshake(
        self,
        path: str,
        headers: dict[str, str],
        *,
        session: aiohttp.ClientSession | None = None,
        **params: str,
    ) -> int:
        """One upgrade on a connection of its own (see `keep_alive` for why)."""
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as own:
            try:
                ws = await (session or own).ws_connect(self.ws + path, headers=headers, params=params or None)
            except aiohttp.WSServerHandshakeError as e:
                return e.status
            await ws.close()
            return 101

    async def keep_alive(self) -> None:
        """Pulsar's Jetty refuses every later request on a keep-alive connection after one refused
        for a lower-case `bearer` scheme; aiohttp reuses a connection after a refused upgrade."""
        path = f"/ws/v2/producer/persistent/public/default/{uniq('ka')}"
        good = {"Authorization": f"Bearer {self.token(self.roles['both'])}"}
        for first in ("Bearer not-a-jwt", "Basic x", f"bearer {self.token(self.roles['both'])}"):
            async with aiohttp.ClientSession() as shared:
                statuses = [await self.handshake(path, {"Authorization": first}, session=shared)]
                statuses += [await self.handshake(path, good, session=shared) for _ in range(2)]
            self.out(
                f"one keep-alive connection: {first.split()[0]} ..., then a valid Bearer twice", statuses
            )

    async def grants(self) -> None:
        ns = "/admin/v2/namespaces/public/default/permissions"
        for name, actions in (("prod", ["produce"]), ("cons", ["consume"]), ("both", ["produce", "consume"])):
            self.out(
                f"grant {actions} as superuser",
                await self.call("POST", f"{ns}/{self.roles[name]}", self.admin, actions),
            )
        self.out(
            "grant as a role without admin rights",
            await self.call("POST", f"{ns}/x", self.token(self.roles["both"]), ["produce"]),
        )
        self.out("grant without a token", await self.call("POST", f"{ns}/x", None, ["produce"]))
        self.out(
            "grant ['write'] (unknown action)", await self.call("POST", f"{ns}/x", self.admin, ["write"])
        )
        self.out("grant [] (no action)", await self.call("POST", f"{ns}/{uniq('empty')}", self.admin, []))
        self.out(
            "grant on a missing namespace",
            await self.call(
                "POST", "/admin/v2/namespaces/public/nosuch/permissions/x", self.admin, ["produce"]
            ),
        )
        self.out("grant without Content-Type", await self.call("POST", f"{ns}/x", self.admin, None, None))
        status, text = await self.call("GET", ns, self.admin, limit=None)
        mine = (
            {k: v for k, v in json.loads(text).items() if k in self.roles.values()} if status == 200 else text
        )
        self.out("list permissions as superuser (our roles)", [status, mine])
        self.out("list permissions as a role", await self.call("GET", ns, self.token(self.roles["both"])))

    async def handshakes(self) -> None:
        topic, sub = uniq("auth"), "s"
        paths = {
            "producer": f"/ws/v2/producer/persistent/public/default/{topic}",
            "consumer": f"/ws/v2/consumer/persistent/public/default/{topic}/{sub}",
            "reader": f"/ws/v2/reader/persistent/public/default/{topic}",
            "v3 consumer": f"/ws/v3/consumer/{sub}",
        }
        other_key = new_secret_key()
        credentials: dict[str, dict[str, str]] = {
            "no token": {},
            "not a JWT": {"Authorization": "Bearer not-a-jwt"},
            "signed with another key": {
                "Authorization": f"Bearer {hs256_token(other_key, self.roles['both'])}"
            },
            "expired 60 s ago": {"Authorization": f"Bearer {self.token(self.roles['both'], expires_in=-60)}"},
            "no grant": {"Authorization": f"Bearer {self.token(self.roles['nobody'])}"},
            "produce only": {"Authorization": f"Bearer {self.token(self.roles['prod'])}"},
            "consume only": {"Authorization": f"Bearer {self.token(self.roles['cons'])}"},
            "produce+consume": {"Authorization": f"Bearer {self.token(self.roles['both'])}"},
            "superuser": {"Authorization": f"Bearer {self.admin}"},
            "lower-case 'bearer'": {"Authorization": f"bearer {self.token(self.roles['both'])}"},
            "Basic scheme": {"Authorization": f"Basic {self.token(self.roles['both'])}"},
            "token without exp": {"Authorization": f"Bearer {self.token(self.roles['both'])}"},
            "token expiring in 1 h": {
                "Authorization": f"Bearer {self.token(self.roles['both'], expires_in=3600)}"
            },
        }
        for kind, path in paths.items():
            params = {"topics": f"persistent://public/default/{topic}"} if kind == "v3 consumer" else {}
            row = {
                name: await self.handshake(path, headers, **params) for name, headers in credentials.items()
            }
            row["?token= query, produce+consume"] = await self.handshake(
                path, {}, token=self.token(self.roles["both"]), **params
            )
            self.out(f"handshake {kind}", row)

    async def admin_calls(self) -> None:
        topic = uniq("adm")
        t = f"/admin/v2/persistent/public/default/{topic}"
        who = {
            "none": None,
            "nobody": self.token(self.roles["nobody"]),
            "prod": self.token(self.roles["prod"]),
            "cons": self.token(self.roles["cons"]),
            "superuser": self.admin,
        }
        for name, token in who.items():
            self.out(f"PUT topic as {name}", await self.call("PUT", f"{t}-{name}", token, raw="{}"))
        await self.call("PUT", t, self.admin, raw="{}")
        for path in (
            t + "/stats",
            t,
            "/admin/v2/persistent/public/default",
            t + "/subscriptions",
            "/admin/v2/brokers/health",
            "/admin/v2/namespaces/public/default",
            "/admin/v2/tenants",
            "/admin/v2/namespaces/public",
            "/metrics",
        ):
            row = {}
            for name, token in who.items():
                status, text = await self.call("GET", path, token)
                row[name] = status if status == 200 else [status, text[:160]]
            self.out(f"GET {path.replace(topic, '{topic}')}", row)
        for name, token in who.items():
            self.out(f"POST terminate as {name}", await self.call("POST", f"{t}-{name}-x/terminate", token))
            self.out(f"DELETE topic as {name}", await self.call("DELETE", f"{t}-gone-{name}", token))

    async def topic_grants(self) -> None:
        """What a consumer's own dead-letter producer needs: produce on `{topic}-{sub}-DLQ`."""
        role = uniq("dlq")
        token = self.token(role)
        ns = "/admin/v2/namespaces/public/default/permissions"
        await self.call("POST", f"{ns}/{role}", self.admin, ["consume"])
        dlq = f"{uniq('stream')}-sub-DLQ"
        producer = f"/ws/v2/producer/persistent/public/default/{dlq}"
        head = {"Authorization": f"Bearer {token}"}
        self.out("DLQ: produce with consume on the namespace only", await self.handshake(producer, head))
        tp = f"/admin/v2/persistent/public/default/{dlq}/permissions/{role}"
        self.out(
            "DLQ: topic-level grant, topic does not exist yet",
            await self.call("POST", tp, self.admin, ["produce"]),
        )
        self.out("DLQ: produce after that", await self.handshake(producer, head))
        dlq2 = f"{uniq('stream')}-sub-DLQ"
        await self.call("PUT", f"/admin/v2/persistent/public/default/{dlq2}", self.admin, raw="{}")
        tp2 = f"/admin/v2/persistent/public/default/{dlq2}/permissions/{role}"
        self.out(
            "DLQ: topic-level grant on a created topic", await self.call("POST", tp2, self.admin, ["produce"])
        )
        self.out(
            "DLQ: produce after that",
            await self.handshake(f"/ws/v2/producer/persistent/public/default/{dlq2}", head),
        )
        self.out(
            "DLQ: consume there (produce granted only)",
            await self.handshake(f"/ws/v2/consumer/persistent/public/default/{dlq2}/s", head),
        )
        self.out(
            "DLQ: list topic permissions",
            await self.call("GET", f"/admin/v2/persistent/public/default/{dlq2}/permissions", self.admin),
        )
        self.out("DLQ: revoke topic-level grant", await self.call("DELETE", tp2, self.admin))
        self.out(
            "DLQ: produce after the revoke",
            await self.handshake(f"/ws/v2/producer/persistent/public/default/{dlq2}", head),
        )

    async def open_sessions(self, seconds: float) -> None:
        """An expired token and a revoked grant: what happens to sessions opened before."""
        role = uniq("short")
        ns = "/admin/v2/namespaces/public/default/permissions"
        await self.call("POST", f"{ns}/{role}", self.admin, ["produce", "consume"])
        topic = uniq("expiry")
        head = {"Authorization": f"Bearer {self.token(role, expires_in=5)}"}
        cons = await self.session.ws_connect(
            f"{self.ws}/ws/v2/consumer/persistent/public/default/{topic}/s", headers=head
        )
        prod = await self.session.ws_connect(
            f"{self.ws}/ws/v2/producer/persistent/public/default/{topic}", headers=head
        )
        started, sent, ok, received = time.monotonic(), 0, 0, 0
        revoked = False
        while time.monotonic() - started < seconds:
            if not revoked and time.monotonic() - started > seconds / 2:
                await self.call("DELETE", f"{ns}/{role}", self.admin)
                revoked = True
            await prod.send_json({"payload": "aGk=", "context": str(sent)})
            sent += 1
            answer = await prod.receive(timeout=5)
            if answer.type == aiohttp.WSMsgType.TEXT and json.loads(answer.data).get("result") == "ok":
                ok += 1
            msg = await cons.receive(timeout=5)
            if msg.type == aiohttp.WSMsgType.TEXT:
                received += 1
                await cons.send_json({"messageId": json.loads(msg.data)["messageId"]})
            await asyncio.sleep(1)
        self.out(
            f"sessions opened with a token valid 5 s, used for {seconds:.0f} s, grant revoked half way",
            {
                "sent": sent,
                "ok": ok,
                "received": received,
                "producer_closed": prod.closed,
                "consumer_closed": cons.closed,
            },
        )
        self.out(
            "a new handshake with that token now",
            await self.handshake(f"/ws/v2/producer/persistent/public/default/{topic}", head),
        )
        await prod.close()
        await cons.close()


async def main() -> None:
    http, key_file = sys.argv[1], sys.argv[2]
    superuser = sys.argv[3] if len(sys.argv) > 3 else "admin"
    secret = Path(key_file).read_bytes()  # noqa: ASYNC240 (once, before anything runs)
    async with aiohttp.ClientSession() as session:
        probe = AuthProbe(http, secret, superuser, session)
        await probe.grants()
        await probe.handshakes()
        await probe.keep_alive()
        await probe.admin_calls()
        await probe.topic_grants()
        await probe.open_sessions(float(sys.argv[4]) if len(sys.argv) > 4 else 20.0)


if __name__ == "__main__":
    asyncio.run(main())
