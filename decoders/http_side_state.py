"""Snapshot and restore of one side.

A side remembers every byte since its last message boundary (`rec`), the capture time and
decoder clock of each arrival, and where absorbed gaps fell. The decoder's snapshot stores
those; a restore feeds them again to a fresh h11 connection with every side effect (records,
anomalies, queue changes) suppressed, which rebuilds the parser and body-hash state exactly.
Memory cost: a body in progress is kept up to `max_replay` bytes; beyond, the side stops
keeping it ("overflow") and a restore resumes at the next message line instead. An identity
Content-Length body (BODY mode) is not kept at all: its digest state and the bytes left are
saved instead (resumable SHA-256), so its restore is always exact.
"""

from __future__ import annotations

from typing import Any

from wirestream.decoders.http_body import BodyDigest
from wirestream.decoders.http_modes import BODY, CHUNK, DONE, MSG, RESYNC, TUNNEL


class SideSnapshot:
    """Mixed into Side (decoders/http_side.py)."""

    def state(self) -> dict[str, Any]:
        rel = self.boundary
        mode = self.mode
        st = {
            "mode": mode,
            "data": None if self.overflow else self.tail(),
            "gaps": [[p - rel, n] for p, n in self.gaps],
            "arr": [[p - rel, t, c] for p, t, c in self.arr],
            "skip_lf": self.skip_lf,
            "soft": self.soft,
            "tags_next": sorted(self.tags_next),
        }
        if mode == CHUNK:  # replayed from the message's start, through h11
            st["mode"] = MSG
        if mode == BODY:
            if self.body_keep:  # the message's bytes are replayed from its start
                st["mode"] = MSG
            else:
                msg = self._cur_msg()
                assert msg is not None and msg.digest is not None
                st["body"] = [self.body_left, msg.digest.save()]
        return st

    def load(self, st: dict[str, Any]) -> None:
        """Rebuild from `state()`: the caller has set up the shared objects (cur etc.)."""
        self.mode = st["mode"]
        self.arr = [list(a) for a in st["arr"]]
        self.skip_lf = st["skip_lf"]
        self.soft = st.get("soft", False)
        self.tags_next = set(st["tags_next"])
        self.rec = bytearray()
        self.base = self.boundary = self.end = 0
        self.gaps = []
        data = st["data"]
        if data is None:  # overflowed body: resume at the next message line
            self._restored_partial()
            return
        if self.mode == BODY:  # saved digest: continue the body where it was
            msg = self._cur_msg()
            assert msg is not None
            left, digest = st["body"]
            msg.digest = self.body_digest = BodyDigest.load(digest, self.cfg.max_decoded)
            self.body_left = left
            self.body_keep = False
            self.head_seen = self.line_ok = True
            self.conn = None
            self.started = False
            self._load_body()
            return
        if self.mode == MSG:
            self._reset_conn()
            self._prime()
            pos = 0
            for gpos, glen in st["gaps"]:
                if gpos > pos:
                    self.data(data[pos:gpos], 0, 0, replay=True)
                    pos = gpos
                self.gaps.append([gpos, glen])
                self.gap(glen, replay=True)
            self.data(data[pos:], 0, 0, replay=True)
        else:
            self.rec = bytearray(data)
            self.end = len(data)
            if self.mode in (TUNNEL, DONE):
                self.conn = None

    def _prime(self) -> None:
        pass

    def _load_body(self) -> None:
        pass

    def _restored_partial(self) -> None:
        self._give_up_cur({"restored_partial"})
        self.mode = RESYNC
        self.conn = None
        self.started = False
        self.skip_lf = True
        self.tags_next.add("restored_partial")
