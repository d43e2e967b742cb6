"""The decoder plugin contract.

A decoder is a sans-IO object, one instance per flow (like a Zeek analyzer): it is fed
the reassembled bytes of each direction in stream order, and emits records through its
context. It knows no Kafka, no files, no RocksDB. Its whole state must be capturable by
`snapshot()` (msgpack-able values only) and rebuilt exactly by `restore()`, because a
flow moves between processes when a Kafka partition is reassigned or a member crashes:
a restore in the middle of a flow must change no output record.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

# Directions, relative to the flow's roles (decided by the SYN, else by inference).
CLIENT = 0  # client -> server bytes ("orig" in Zeek)
SERVER = 1  # server -> client bytes ("resp" in Zeek)


@dataclass(frozen=True, slots=True)
class Endpoint:
    ip: str  # ipaddress text form
    port: int

    def as_json(self) -> dict[str, Any]:
        return {"ip": self.ip, "port": self.port}


@dataclass(frozen=True, slots=True)
class FlowInfo:
    """What a decoder may know about its flow."""

    uid: str
    transport: str  # "tcp" or "udp" (decoders see no other; flows also "icmp", ...)
    client: Endpoint
    server: Endpoint


def ts_seconds(ts_ns: int) -> float:
    """The one float form of a capture time in records: epoch seconds, microsecond precision."""
    return (ts_ns // 1000) / 1_000_000


class DecoderContext(Protocol):
    """Given to a decoder by the runtime; the decoder's only way out."""

    flow: FlowInfo

    @property
    def ts_ns(self) -> int:
        """Capture time of the packet whose bytes are being delivered now."""
        ...

    def emit(self, record_type: str, fields: dict[str, Any]) -> None:
        """Emit one record. The runtime puts `type`, `id` and `uid` first, then `fields`
        in their insertion order; `id` is uid + type + a per-flow sequence number."""
        ...

    def anomaly(self, name: str, detail: str = "") -> None:
        """Emit an `anomaly` record (weird.log-like) for this flow."""
        ...

    def violation(self, reason: str) -> None:
        """Report that the flow breaks the decoder's protocol. After a few, the runtime
        detaches the decoder (anomaly `decoder_detached`) and looks for another."""
        ...

    def hand_off(self, leftovers: list[tuple[int, bytes]], protocol: str | None = None) -> None:
        """The flow switches protocol (CONNECT tunnel, Upgrade): the runtime detaches this
        decoder and runs detection again, first on `leftovers` ((direction, bytes) received
        after the switch, in arrival order). `protocol` names the decoder the handshake
        agreed on (e.g. "websocket"): when it is selected it is attached without detection.
        Call it last, after emitting what is pending."""
        ...


class Decoder(ABC):
    """Base class of every decoder plugin. Register it under the `wirestream.decoders`
    entry-point group; `name` is what `--decoders` selects."""

    name: ClassVar[str]
    transports: ClassVar[frozenset[str]] = frozenset({"tcp"})
    # Server ports this decoder is attached to without waiting for a content match.
    ports: ClassVar[frozenset[int]] = frozenset()
    # The options it takes (`-O name.option=value`) with their defaults; the CLI refuses
    # other names and values of another type.
    option_defaults: ClassVar[Mapping[str, Any]] = {}

    @classmethod
    def probe(cls, direction: int, data: bytes) -> bool | None:
        """Content detection over the first bytes of one direction (Zeek DPD style).

        True: this protocol; False: not this protocol; None: need more bytes.
        """
        return False

    def __init__(self, ctx: DecoderContext, options: Mapping[str, Any]) -> None:
        self.ctx = ctx
        self.options = options

    @abstractmethod
    def on_data(self, direction: int, data: bytes) -> None:
        """Next in-order bytes of `direction` (for UDP: one whole datagram)."""

    def on_gap(self, direction: int, length: int) -> None:  # noqa: B027 - optional hook
        """`length` bytes of `direction` are lost for good (never delivered)."""

    def on_close(self, reason: str) -> None:  # noqa: B027 - optional hook
        """The flow ended (fin, rst, timeout, eviction, end_of_input), or the runtime detached
        this decoder after its violations ("violation"): flush what is pending."""

    @abstractmethod
    def snapshot(self) -> Any:
        """The decoder's complete state, as msgpack-able values (dict/list/str/bytes/int/...)."""

    @classmethod
    @abstractmethod
    def restore(cls, ctx: DecoderContext, options: Mapping[str, Any], state: Any) -> Decoder:
        """Rebuild a decoder from `snapshot()`'s value; it must behave exactly as the original."""
