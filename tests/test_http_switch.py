"""Protocol switches through the runtime: after CONNECT 2xx the tunnel goes back to protocol
detection (TLS here), after a 101 to WebSocket the frame decoder takes the flow, and bytes
that came in the same segment as the switching head (or after an Upgrade request, from the
client) are handed over too, in order, however the capture is segmented and across restores.

Captures are generated (tests/flowgen.py); TLS flights come from Python's ssl module (OpenSSL)
with a throw-away certificate, WebSocket handshakes and frames from wsproto, and the frames of
the protocol-error tests from the small RFC 6455 encoder below."""

from __future__ import annotations

import json
import random
import ssl
import struct
import subprocess
from functools import cache
from itertools import pairwise
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Request,
    TextMessage,
)
from wsproto.extensions import PerMessageDeflate

from tests.flowgen import Conversation
from tests.fuzzing import fuzz
from tests.pcapgen import write_pcap
from tests.test_task_restore import run as run_task
from wirestream.decoders.api import CLIENT, SERVER
from wirestream.decoders.websocket import WebSocketDecoder
from wirestream.probe.capture import open_capture
from wirestream.probe.source import PacketSource
from wirestream.testing import FakeContext

TIMELESS = {"ts", "ts_start", "ts_end", "duration", "latency", "response_time"}


def replay(frames: list, tmp_path: Path, restarts: set[int] | None = None) -> list[dict]:
    """Records of a generated capture run through a task; restored at each packet index in
    `restarts` (commit, drop the task, restore it from its store)."""
    path = write_pcap(tmp_path / f"cap{random.random()}.pcap", frames)
    packets = list(PacketSource().keyed(open_capture(path)))
    if restarts is None:
        restarts = set()
    elif not restarts:
        restarts = set(range(1, len(packets)))
    store = tmp_path / f"store{random.random()}"
    return [json.loads(r) for r in run_task(packets, store, restarts)]


def of(records: list[dict], kind: str) -> list[dict]:
    return [r for r in records if r["type"] == kind]


def timeless(records: list[dict], kinds: tuple[str, ...]) -> list[dict]:
    """Records of `kinds` without their capture times (segmentation moves them)."""
    return [
        {k: v for k, v in r.items() if k not in TIMELESS} for r in records if r["type"] in kinds
    ]


# ---------------------------------------------------------------- CONNECT + TLS
@cache
def tls_flights(tmp: str) -> tuple[bytes, bytes]:
    """(ClientHello flight with SNI tunnel.test, the server's first flight) from OpenSSL."""
    key, cert = f"{tmp}/key.pem", f"{tmp}/cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=tunnel.test"],
        check=True, capture_output=True,
    )  # fmt: skip
    cctx = ssl.create_default_context()
    cctx.check_hostname = False
    cctx.verify_mode = ssl.CERT_NONE
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(cert, key)
    cin, cout, sin, sout = (ssl.MemoryBIO() for _ in range(4))
    client = cctx.wrap_bio(cin, cout, server_hostname="tunnel.test")
    server = sctx.wrap_bio(sin, sout, server_side=True)
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    hello = cout.read()
    sin.write(hello)
    with pytest.raises(ssl.SSLWantReadError):
        server.do_handshake()
    return hello, sout.read()


