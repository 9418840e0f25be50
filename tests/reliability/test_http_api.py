"""The services' HTTP API against its OpenAPI files, and bad input: a clear 4xx, never a 500.

A broker, a producer and a consumer run as real processes for the whole module (stdout and
stderr to files, so many requests cannot fill a pipe). Answers of every documented operation
must conform to `services/*/openapi.yaml`; property-based bodies (hypothesis), malformed JSON,
bodies or messages over STREAM_MAX_FRAME_BYTES, other content types and wrong methods must get
a documented 4xx, and the process must live on.
"""

from __future__ import annotations

import gzip
import http.client
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from streampair.protocol import send_frame

from harness import ROOT, base_env, free_port

MAX_BODY = 2048
SPECS = {
    "producer": yaml.safe_load((ROOT / "services/producer/openapi.yaml").read_text()),
    "consumer": yaml.safe_load((ROOT / "services/consumer/openapi.yaml").read_text()),
}
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH"]


@dataclass
class Proc:
    name: str
    port: int
    popen: subprocess.Popen[bytes]
    out: Path

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            conn.close()


def spawn(name: str, module: str, tmp: Path, port: int, **env: str) -> Proc:
    out = tmp / f"{name}.log"
    with out.open("wb") as sink:
        popen = subprocess.Popen(
            [sys.executable, "-m", module], env=base_env(**env), cwd=ROOT, stdout=sink, stderr=sink
        )
    return Proc(name, port, popen, out)


def wait_ok(proc: Proc, path: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.popen.poll() is None, proc.out.read_text()[-2000:]
        try:
            if proc.request("GET", path)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{proc.name}{path}: {proc.out.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Proc]]:
    tmp = tmp_path_factory.mktemp("http-api")
    broker_port = free_port()
    stream = {"STREAM_URL": f"ws://127.0.0.1:{broker_port}", "RECONNECT_MAX_SECONDS": "0.5"}
    procs: dict[str, Proc] = {}
    try:
        procs["broker"] = spawn(
            "broker", "broker", tmp, broker_port, BROKER_PORT=str(broker_port), BROKER_DATA_DIR=str(tmp / "d")
        )
        wait_ok(procs["broker"], "/admin/v2/brokers/health")
        port = free_port()
        procs["consumer"] = spawn("consumer", "consumer", tmp, port, HTTP_PORT=str(port), **stream)
        port = free_port()
        procs["producer"] = spawn(
            "producer",
            "producer",
            tmp,
            port,
            HTTP_PORT=str(port),
            STREAM_MAX_FRAME_BYTES=str(MAX_BODY),
            PUBLISH_INTERVAL_SECONDS="1",
            **stream,
        )
        wait_ok(procs["producer"], "/readyz")
        wait_ok(procs["consumer"], "/readyz")
        yield procs
        for proc in procs.values():
            assert proc.popen.poll() is None, f"{proc.name} died: {proc.out.read_text()[-3000:]}"
            text = proc.out.read_text(errors="replace")
            assert "Traceback" not in text and "unhandled error" not in text, text[-3000:]
    finally:
        for proc in procs.values():
            proc.popen.terminate()
        for proc in procs.values():
            try:
                proc.popen.wait(10)
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait(5)


def validator(service: str, schema: dict[str, Any]) -> Draft202012Validator:
    return Draft202012Validator({**schema, "components": SPECS[service]["components"]})


