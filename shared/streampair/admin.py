"""Stream administration: make sure a stream exists, read its stats.

Pulsar uses its admin REST API (`PUT /admin/v2/persistent/...`); Macrometa its streams API
(`POST /_fabric/{fabric}/_api/streams/{name}?global=`). Both treat "already exists" as success,
so `ensure_stream` is safe to call at every start.
"""

from __future__ import annotations

from typing import Any

from streampair.connection import Connector
from streampair.errors import HandshakeError, InvalidRequest
from streampair.logs import get_logger

log = get_logger("streampair.admin")


class StreamAdmin:
    def __init__(self, connector: Connector) -> None:
        self.connector = connector
        self.address = connector.address
        if not self.address.http_base:
            # A pulsar:// URL of a remote broker: its admin API may be anywhere.
            raise InvalidRequest(
                400,
                f"no admin URL for {connector.config.url}: set admin_url (STREAM_ADMIN_URL), "
                "the broker's admin REST API such as http://pulsar:8080",
            )

    def _global_param(self) -> str:
        return "true" if self.address.is_global else "false"

    async def ensure_stream(self) -> bool:
        """Create the stream unless it exists. True if this call created it."""
        if self.address.backend == "macrometa":
            url = f"{self.address.streams_url()}/{self.address.stream}?global={self._global_param()}"
            method = "POST"
        else:
            url = self.address.admin_topic_url()
            method = "PUT"
        try:
            # Pulsar answers 415 to a PUT without a JSON content type, even with no body.
            await self.connector.request_json(method, url, ok=(200, 201, 204), json_body={})
        except HandshakeError as error:
            if error.status == 409 or "already exists" in str(error).lower():
                log.debug("stream_exists", stream=self.address.full_topic)
                return False
            raise
        log.info("stream_created", stream=self.address.full_topic)
        return True

    async def stats(self) -> dict[str, Any]:
        """Topic stats as Pulsar reports them: `subscriptions.{name}.{msgBacklog,type,consumers}`."""
        if self.address.backend == "macrometa":
            url = f"{self.address.streams_url()}/{self.address.topic}/stats?global={self._global_param()}"
            data = await self.connector.request_json("GET", url)
            # GDN wraps answers as {"error": false, "code": 200, "result": {...}}.
            if isinstance(data, dict) and isinstance(data.get("result"), dict):
                return dict(data["result"])
            return dict(data) if isinstance(data, dict) else {}
        data = await self.connector.request_json("GET", self.address.admin_topic_url() + "/stats")
        return dict(data) if isinstance(data, dict) else {}