@pytest.fixture(scope="module")
def flights(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    return tls_flights(str(tmp_path_factory.mktemp("tls")))


CONNECT = b"CONNECT tunnel.test:443 HTTP/1.1\r\nHost: tunnel.test:443\r\n\r\n"
ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n\r\n"


def connect_capture(flights: tuple[bytes, bytes], mss: int) -> list:
    """The client sends its ClientHello right behind CONNECT, the proxy its 200 and the
    server's flight together (one segment each when mss allows)."""
    hello, server_flight = flights
    c = Conversation("10.9.0.1", "10.9.0.2", 41000, 3128, mss=mss)
    c.handshake()
    c.send(True, CONNECT + hello)
    c.send(False, ESTABLISHED + server_flight)
    c.send(True, b"\x17\x03\x03\x00\x05hello")
    return c.close().frames


@pytest.mark.parametrize("mss", [1460, len(CONNECT), 61])
def test_tls_inside_connect_is_decoded_from_the_same_segment(flights, mss, tmp_path) -> None:
    records = replay(connect_capture(flights, mss), tmp_path)
    (http,) = of(records, "http")
    assert http["request"]["method"] == "CONNECT" and http["tags"] == ["tunnel"]
    (tls,) = of(records, "tls")
    assert tls["client_hello"]["sni"] == "tunnel.test"
    assert tls["server_hello"] is not None
    (flow,) = of(records, "flow")
    assert flow["service"] == "http,tls"
    assert not of(records, "anomaly")


def test_connect_hand_off_ignores_segmentation_and_restores(flights, tmp_path) -> None:
    kinds = ("http", "tls", "anomaly")
    base = replay(connect_capture(flights, 1460), tmp_path)
    for mss in (len(CONNECT), 61, 7):
        got = replay(connect_capture(flights, mss), tmp_path)
        assert timeless(got, kinds) == timeless(base, kinds), mss
    for mss in (1460, 97):
        frames = connect_capture(flights, mss)
        reference = replay(frames, tmp_path)
        assert replay(frames, tmp_path, set()) == reference  # restored at every packet


# ---------------------------------------------------------------- WebSocket (wsproto)
WS_UA = b"wsproto-test"
WS_ORIGIN = b"https://ws.test"


def websocket_exchange() -> dict[str, Any]:
    """A WebSocket conversation made by wsproto (permessage-deflate, a subprotocol), with the
    frames each side sends and what they are, for the expected counts."""
    client, server = WSConnection(ConnectionType.CLIENT), WSConnection(ConnectionType.SERVER)
    request = client.send(
        Request(
            host="ws.test",
            target="/chat?room=1",
            subprotocols=["chat", "superchat"],
            extensions=[PerMessageDeflate()],
            extra_headers=[(b"User-Agent", WS_UA), (b"Origin", WS_ORIGIN)],
        )
    )
    server.receive_data(request)
    assert [type(e) for e in server.events()] == [Request]
    accept = server.send(AcceptConnection(subprotocol="chat", extensions=[PerMessageDeflate()]))
    client.receive_data(accept)
    assert [type(e) for e in client.events()] == [AcceptConnection]
    # (side, event, opcode name of the frame, completes a data message, compressed)
    plan = [
        (CLIENT, TextMessage(data="hello " * 50), "text", True, True),
        (SERVER, TextMessage(data="welcome"), "text", True, True),
        (CLIENT, BytesMessage(data=bytes(range(256)) * 20, message_finished=False), "binary",
         False, True),
        (CLIENT, BytesMessage(data=b"tail" * 100), "continuation", True, False),
        (CLIENT, Ping(payload=b"are you there"), "ping", False, False),
        (SERVER, BytesMessage(data=b"\x00" * 70000), "binary", True, True),
        (CLIENT, CloseConnection(code=1000, reason="bye"), "close", False, False),
        (SERVER, CloseConnection(code=1001, reason="going away"), "close", False, False),
    ]  # fmt: skip
    frames: list[list[bytes]] = [[], []]
    for side, event, *_ in plan:
        frames[side].append((client if side == CLIENT else server).send(event))
    return {"request": request, "accept": accept, "plan": plan, "frames": frames}


def websocket_capture(ws: dict[str, Any], mss: int) -> list:
    """The client's first frame follows its request in one segment, the server's first frame
    its 101 (when mss allows); the rest comes after."""
    (c1, *crest), (s1, *srest) = ws["frames"]
    c = Conversation("10.9.1.1", "10.9.1.2", 42000, 8080, mss=mss)
    c.handshake()
    c.send(True, ws["request"] + c1)
    c.send(False, ws["accept"] + s1)
    c.send(True, b"".join(crest))
    c.send(False, b"".join(srest))
    return c.close().frames


def expected_counts(plan: list, side: int) -> dict[str, Any]:
    mine = [p for p in plan if p[0] == side]
    opcodes: dict[str, int] = {}
    for _, _, op, _, _ in mine:
        opcodes[op] = opcodes.get(op, 0) + 1
    close = next(e for _, e, op, _, _ in mine if op == "close")
    return {
        "frames": len(mine),
        "messages": sum(1 for p in mine if p[3]),
        "opcodes": dict(sorted(opcodes.items())),
        "compressed_frames": sum(1 for p in mine if p[4]),
        "close_code": close.code,
        "close_reason": close.reason,
        "bad_frames": 0,
        "first_violation": None,
        "missed_bytes": 0,
        "desync": False,
    }


@pytest.mark.parametrize("mss", [1460, 100])
def test_websocket_handshake_and_frames(mss: int, tmp_path: Path) -> None:
    ws = websocket_exchange()
    records = replay(websocket_capture(ws, mss), tmp_path)
    (http,) = of(records, "http")
    assert http["response"]["status"] == 101
    assert http["tags"] == ["upgrade", "websocket"]
    (hs,) = of(records, "websocket")
    pmd = PerMessageDeflate()
    ext = f"{pmd.name}; {pmd.offer()}"  # what wsproto put in both headers
    assert {
        k: v for k, v in hs.items() if k not in ("type", "id", "uid", "community_id", "ts")
    } == {
        "client": {"ip": "10.9.1.1", "port": 42000},
        "server": {"ip": "10.9.1.2", "port": 8080},
        "host": "ws.test",
        "uri": "/chat?room=1",
        "user_agent": WS_UA.decode(),
        "origin": WS_ORIGIN.decode(),
        "version": "13",
        "subprotocol": "chat",
        "client_protocols": ["chat", "superchat"],
        "client_extensions": [ext],
        "server_extensions": [ext],
        "accept_valid": True,  # wsproto computed the accept value
    }
    (frames,) = of(records, "websocket_frames")
    for side, name in ((CLIENT, "client_to_server"), (SERVER, "server_to_client")):
        got = dict(frames[name])
        assert got.pop("payload_bytes") > 0
        assert got == expected_counts(ws["plan"], side), name
    (flow,) = of(records, "flow")
    assert flow["service"] == "http,websocket"
    assert not of(records, "anomaly")


def test_websocket_hand_off_ignores_segmentation_and_restores(tmp_path: Path) -> None:
    ws = websocket_exchange()
    kinds = ("http", "websocket", "websocket_frames", "anomaly")
    base = replay(websocket_capture(ws, 1460), tmp_path)
    for mss in (9, 333):
        got = replay(websocket_capture(ws, mss), tmp_path)
        assert timeless(got, kinds) == timeless(base, kinds), mss
    frames = websocket_capture(ws, 700)
    assert replay(frames, tmp_path, set()) == replay(frames, tmp_path)


def test_a_wrong_accept_is_flagged(tmp_path: Path) -> None:
    ws = websocket_exchange()
    ws["accept"] = ws["accept"].replace(b"Sec-WebSocket-Accept: ", b"Sec-WebSocket-Accept: x")
    records = replay(websocket_capture(ws, 1460), tmp_path)
    (hs,) = of(records, "websocket")
    assert hs["accept_valid"] is False
    assert [a["name"] for a in of(records, "anomaly")] == ["websocket_invalid_accept"]


# ---------------------------------------------------------------- RFC 6455 by hand
def frame(op: int, payload: bytes = b"", *, fin: bool = True, mask: bytes | None = None,
          rsv: int = 0) -> bytes:  # fmt: skip
    """One frame as RFC 6455 5.2 lays it out (written from the RFC, not from the decoder)."""
    head = bytes([(0x80 if fin else 0) | rsv << 4 | op])
    m = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        head += bytes([m | n])
    elif n < 1 << 16:
        head += bytes([m | 126]) + struct.pack(">H", n)
    else:
        head += bytes([m | 127]) + struct.pack(">Q", n)
    if mask:
        head += mask
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + payload


KEY = b"abcd"


def drive(events: list, restore_at: int | None = None) -> tuple[list, list[str]]:
    ctx = FakeContext()
    dec = WebSocketDecoder(ctx, {})
    for i, (kind, direction, value) in enumerate(events):
        if i == restore_at:
            blob = msgpack.packb(dec.snapshot(), use_bin_type=True)
            old = ctx
            ctx = FakeContext(out=old.out, ts_ns=old.ts_ns)
            ctx.violations = old.violations
            dec = WebSocketDecoder.restore(ctx, {}, msgpack.unpackb(blob, raw=False))
        ctx.ts_ns += 1000
        (dec.on_data if kind == "data" else dec.on_gap)(direction, value)
    dec.on_close("fin")
    dec.on_close("fin")
    return ctx.out, ctx.violations


def test_payload_lengths_fragments_and_close_payload() -> None:
    client = [
        frame(1, b"a" * 125, mask=KEY),
        frame(2, b"b" * 126, mask=KEY, fin=False),  # 16-bit length
        frame(9, b"ping", mask=KEY),  # a control frame between fragments is allowed
        frame(0, b"c" * 70000, mask=KEY),  # 64-bit length
        frame(8, struct.pack(">H", 4000) + "café".encode(), mask=KEY),
    ]
    server = [frame(10, b"ping"), frame(8)]  # close without a status
    wire = b"".join(client)
    cuts = sorted({*range(0, 300, 3), *range(300, len(wire), 4999), len(wire)})
    events = [("data", CLIENT, wire[a:b]) for a, b in pairwise(cuts)]
    events += [("data", SERVER, b"".join(server))]
    out, violations = drive(events)
    assert violations == []
    ((kind, rec),) = out
    assert kind == "websocket_frames"
    c, s = rec["client_to_server"], rec["server_to_client"]
    assert (c["frames"], c["messages"], c["payload_bytes"]) == (
        5,
        2,
        125 + 126 + 4 + 70000 + 2 + len("café".encode()),
    )
    assert c["opcodes"] == {"binary": 1, "close": 1, "continuation": 1, "ping": 1, "text": 1}
    assert (c["close_code"], c["close_reason"]) == (4000, "café")
    assert (s["frames"], s["close_code"], s["opcodes"]) == (2, None, {"close": 1, "pong": 1})
    for at in range(len(events) + 1):
        assert drive(events, at) == (out, violations), at


@pytest.mark.parametrize(
    ("frames", "reason"),
    [
        ([frame(3, b"x", mask=KEY)], "reserved opcode 0x3"),
        ([frame(1, b"x", mask=KEY, rsv=2)], "reserved bits RSV2/RSV3 set"),
        ([frame(1, b"x")], "unmasked client frame"),
        ([frame(9, b"x" * 126, mask=KEY)], "fragmented or oversized control frame"),
        ([frame(9, b"x", mask=KEY, fin=False)], "fragmented or oversized control frame"),
        ([frame(0, b"x", mask=KEY)], "continuation without a message"),
        ([frame(1, b"x", mask=KEY, fin=False), frame(2, b"y", mask=KEY)],
         "data frame inside a fragmented message"),
        ([frame(8, b"\x03", mask=KEY)], "close payload of one byte"),
        ([frame(8, struct.pack(">H", 1005), mask=KEY)], "invalid close code 1005"),
    ],
)  # fmt: skip
def test_protocol_errors_are_violations_and_parsing_goes_on(frames: list, reason: str) -> None:
    events = [("data", CLIENT, b"".join(frames) + frame(1, b"after", mask=KEY))]
    out, violations = drive(events)
    assert len(violations) == 1 and violations[0].endswith(reason)
    c = out[0][1]["client_to_server"]
    assert (c["bad_frames"], c["first_violation"]) == (1, reason)
    assert c["frames"] == len(frames) + 1  # the frame after the bad one was parsed


def test_gaps_inside_a_payload_keep_the_framing_outside_lose_it() -> None:
    wire = frame(2, b"z" * 1000, mask=KEY) + frame(1, b"ok", mask=KEY)
    events = [("data", CLIENT, wire[:100]), ("gap", CLIENT, 500), ("data", CLIENT, wire[600:])]
    c = drive(events)[0][0][1]["client_to_server"]
    assert (c["frames"], c["messages"], c["missed_bytes"], c["desync"]) == (2, 2, 500, False)
    events = [("data", CLIENT, wire[:1]), ("gap", CLIENT, 3), ("data", CLIENT, wire[4:])]
    c = drive(events)[0][0][1]["client_to_server"]
    assert (c["frames"], c["missed_bytes"], c["desync"]) == (0, 3, True)


def test_top_bit_of_a_64_bit_length_loses_the_framing() -> None:
    bad = bytes([0x82, 0x80 | 127]) + struct.pack(">Q", 1 << 63) + KEY
    out, violations = drive([("data", CLIENT, bad + frame(1, b"x", mask=KEY))])
    c = out[0][1]["client_to_server"]
    assert (c["frames"], c["desync"], len(violations)) == (1, True, 1)


def test_a_flow_of_bad_frames_is_detached_with_its_counts(tmp_path: Path) -> None:
    """Through the runtime: five violations detach the decoder (anomaly decoder_detached),
    which first emits what it counted."""
    ws = websocket_exchange()
    ws["frames"][CLIENT] = [frame(1, b"x")] * 7  # unmasked: one violation each
    records = replay(websocket_capture(ws, 1460), tmp_path)
    (frames,) = of(records, "websocket_frames")
    assert frames["client_to_server"]["bad_frames"] == 5
    assert [a["name"] for a in of(records, "anomaly")] == ["decoder_detached"]


@fuzz(300)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("data"), st.sampled_from([CLIENT, SERVER]), st.binary(max_size=40)),
            st.tuples(
                st.just("data"),
                st.sampled_from([CLIENT, SERVER]),
                st.builds(frame, st.integers(0, 15), st.binary(max_size=130),
                          fin=st.booleans(), mask=st.sampled_from([None, KEY]),
                          rsv=st.integers(0, 7)),
            ),
            st.tuples(st.just("gap"), st.sampled_from([CLIENT, SERVER]), st.integers(1, 300)),
        ),
        max_size=12,
    ),
    st.integers(0, 12),
)  # fmt: skip
def test_arbitrary_input_never_raises_and_restores_exactly(events: list, at: int) -> None:
    out, violations = drive(events)
    assert len(out) == 1
    assert drive(events, at % (len(events) + 1)) == (out, violations)