def resolve(service: str, node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = SPECS[service]
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def operations(service: str) -> dict[str, dict[str, Any]]:
    """path -> {method: operation} with path items resolved."""
    return {path: resolve(service, item) for path, item in SPECS[service]["paths"].items()}


def check_conforms(
    service: str, path: str, method: str, status: int, headers: dict[str, str], body: bytes
) -> None:
    """The answer is documented for this operation and its body matches the schema."""
    op = operations(service)[path][method.lower()]
    assert str(status) in op["responses"], f"{method} {path}: undocumented status {status}: {body[:300]!r}"
    response = resolve(service, op["responses"][str(status)])
    for header, spec in response.get("headers", {}).items():
        if spec.get("required"):
            assert header.lower() in headers, f"{method} {path} {status}: no {header} header"
    content = response.get("content", {})
    if "application/json" in content:
        assert headers.get("content-type", "").startswith("application/json"), headers
        schema = content["application/json"]["schema"]
        errors = list(validator(service, schema).iter_errors(json.loads(body)))
        assert not errors, f"{method} {path} {status}: {errors[0].message} in {body[:300]!r}"
    elif "text/plain" in content:
        assert headers.get("content-type", "").startswith("text/plain"), headers


# -- the description itself -------------------------------------------------------------------


@pytest.mark.parametrize("service", ["producer", "consumer"])
def test_openapi_files_are_well_formed(service: str) -> None:
    spec = SPECS[service]
    assert spec["openapi"].startswith("3.")
    for schema in spec["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    for path, item in operations(service).items():
        for method, op in item.items():
            assert method in ("get", "post"), (path, method)
            for status, response in op["responses"].items():
                assert "description" in resolve(service, response), (path, method, status)


# -- conformance of the served answers ----------------------------------------------------------


@pytest.mark.parametrize("service", ["producer", "consumer"])
def test_every_documented_get_conforms(services: dict[str, Proc], service: str) -> None:
    for path, item in operations(service).items():
        if "get" in item:
            status, headers, body = services[service].request("GET", path)
            check_conforms(service, path, "GET", status, headers, body)


def test_post_messages_conforms(services: dict[str, Proc]) -> None:
    producer = services["producer"]
    body = json.dumps({"payload": "hello", "properties": {"k": "v"}, "key": "k1"}).encode()
    status, headers, answer = producer.request(
        "POST", "/messages", body, {"Content-Type": "application/json"}
    )
    assert status == 201, answer
    check_conforms("producer", "/messages", "POST", status, headers, answer)


@pytest.mark.parametrize("service", ["producer", "consumer"])
def test_wrong_methods_are_405_with_allow(services: dict[str, Proc], service: str) -> None:
    for path, item in operations(service).items():
        for method in METHODS:
            if method.lower() in item:
                continue
            status, headers, body = services[service].request(method, path, b"{}")
            assert status == 405, (method, path, status, body)
            check_conforms(service, path, next(iter(item)).upper(), status, headers, body)
            allowed = {m.strip() for m in headers["allow"].split(",")}
            assert {m.upper() for m in item} <= allowed


@pytest.mark.parametrize("service", ["producer", "consumer"])
def test_unknown_paths_are_404_json(services: dict[str, Proc], service: str) -> None:
    for path in ("/", "/nope", "/status/../../etc/passwd", "/%ff", "/messages/1"):
        status, _, body = services[service].request("GET", path)
        assert status == 404, (path, status)
        assert "error" in json.loads(body)


# -- bad input ------------------------------------------------------------------------------------

BAD_JSON = [
    b"",
    b"{",
    b"not json",
    b"\xff\xfe\x00",
    b'{"payload": "x"',
    b"[1, 2]",
    b'"just a string"',
    b"null",
    b"1e999999",
    b"[" * 100_0 + b"]" * 100_0,
    b'{"payload": 1}',
    b'{"payload": "x", "properties": [1]}',
    b'{"payload": "x", "properties": {"k": 1}}',
    b'{"payload": "x", "key": 7}',
    json.dumps({"payload": "x", "properties": {str(i): "v" for i in range(65)}}).encode(),
]


@pytest.mark.parametrize("body", BAD_JSON, ids=range(len(BAD_JSON)))
def test_malformed_bodies_are_a_clear_4xx(services: dict[str, Proc], body: bytes) -> None:
    status, headers, answer = services["producer"].request(
        "POST", "/messages", body, {"Content-Type": "application/json"}
    )
    assert status in (400, 422), (status, answer)
    check_conforms("producer", "/messages", "POST", status, headers, answer)


@pytest.mark.parametrize("size", [MAX_BODY + 1, 10 * MAX_BODY, 4 * 1024 * 1024])
def test_bodies_over_the_frame_limit_are_413(services: dict[str, Proc], size: int) -> None:
    body = json.dumps({"payload": "x" * size}).encode()
    try:
        status, headers, answer = services["producer"].request(
            "POST", "/messages", body, {"Content-Type": "application/json"}
        )
    except (BrokenPipeError, ConnectionResetError):
        return  # the server may answer 413 and close before the whole body is sent
    assert status == 413, (status, answer[:200])
    check_conforms("producer", "/messages", "POST", status, headers, answer)


def test_a_compressed_body_is_not_inflated(services: dict[str, Proc]) -> None:
    """Content-Encoding is not honoured: inflating lets a small gzip bomb stall the event loop."""
    body = gzip.compress(json.dumps({"payload": "compressed"}).encode())
    status, headers, answer = services["producer"].request(
        "POST", "/messages", body, {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    )
    assert status == 400, (status, answer[:300])
    check_conforms("producer", "/messages", "POST", status, headers, answer)


def json_values() -> st.SearchStrategy[Any]:
    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50)
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
        max_leaves=20,
    )


message_like = st.fixed_dictionaries(
    {},
    optional={
        "payload": st.text(max_size=300) | json_values(),
        "properties": st.dictionaries(st.text(max_size=20), st.text(max_size=20), max_size=70)
        | st.sampled_from([None, [], "", 0, False])
        | json_values(),
        "key": st.text(max_size=20) | json_values(),
    },
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=message_like | json_values())
def test_property_any_json_body_gets_a_documented_answer(services: dict[str, Proc], body: Any) -> None:
    raw = json.dumps(body).encode()
    status, headers, answer = services["producer"].request(
        "POST", "/messages", raw, {"Content-Type": "application/json"}
    )
    assert status < 500 or status in (502, 503), (status, answer)
    check_conforms("producer", "/messages", "POST", status, headers, answer)
    valid = validator("producer", {"$ref": "#/components/schemas/NewMessage"}).is_valid(body)
    if valid and len(raw) <= MAX_BODY:
        frame = send_frame(body["payload"].encode(), "1", body.get("properties"), body.get("key"))
        # What the description accepts, the service accepts, if its frame fits the broker's limit.
        assert status == (201 if len(frame) <= MAX_BODY else 413), (body, answer)
    elif len(raw) <= MAX_BODY:
        assert status in (400, 422), (body, status, answer)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=3000), content_type=st.sampled_from(["application/json", "text/plain", ""]))
