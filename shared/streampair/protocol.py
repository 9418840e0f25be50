"""The wire format of the Pulsar / Macrometa WebSocket API, as the client speaks it.

Constants that client and embedded broker must agree on live here (the broker imports them),
together with the client's frames: what a producer writes, what a consumer acks, how a
delivered message is parsed. Message ids are opaque base64 strings, echoed exactly.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

SubscriptionType = Literal["Exclusive", "Shared", "Failover", "Key_Shared"]
#: The exact spellings Pulsar accepts for `subscriptionType` (anything else is a 400).
SUBSCRIPTION_TYPES: Final[tuple[str, ...]] = get_args(SubscriptionType)

#: Pulsar caps receiverQueueSize at 1000 for WebSocket consumers and readers.
MAX_RECEIVER_QUEUE: Final = 1000

#: jsC8's extractTenantName falls back to this tenant when there is no API key.
DEFAULT_C8_TENANT: Final = "_mm"


def tenant_from_api_key(api_key: str | None) -> str:
    """The tenant encoded in a Macrometa API key: the key split on '.', less its last two parts."""
    if not api_key:
        return DEFAULT_C8_TENANT
    tenant = ".".join(api_key.split(".")[:-2])
    return tenant or DEFAULT_C8_TENANT
