"""BodyDigest collects encoded bytes before it decodes them: its fields must not depend on how
a body was cut into pieces, also for corrupt streams, several gzip members and holes."""

from __future__ import annotations

import gzip
import hashlib
import itertools
import random
import zlib

import pytest

from wirestream.decoders.http.body import BATCH, BodyDigest


def _members(rng: random.Random) -> bytes:
    words = [b"alpha", b"beta", b"gamma", *(rng.randbytes(5) for _ in range(500))]
    text = b" ".join(rng.choice(words) for _ in range(30000))
    return gzip.compress(text[:70000]) + gzip.compress(rng.randbytes(9000))


def _fields(body: bytes, cuts: list[int], codings: list[str], hole: int | None = None) -> dict:
    """Fields of `body` fed in pieces cut at `cuts`; [hole, hole + 2000) is lost (skipped)."""
    d = BodyDigest(codings, 10 << 20)
    lost = (hole, hole + 2000) if hole is not None else (-1, -1)
    points = sorted({0, *cuts, len(body), *(x for x in lost if x >= 0)})
    for lo, hi in itertools.pairwise(points):
        if lost[0] <= lo < lost[1]:
            d.skip(hi - lo)
        else:
            d.feed(body[lo:hi])
    return {**d.fields(), "tags": d.tags()}


@pytest.mark.parametrize("case", ["clean", "corrupt", "deflate", "hole"])
def test_fields_do_not_depend_on_the_cuts(case: str) -> None:
    rng = random.Random(case)
    body, codings = _members(rng), ["gzip"]
    if case == "corrupt":
        at = len(body) // 3
        body = body[:at] + bytes([body[at] ^ 0xFF]) + body[at + 1 :]
    if case == "deflate":
        co = zlib.compressobj(6, zlib.DEFLATED, -15)
        body, codings = co.compress(rng.randbytes(5000) * 20) + co.flush(), ["deflate"]
    hole = 5000 if case == "hole" else None  # inside the first gzip member
    whole = _fields(body, [], codings, hole)
    kept = body if hole is None else body[:hole] + body[hole + 2000 :]
    assert whole["body_sha256"] == hashlib.sha256(kept).hexdigest()
    if case == "clean":  # the decoded hash is the hash of what gzip decodes (an oracle)
        assert whole["decoded_body_sha256"] == hashlib.sha256(gzip.decompress(body)).hexdigest()
    if case == "corrupt":
        assert "decode_error" in whole["tags"]
    if case == "hole":  # decoding stops at the hole: what the bytes before it decode to
        before = zlib.decompressobj(31).decompress(body[:hole])
        assert whole["decoded_body_sha256"] == hashlib.sha256(before).hexdigest()
    for sizes in ([1448], [1, 7, 300], [BATCH - 1, 5], [BATCH * 3]):
        cuts, at = [], 0
        while True:
            at += rng.choice(sizes)
            if at >= len(body):
                break
            cuts.append(at)
        assert _fields(body, cuts, codings, hole) == whole
