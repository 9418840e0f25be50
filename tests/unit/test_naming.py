import pytest
from streampair.config import ClientConfig
from streampair.naming import StreamAddress
from streampair.protocol import tenant_from_api_key


def test_pulsar_urls() -> None:
    a = StreamAddress.from_config(ClientConfig(url="ws://pulsar:8080", stream="orders"))
    assert a.ws_url("producer") == "ws://pulsar:8080/ws/v2/producer/persistent/public/default/orders"
    assert (
        a.ws_url("consumer", "sub-1", {"subscriptionType": "Shared"})
        == "ws://pulsar:8080/ws/v2/consumer/persistent/public/default/orders/sub-1?subscriptionType=Shared"
    )
    assert a.ws_url("reader", params={"messageId": "earliest"}).endswith(
        "/ws/v2/reader/persistent/public/default/orders?messageId=earliest"
    )
    assert a.admin_topic_url() == "http://pulsar:8080/admin/v2/persistent/public/default/orders"
    assert a.full_topic == "persistent://public/default/orders"


def test_pulsar_tls_and_custom_namespace() -> None:
    a = StreamAddress.from_config(
        ClientConfig(url="wss://broker.example:8443", tenant="acme", namespace="prod")
    )
    assert a.ws_url("producer").startswith("wss://broker.example:8443/ws/v2/producer/persistent/acme/prod/")
    assert a.admin_topic_url().startswith("https://broker.example:8443/admin/v2/persistent/acme/prod/")


def test_consumer_needs_a_subscription() -> None:
    a = StreamAddress.from_config(ClientConfig())
    with pytest.raises(ValueError):
        a.ws_url("consumer")


@pytest.mark.parametrize(
    ("key", "tenant"),
    [
        (None, "_mm"),
        ("", "_mm"),
        ("demo_macrometa.io.mykey.AbCdEf0123", "demo_macrometa.io"),
        ("acme.keyname.secretpart", "acme"),
        ("onlytwo.parts", "_mm"),
    ],
)
def test_tenant_from_api_key(key: str | None, tenant: str) -> None:
    assert tenant_from_api_key(key) == tenant


def test_macrometa_global_urls() -> None:
    s = ClientConfig(
        backend="macrometa",
        url="https://play.paas.macrometa.io",
        api_key="acme.keyname.secretpart",
        stream="streamQuickstart",
    )
    a = StreamAddress.from_config(s)
    assert a.http_base == "https://api-play.paas.macrometa.io"
    assert a.ws_url("producer", params={"otp": "x"}) == (
        "wss://api-play.paas.macrometa.io/_ws/ws/v2/producer/persistent/acme/c8global._system/"
        "c8globals.streamQuickstart?otp=x"
    )
    assert a.ws_url("consumer", "consumer-subscription").endswith(
        "/_ws/ws/v2/consumer/persistent/acme/c8global._system/c8globals.streamQuickstart/consumer-subscription"
    )
    assert a.streams_url() == "https://api-play.paas.macrometa.io/_fabric/_system/_api/streams"
    assert a.otp_url() == "https://api-play.paas.macrometa.io/apid/otp"


def test_macrometa_local_stream_and_fabric() -> None:
    s = ClientConfig(
        backend="macrometa",
        url="https://api-gdn.paas.macrometa.io",
        global_stream=False,
        fabric="eu",
    )
    a = StreamAddress.from_config(s)
    assert a.http_base == "https://api-gdn.paas.macrometa.io"  # no second api- prefix
    assert a.namespace == "c8local.eu"
    assert a.topic == "c8locals.streamQuickstart"
    assert a.tenant == "_mm"


def test_macrometa_against_a_loopback_broker_keeps_the_host() -> None:
    a = StreamAddress.from_config(ClientConfig(backend="macrometa", url="http://127.0.0.1:9000"))
    assert a.ws_base == "ws://127.0.0.1:9000"
    assert a.http_base == "http://127.0.0.1:9000"
