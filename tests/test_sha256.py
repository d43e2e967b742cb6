"""ResumableSha256 against hashlib: small updates are collected before they are hashed, and
every read (digest, save, zeros) must see all of them, in order."""

from __future__ import annotations

import hashlib
import random

import pytest

from wirestream.reassembly import sha256 as mod
from wirestream.reassembly.sha256 import ResumableSha256

pytestmark = pytest.mark.skipif(mod._LIB is None, reason="libcrypto missing: nothing is collected")


def _pure() -> ResumableSha256:
    """The pure-Python implementation (never collects): the reference for save()."""
    h = ResumableSha256.__new__(ResumableSha256)
    h._parts, h._plen, h._ctx = [], 0, None
    h._h, h._length, h._tail = mod._IV, 0, b""
    return h


def test_collected_updates_match_hashlib_through_saves_and_zeros() -> None:
    rng = random.Random(7)
    h, ref, pure = ResumableSha256(), hashlib.sha256(), _pure()
    for step in range(150):
        roll = rng.random()
        if roll < 0.05:
            n = rng.randrange(1, 3 * mod.BATCH)
            h.update_zeros(n)
            ref.update(bytes(n))
            pure.update(bytes(n))
        else:
            size = rng.choice([0, 1, 63, 64, 1448, mod.BATCH - 1, mod.BATCH, 3 * mod.BATCH])
            data = rng.randbytes(size)
            # bytearray: collected as a copy, so changing it afterwards changes nothing
            buf = bytearray(data) if step % 7 == 0 else data
            h.update(buf)
            if isinstance(buf, bytearray):
                buf[:] = bytes(len(buf))
            ref.update(data)
            pure.update(data)
        if step % 13 == 0:
            state = h.save()
            assert state == pure.save()
            h = ResumableSha256.load(state)
        if step % 17 == 0:
            assert h.hexdigest() == ref.hexdigest()
    assert h.hexdigest() == ref.hexdigest() == pure.hexdigest()


def test_many_hashers_collecting_at_once() -> None:
    """More hashers than MAX_COLLECTING collect at once: some are hashed early, none lose or
    reorder bytes, and no more than MAX_COLLECTING of them hold bytes."""
    rng = random.Random(3)
    count = mod.MAX_COLLECTING + 300
    hs = [ResumableSha256() for _ in range(count)]
    refs = [hashlib.sha256() for _ in range(count)]
    for _ in range(3):
        for h, ref in zip(hs, refs, strict=True):
            data = rng.randbytes(rng.randrange(1, 600))
            h.update(data)
            ref.update(data)
        assert sum(1 for h in hs if h._parts) <= mod.MAX_COLLECTING
    assert [h.hexdigest() for h in hs] == [r.hexdigest() for r in refs]
