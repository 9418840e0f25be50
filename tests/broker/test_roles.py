"""The embedded broker's roles mode (BROKER_TOKEN_SECRET_KEY), the parts the conformance suite
(tests/conformance/test_auth.py) does not reach: how a token is verified, the settings' rules,
grants that survive a restart, the shared token next to roles, and one-time passwords that stand
for no more than whoever asked for them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path

import aiohttp
import pytest
from broker.auth import load_secret_key, verify_hs256
from broker.settings import BrokerSettings
from broker.testing import running_broker
from pydantic import SecretStr, ValidationError

from harness.tokens import b64url, hs256_token, new_secret_key

KEY = new_secret_key()
DATA_KEY = "data:;base64," + base64.b64encode(KEY).decode()
PRODUCER = "/ws/v2/producer/persistent/public/default/t"


def signed(header: dict[str, object], payload: dict[str, object], key: bytes = KEY) -> str:
    head = b64url(json.dumps(header).encode())
    body = b64url(json.dumps(payload).encode())
    signature = b64url(hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest())
    return f"{head}.{body}.{signature}"


def test_a_token_is_its_role_only_when_signed_current_and_named() -> None:
    now = time.time()
    assert verify_hs256(hs256_token(KEY, "role-a"), KEY) == "role-a"
    assert verify_hs256(hs256_token(KEY, "role-a", expires_in=60), KEY) == "role-a"
    refused = {
        "expired": hs256_token(KEY, "r", expires_in=-1),
        "another key": hs256_token(new_secret_key(), "r"),
        "alg none": b64url(b'{"alg":"none"}') + "." + b64url(b'{"sub":"r"}') + ".",
        "HS512 header": signed({"alg": "HS512"}, {"sub": "r"}),
        "not yet valid": signed({"alg": "HS256"}, {"sub": "r", "nbf": now + 60}),
        "exp as text": signed({"alg": "HS256"}, {"sub": "r", "exp": str(int(now + 60))}),
        "exp true": signed({"alg": "HS256"}, {"sub": "r", "exp": True}),
        "no subject": signed({"alg": "HS256"}, {"exp": now + 60}),
        "empty subject": signed({"alg": "HS256"}, {"sub": ""}),
        "subject not text": signed({"alg": "HS256"}, {"sub": 7}),
        "two parts": "a.b",
        "not base64": "@@@.@@@.@@@",
        "payload not an object": signed({"alg": "HS256"}, ["r"]),  # type: ignore[arg-type]
    }
    for case, token in refused.items():
        assert verify_hs256(token, KEY) is None, case


def test_the_key_comes_in_pulsars_forms_and_wants_32_bytes(tmp_path: Path) -> None:
    key_file = tmp_path / "secret.key"
    key_file.write_bytes(KEY)
    assert load_secret_key(f"file://{key_file}") == KEY
    assert load_secret_key(DATA_KEY) == KEY
    for wrong in ("the-key-itself", "file:///nonexistent", "data:;base64,c2hvcnQ=", "data:;base64,@@"):
        with pytest.raises(ValueError):
            load_secret_key(wrong)


def test_roles_need_a_superuser_and_allow_listening_beyond_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in BrokerSettings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    with pytest.raises(ValidationError) as refused:
        BrokerSettings(broker_token_secret_key=SecretStr(DATA_KEY))
    assert "at least one role" in str(refused.value) and DATA_KEY not in str(refused.value)
    settings = BrokerSettings(
        broker_token_secret_key=SecretStr(DATA_KEY),
        broker_superuser_roles=" admin , ops ",
        broker_host="0.0.0.0",
    )
    assert settings.superusers() == frozenset({"admin", "ops"})
    assert settings.describe()["broker_token_secret_key"] == "set"


async def upgrade(session: aiohttp.ClientSession, base: str, path: str, token: str) -> int:
    try:
        ws = await session.ws_connect(
            "ws" + base.removeprefix("http") + path, headers={"Authorization": f"Bearer {token}"}
        )
    except aiohttp.WSServerHandshakeError as refused:
        return refused.status
    await ws.close()
    return 101


async def test_grants_survive_a_restart_and_a_revocation_does_too(tmp_path: Path) -> None:
    settings = {"broker_token_secret_key": SecretStr(DATA_KEY), "broker_superuser_roles": "admin"}
    admin = {"Authorization": f"Bearer {hs256_token(KEY, 'admin')}"}
    grants = "/admin/v2/namespaces/public/default/permissions"
    async with aiohttp.ClientSession() as session:
        async with running_broker(tmp_path, **settings) as base:
            for role, actions in (("keeps", ["produce"]), ("loses", ["produce"])):
                async with session.post(f"{base}{grants}/{role}", json=actions, headers=admin) as r:
                    assert r.status == 204
            async with session.delete(f"{base}{grants}/loses", headers=admin) as r:
                assert r.status == 204
        async with running_broker(tmp_path, **settings) as base:
            async with session.get(base + grants, headers=admin) as r:
                assert await r.json() == {"keeps": ["produce"]}
            assert await upgrade(session, base, PRODUCER, hs256_token(KEY, "keeps")) == 101
            assert await upgrade(session, base, PRODUCER, hs256_token(KEY, "loses")) == 403


async def test_the_shared_token_next_to_roles_is_a_superuser(tmp_path: Path) -> None:
    async with (
        running_broker(
            tmp_path,
            token="shared-s3cret",
            broker_token_secret_key=SecretStr(DATA_KEY),
            broker_superuser_roles="admin",
        ) as base,
        aiohttp.ClientSession() as session,
    ):
        assert await upgrade(session, base, PRODUCER, "shared-s3cret") == 101
        async with session.get(
            base + "/admin/v2/brokers/health", headers={"Authorization": "apikey shared-s3cret"}
        ) as r:
            assert r.status == 200
        assert await upgrade(session, base, PRODUCER, hs256_token(KEY, "nobody")) == 403


async def test_a_one_time_password_stands_for_no_more_than_who_asked_for_it(tmp_path: Path) -> None:
    async with (
        running_broker(
            tmp_path, broker_token_secret_key=SecretStr(DATA_KEY), broker_superuser_roles="admin"
        ) as base,
        aiohttp.ClientSession() as session,
    ):
        nobody = {"Authorization": f"Bearer {hs256_token(KEY, 'nobody')}"}
        async with session.post(base + "/apid/otp", headers=nobody) as r:
            otp = (await r.json())["otp"]
        ws_base = "ws" + base.removeprefix("http")
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(ws_base + PRODUCER, params={"otp": otp})
        assert refused.value.status == 403  # the OTP is nobody's: authenticated, not allowed
