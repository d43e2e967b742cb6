"""HTTP messages and transactions as the decoder keeps them: head fields ready for the record,
a body digest while the body streams, tags; plus their msgpack-able snapshot form."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from wirestream.decoders.http.body import BodyDigest, BodyExtras

UNKNOWN_BODY: dict[str, Any] = {"body_len": None, "body_sha256": None}


UPGRADE = b"UPGRADE"  # a GET-like request carrying an Upgrade proposal


def framing_class(method: bytes, upgrade: bool = False) -> bytes:
    """The only request facts that change how a response is framed (RFC 9112 6.3): HEAD,
    CONNECT, an Upgrade proposal (a 101 may follow), anything else."""
    if method in (b"HEAD", b"CONNECT"):
        return method
    return UPGRADE if upgrade else b"GET"


class Msg:
    """One request or response. `body` is set when the message is complete (or given up)."""

    __slots__ = (
        "body",
        "clock",
        "codings",
        "complete",
        "digest",
        "end_ns",
        "framing",
        "head",
        "is_request",
        "paired",
        "rid",
        "store",
        "switch",
        "tags",
        "ts_ns",
    )

    def __init__(self, rid: int, is_request: bool, ts_ns: int, clock: int) -> None:
        self.rid = rid
        self.is_request = is_request
        self.ts_ns = ts_ns
        self.end_ns = ts_ns  # capture time of the last byte (set when the message ends)
        self.clock = clock  # decoder clock: when the head completed (request) / began (response)
        self.head: dict[str, Any] = {}
        self.tags: set[str] = set()
        self.codings: list[str] | None = None
        self.digest: BodyDigest | None = None
        self.body: dict[str, Any] | None = None
        self.complete = False
        # request: what it means for its response's framing (framing_class); response: the
        # stand-in request it was parsed with
        self.framing = b"GET"
        self.switch = False  # request proposes a protocol switch (CONNECT / Upgrade)
        # extraction: stores a body's content, returns its file name (HttpDecoder.store_file)
        self.store: Callable[[bytes], str | None] | None = None
        self.paired = False

    def open_body(
        self,
        max_decoded: int,
        extras: BodyExtras | None = None,
        store: Callable[[bytes], str | None] | None = None,
    ) -> None:
        self.digest = BodyDigest(self.codings, max_decoded, extras)
        self.store = store if extras is not None and extras.keep else None

    def finish(self) -> None:
        """Freeze the body fields; a message without digest (lenient head) has unknown body."""
        if self.complete:
            return
        d = self.digest
        if d is not None:
            self.body = d.fields()
            if self.store is not None:
                # The file name, or null (over the bound, bytes lost, not written); storing
                # is idempotent (named by content), so a restore that replays the body agrees.
                data = d.content()
                self.body["extracted"] = self.store(data) if data is not None else None
                self.store = None
            if d.limit_hit or d.decode_error:
                self.tags.update(d.tags())
            self.digest = None
        else:
            self.body = dict(UNKNOWN_BODY)
        self.complete = True

    def record(self, informational: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        out = dict(self.head)
        if not self.is_request:
            out["informational"] = list(informational or [])
        out.update(self.body if self.body is not None else UNKNOWN_BODY)
        return out

    def to_state(self) -> dict[str, Any]:
        return {
            "rid": self.rid,
            "req": self.is_request,
            "ts": self.ts_ns,
            "end": self.end_ns,
            "clock": self.clock,
            "head": self.head,
            "tags": sorted(self.tags),
            "codings": self.codings,
            "body": self.body,
            "complete": self.complete,
            "framing": self.framing,
            "switch": self.switch,
            "paired": self.paired,
        }

    @classmethod
    def from_state(cls, st: dict[str, Any]) -> Msg:
        m = cls(st["rid"], st["req"], st["ts"], st["clock"])
        m.end_ns = st.get("end", st["ts"])
        m.head = st["head"]
        m.tags = set(st["tags"])
        m.codings = st["codings"]
        m.body = st["body"]
        m.complete = st["complete"]
        m.framing = st["framing"]
        m.switch = st["switch"]
        m.paired = st["paired"]
        return m


def header_pairs(raw: list[tuple[bytes, bytes]]) -> list[list[str]]:
    return [[n.decode("latin-1"), v.decode("latin-1")] for n, v in raw]


def new_head_msg(
    rid: int,
    is_request: bool,
    ts_ns: int,
    clock: int,
    first: dict[str, Any],
    headers: list[list[str]],
    cap: int,
    codings: list[str] | None,
) -> Msg:
    """A message from its first-line fields (a fresh dict, kept as the head), its headers as
    text pairs (wire order, wire case; the first `cap` are kept) and its content codings."""
    m = Msg(rid, is_request, ts_ns, clock)
    first["headers"] = headers if len(headers) <= cap else headers[:cap]
    m.head = first
    m.codings = codings
    return m


class Txn:
    """A transaction on its way out: request and/or response, extra tags, 1xx responses."""

    __slots__ = ("hold", "info", "req", "resp", "tags")

    def __init__(
        self,
        req: Msg | None,
        resp: Msg | None,
        tags: set[str] | None = None,
        info: list[dict[str, Any]] | None = None,
        hold: bool = False,
    ) -> None:
        self.req = req
        self.resp = resp
        self.tags = set(tags or ())
        self.info = info or []
        self.hold = hold  # a response whose request is not known yet (pairing.FLOAT)

    def all_tags(self) -> list[str]:
        req, resp = self.req, self.resp
        if req is not None and resp is not None and not (self.tags or req.tags or resp.tags):
            return []
        tags = set(self.tags)
        if self.req is not None:
            tags |= self.req.tags
        else:
            tags.add("no_request")
        if self.resp is not None:
            tags |= self.resp.tags
        else:
            tags.add("no_response")
        return sorted(tags)

    def to_state(self) -> dict[str, Any]:
        return {
            "req": self.req.rid if self.req is not None else None,
            "resp": self.resp.to_state() if self.resp is not None else None,
            "tags": sorted(self.tags),
            "info": self.info,
            "hold": self.hold,
        }

    @classmethod
    def from_state(cls, st: dict[str, Any], reqs: dict[int, Msg]) -> Txn:
        req = reqs[st["req"]] if st["req"] is not None else None
        resp = Msg.from_state(st["resp"]) if st["resp"] is not None else None
        return cls(req, resp, set(st["tags"]), list(st["info"]), st.get("hold", False))
