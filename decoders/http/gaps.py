"""Holes in a side's bytes: absorbed when the body's framing spans them, else a loss.

An absorbed gap keeps the message (tag `gap`, the digest counts the bytes it never saw; h11,
when it reads the body, is fed `FILLER` that is never hashed); a loss gives up what is in
progress and resynchronises right after the hole (resync.py). The side (Side.gap) applies the
split decided here; how much of a body h11 frames comes from h11_access.skippable_body_bytes.
"""

from __future__ import annotations

from wirestream.decoders.http.body import PIECE

FILLER = bytes(PIECE)  # fed to h11 in pieces for absorbed bytes


def split_gap(length: int, room: int | None, length_known: bool) -> tuple[int, int]:
    """(absorbed, lost) bytes of a hole of `length` > 0 bytes inside a body of which `room`
    bytes are framed (None: read until close, any hole fits). A hole that runs past the end
    of a body of known length finishes that body with the bytes it missed; the rest is a
    loss at the next message. Otherwise a hole that does not fit is lost whole."""
    if room is None or 0 < length <= room:
        return length, 0
    if room and length_known:
        return room, length - room
    return 0, length
