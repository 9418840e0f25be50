"""Tenants and namespaces: Pulsar creates topics on first use but never tenants or namespaces.
A standalone starts with `public/default`; the admin API creates others."""

from __future__ import annotations

import aiohttp
import pytest

from tests.conformance.conftest import Target, unique

pytestmark = pytest.mark.ws_only(
    "WebSocket paths and admin REST: NamespaceNotFound through the library is in test_refusals.py"
)


async def status(target: Target, path: str) -> int:
    try:
        ws = await target.session.ws_connect(target.ws + path)
    except aiohttp.WSServerHandshakeError as error:
        return error.status
    await ws.close()
    return 101


@pytest.mark.parametrize("namespace", ["nosuchtenant/default", "public/nosuchns"])
async def test_missing_tenant_or_namespace_is_refused(target: Target, namespace: str) -> None:
    topic = unique("ns")
    assert await status(target, f"/ws/v2/producer/persistent/{namespace}/{topic}") == 404
    assert await status(target, f"/ws/v2/consumer/persistent/{namespace}/{topic}/s") == 404
    assert await status(target, f"/ws/v2/reader/persistent/{namespace}/{topic}") == 500
    async with target.session.put(
        f"{target.http}/admin/v2/persistent/{namespace}/{topic}", json={}
    ) as response:
        assert response.status == 404
        assert (await response.json())["reason"] == "Namespace not found"
    async with target.session.get(f"{target.http}/admin/v2/persistent/{namespace}") as response:
        assert response.status == 404


async def test_tenants_and_namespaces_made_with_the_admin_api(target: Target) -> None:
    tenant, topic = unique("tenant"), unique("t")
    async with target.session.get(f"{target.http}/admin/v2/tenants") as response:
        assert {"public", "pulsar"} <= set(await response.json())
    async with target.session.get(f"{target.http}/admin/v2/namespaces/public") as response:
        assert "public/default" in await response.json()
    tenant_url = f"{target.http}/admin/v2/tenants/{tenant}"
    async with target.session.put(tenant_url, data=b"{}") as response:
        assert response.status == 415  # no JSON content type
    async with target.session.put(tenant_url, json={}) as response:
        assert response.status == 412  # allowedClusters is required
    async with target.session.put(tenant_url, json={"allowedClusters": ["standalone"]}) as response:
        assert response.status == 204
    namespace_url = f"{target.http}/admin/v2/namespaces/{tenant}/ns1"
    async with target.session.put(namespace_url) as response:
        assert response.status == 415
    assert await status(target, f"/ws/v2/producer/persistent/{tenant}/ns1/{topic}") == 404
    async with target.session.put(namespace_url, json={}) as response:
        assert response.status == 204
    async with target.session.get(f"{target.http}/admin/v2/namespaces/{tenant}") as response:
        assert await response.json() == [f"{tenant}/ns1"]
    assert await status(target, f"/ws/v2/producer/persistent/{tenant}/ns1/{topic}") == 101
    assert await status(target, f"/ws/v2/consumer/persistent/{tenant}/ns1/{topic}/s") == 101
    assert await status(target, f"/ws/v2/reader/persistent/{tenant}/ns1/{topic}") == 101