def test_property_any_bytes_never_500(services: dict[str, Proc], raw: bytes, content_type: str) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    status, _, answer = services["producer"].request("POST", "/messages", raw, headers)
    assert status in ((201, 400, 413, 422) if content_type != "text/plain" else (415,)), (status, answer)


# -- hostile input (issue #12) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"payload": "\\ud800"}', "payload"),
        (b'{"payload": "a", "key": "\\ud800"}', "key"),
        (b'{"payload": "a", "properties": {"k": "x\\udfff"}}', "property 'k'"),
        (b'{"payload": "a", "properties": {"\\ud800": "v"}}', "property name"),
    ],
)
def test_a_lone_surrogate_is_422_naming_the_field(services: dict[str, Proc], body: bytes, field: str) -> None:
    status, headers, answer = services["producer"].request(
        "POST", "/messages", body, {"Content-Type": "application/json"}
    )
    assert status == 422, answer
    check_conforms("producer", "/messages", "POST", status, headers, answer)
    assert field in json.loads(answer)["error"]


@pytest.mark.parametrize("body", [b'{"payload": "a", "x": NaN}', b'{"payload": "a", "x": -Infinity}'])
def test_non_standard_json_constants_are_refused(services: dict[str, Proc], body: bytes) -> None:
    status, _, answer = services["producer"].request(
        "POST", "/messages", body, {"Content-Type": "application/json"}
    )
    assert status == 400 and json.loads(answer) == {"error": "body is not valid JSON", "status": 400}


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"]
)
def test_other_content_types_are_415(services: dict[str, Proc], content_type: str) -> None:
    status, headers, answer = services["producer"].request(
        "POST", "/messages", b'{"payload": "a"}', {"Content-Type": content_type}
    )
    assert status == 415, answer
    check_conforms("producer", "/messages", "POST", status, headers, answer)


def test_a_message_whose_frame_would_not_fit_is_413_before_sending(services: dict[str, Proc]) -> None:
    body = json.dumps({"payload": "x" * 1600}).encode()  # under the body limit; base64 is 4/3 of it
    assert len(body) < MAX_BODY
    status, headers, answer = services["producer"].request(
        "POST", "/messages", body, {"Content-Type": "application/json"}
    )
    assert status == 413, answer
    check_conforms("producer", "/messages", "POST", status, headers, answer)
    assert "STREAM_MAX_FRAME_BYTES" in json.loads(answer)["error"]


@pytest.mark.parametrize("service", ["producer", "consumer"])
def test_each_service_exports_only_its_own_series(services: dict[str, Proc], service: str) -> None:
    _, _, body = services[service].request("GET", "/metrics")
    names = {
        line.split("{")[0].split(" ")[0] for line in body.decode().splitlines() if not line.startswith("#")
    }
    producer_only = {"streampair_messages_published_total", "streampair_publish_latency_seconds_count"}
    consumer_only = {
        "streampair_messages_received_total",
        "streampair_consumer_active",
        "streampair_end_to_end_latency_seconds_count",
        "streampair_duplicates_total",
        "streampair_messages_dead_lettered_total",
    }
    mine, theirs = (producer_only, consumer_only) if service == "producer" else (consumer_only, producer_only)
    assert mine <= names, mine - names
    assert not theirs & names, theirs & names
    if service == "producer":  # labelled series show once they have a sample; their HELP shows at once
        assert "streampair_handler_errors" not in body.decode()
    assert not [n for n in names if n.endswith("_created")]  # no timestamp twin per counter
