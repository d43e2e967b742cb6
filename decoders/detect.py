"""Protocol detection for one flow (Zeek DPD / Suricata probing parsers): by content first,
by port as a fallback. Sans-IO: fed the first bytes of each direction, returns a decision."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from wirestream.decoders.api import CLIENT, SERVER, Decoder

PROBE_LIMIT = 4096  # bytes per direction looked at before falling back to ports


# Called when a decoder's probe raises: (decoder class, exception). The detector then rules
# that decoder out; the caller reports it.
ProbeFailed = Callable[[type[Decoder], Exception], None]


class Detector:
    """Decides which decoder class a flow gets, from the first bytes of each direction.

    Ties: at every delivery the undecided candidates are asked in their order (the order
    of `--decoders`; all registered decoders: by name), and the first True wins. A False,
    from either direction, rules the decoder out for the whole flow. The port fallback
    takes the first candidate, in the same order, whose `ports` hold the server port.
    """

    __slots__ = ("_candidates", "_failed", "_ports", "_seen", "_undecided", "server_port")

    def __init__(
        self,
        candidates: list[type[Decoder]],
        server_port: int,
        ports: Mapping[str, frozenset[int]] | None = None,
        failed: ProbeFailed | None = None,
    ) -> None:
        self._candidates = candidates
        self.server_port = server_port
        self._ports = ports
        self._failed = failed
        self._seen = [b"", b""]
        self._undecided = set(range(len(candidates)))

    def feed(self, direction: int, data: bytes) -> tuple[bool, type[Decoder] | None]:
        """(decided, decoder class or None). Once decided, the caller stops feeding."""
        seen = self._seen[direction] = (self._seen[direction] + data)[:PROBE_LIMIT]
        for index in sorted(self._undecided):
            cls = self._candidates[index]
            try:
                verdict = cls.probe(direction, seen)
            except Exception as exc:  # a plugin bug: rule it out, let the caller report
                self._undecided.discard(index)
                if self._failed is not None:
                    self._failed(cls, exc)
                continue
            if verdict:
                return True, cls
            if verdict is False:
                self._undecided.discard(index)
        if not self._undecided or len(seen) >= PROBE_LIMIT:
            return True, self.by_port()
        return False, None

    def by_port(self) -> type[Decoder] | None:
        """The decoder claiming the server port (server_port -1: no port fallback)."""
        for cls in self._candidates:
            ports = cls.ports if self._ports is None else self._ports[cls.name]
            if self.server_port in ports:
                return cls
        return None

    def snapshot(self) -> list:
        return [self._seen, sorted(self._undecided)]

    def restore(self, state: list) -> None:
        self._seen = [bytes(x) for x in state[0]]
        self._undecided = set(state[1])

    def finish(self) -> type[Decoder] | None:
        """The flow ended before content decided: fall back to the port."""
        return self.by_port()


def role_hint(
    candidates: list[type[Decoder]], data: bytes, failed: ProbeFailed | None = None
) -> int | None:
    """Which role the sender of `data` plays according to the decoders' probes (a probe
    that raises counts as no answer, and is reported to `failed`)."""
    as_client = as_server = False
    for cls in candidates:
        try:
            as_client = as_client or bool(cls.probe(CLIENT, data))
            as_server = as_server or bool(cls.probe(SERVER, data))
        except Exception as exc:
            if failed is not None:
                failed(cls, exc)
    if as_client and not as_server:
        return CLIENT
    if as_server and not as_client:
        return SERVER
    return None
