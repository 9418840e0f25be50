"""Frames read as Pulsar 4.0.7 reads them: the Java and Jackson rules in broker.frames, with the
answers measured on Pulsar (scripts/pulsar/FINDINGS.md) as expected values."""

from __future__ import annotations

import pytest
from broker.frames import (
    NULL_ID,
    Drop,
    FrameError,
    decode_command_id,
    java_b64decode,
    parse_command,
    parse_event_time,
    parse_publish,
)
from broker.messages import java_iso


@pytest.mark.parametrize(
    ("text", "decoded"),
    [("YWI=", b"ab"), ("YWI", b"ab"), ("YQ", b"a"), ("", b""), ("MTIzNA==", b"1234"), ("1234", b"\xd7m\xf8")],
)
def test_java_base64_accepts(text: str, decoded: bytes) -> None:
    assert java_b64decode(text) == decoded


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("-_-_", "Illegal base64 character 2d"),
        ("YWJj ZA", "Illegal base64 character 20"),
        ("!!!", "Illegal base64 character 21"),
        ("Y", "Input byte[] should at least have 2 bytes for base64 bytes"),
        ("YQ=", "Input byte array has wrong 4-byte ending unit"),
        ("YQ==YQ==", "Input byte array has incorrect ending byte at 4"),
    ],
)
def test_java_base64_refuses_with_javas_message(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message.replace('[', '.').replace(']', '.')}$"):
        java_b64decode(text)


@pytest.mark.parametrize(
    ("text", "millis"),
    [
        ("1970-01-01T00:00:00Z", 0),
        ("1970-01-01T00:00:01.5Z", 1500),
        ("1970-01-01T02:00:00+02:00", 0),
        ("1970-01-01T00:01z", 60_000),
        ("1970-01-01T00:00:00.123456789Z", 123),
        ("1969-12-31T23:59:59Z", -1000),
    ],
)
def test_event_time_parses_like_iso_offset_date_time(text: str, millis: int) -> None:
    assert parse_event_time(text) == millis


@pytest.mark.parametrize(
    "text", ["2026-01-02T03:04:05", "2026-01-02T03:04:05+0200", "yesterday", "2026-13-01T00:00Z"]
)
def test_event_time_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"^Text '"):
        parse_event_time(text)


@pytest.mark.parametrize(
    ("millis", "text"),
    [
        (0, "1970-01-01T00:00:00Z"),
        (830, "1970-01-01T00:00:00.83Z"),
        (1_001, "1970-01-01T00:00:01.001Z"),
        (100, "1970-01-01T00:00:00.1Z"),
    ],
)
def test_times_print_as_java_prints_them(millis: int, text: str) -> None:
    assert java_iso(millis) == text


def test_publish_coerces_and_keeps_order_of_checks() -> None:
    frame = parse_publish(
        b'{"payload":"YWI","key":12,"context":5,"properties":{"b":true,"f":1.5},"deliverAfterMs":"10"}', 1000
    )
    assert (frame.raw, frame.key, frame.context) == (b"ab", "12", "5")
    assert frame.properties == {"b": "true", "f": "1.5"}
    assert frame.deliver_at_ms == 1010
    with pytest.raises(FrameError) as bad_json:
        parse_publish(b'{"payload":"YQ==","key":{},"context":"c"}', 0)
    assert bad_json.value.code == 3 and len(bad_json.value.args) == 1  # no context: Jackson failed first
    with pytest.raises(FrameError) as bad_b64:
        parse_publish(b'{"payload":"%%","context":"c"}', 0)
    assert bad_b64.value.code == 7 and bad_b64.value.args[1] == "c"
    with pytest.raises(Drop) as null_value:
        parse_publish(b'{"payload":"YQ==","properties":{"n":null}}', 0)
    assert (null_value.value.code, null_value.value.reason) == (1011, "Need Non-Null value for key: n")


def test_commands_and_ids() -> None:
    assert parse_command(b'{"type":"permit","permitMessages":"5"}').permits == 5
    for garbage in (b"nope", b"[1]", b'{"type":{}}', b'{"type":"permit","permitMessages":"x"}'):
        with pytest.raises(Drop) as dropped:
            parse_command(garbage)
        assert dropped.value.code is None  # no close frame: the client sees 1006
    with pytest.raises(Drop) as missing:
        decode_command_id(None)
    assert (missing.value.code, missing.value.reason) == (1011, NULL_ID)
    assert decode_command_id("CAEQAQ==") == b"\x08\x01\x10\x01"
