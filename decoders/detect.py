"""Protocol detection for one flow (Zeek DPD / Suricata probing parsers): by content first,
by port as a fallback. Sans-IO: fed the first bytes of each direction, returns a decision."""

from __future__ import annotations

from decoders.api import CLIENT, SERVER, Decoder

PROBE_LIMIT = 4096  # bytes per direction looked at before falling back to ports


class Detector:
    """Decides which decoder class a flow gets, from the first bytes of each direction."""

    __slots__ = ("_candidates", "_seen", "_undecided", "server_port")

    def __init__(self, candidates: list[type[Decoder]], server_port: int) -> None:
        self._candidates = candidates
        self.server_port = server_port
        self._seen = [b"", b""]
        self._undecided = set(range(len(candidates)))

    def feed(self, direction: int, data: bytes) -> tuple[bool, type[Decoder] | None]:
        """(decided, decoder class or None). Once decided, the caller stops feeding."""
        seen = self._seen[direction] = (self._seen[direction] + data)[:PROBE_LIMIT]
        for index in sorted(self._undecided):
            verdict = self._candidates[index].probe(direction, seen)
            if verdict:
                return True, self._candidates[index]
            if verdict is False:
                self._undecided.discard(index)
        if not self._undecided or len(seen) >= PROBE_LIMIT:
            return True, self.by_port()
        return False, None

    def by_port(self) -> type[Decoder] | None:
        """The decoder claiming the server port (server_port -1: no port fallback)."""
        for cls in self._candidates:
            if self.server_port in cls.ports:
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


def role_hint(candidates: list[type[Decoder]], data: bytes) -> int | None:
    """Which role the sender of `data` plays according to the decoders' probes."""
    as_client = any(cls.probe(CLIENT, data) for cls in candidates)
    as_server = any(cls.probe(SERVER, data) for cls in candidates)
    if as_client and not as_server:
        return CLIENT
    if as_server and not as_client:
        return SERVER
    return None
