"""`replay --extract-files DIR`: bodies written by the sha256 of their content, the same
objects tshark's --export-objects finds (fixtures oracle objects_tshark.jsonl), bounded in
size and count, and never outside DIR whatever the traffic names (Content-Disposition path
traversal, planted symlinks)."""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path

import pytest

from tests.test_http_support import (
    PCAPS,
    FakeCtx,
    canon,
    flow_info,
    req,
    resp,
    tcp_flows,
)
from wirestream.decoders.api import CLIENT, SERVER
from wirestream.decoders.http import HttpDecoder
from wirestream.runner import main
from wirestream.streams.files import FileStore
from wirestream.testing import apply, rechunk

JPEGS = PCAPS / "tcpflow__samplePcaps__jpegs.cap"


def _replay(tmp_path: Path, *extra: str) -> tuple[list[dict], Path]:
    out, files = tmp_path / "out.jsonl", tmp_path / "files"
    rc = main(
        [
            "replay",
            str(JPEGS),
            "--no-progress",
            "-o",
            str(out),
            "--extract-files",
            str(files),
            *extra,
        ]
    )
    assert rc == 0
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    return [r for r in recs if r["type"] == "http"], files


def _extracted(recs: list[dict]) -> list[str]:
    return [
        m["extracted"]
        for r in recs
        for m in (r["request"], r["response"])
        if m is not None and m.get("extracted")
    ]


def test_files_are_tsharks_objects_named_by_content(tmp_path: Path) -> None:
    recs, files = _replay(tmp_path)
    names = set(_extracted(recs))
    on_disk = {p.name for p in files.iterdir()}
    assert names == on_disk and len(names) >= 10
    for p in files.iterdir():
        assert hashlib.sha256(p.read_bytes()).hexdigest() == p.name
    oracle = PCAPS / "oracles" / JPEGS.name / "objects_tshark.jsonl"
    objects = [json.loads(line) for line in oracle.read_text().splitlines()]
    tshark = {o["sha256"] for o in objects if o["size"] > 0}
    assert len(tshark & names) >= 10  # tshark's exported objects, byte for byte
    # every non-empty object tshark exports that is one of our bodies was extracted
    bodies = {m["body_sha256"] for r in recs for m in (r["response"],) if m is not None}
    assert not ((tshark & bodies) - names)


def test_bounds(tmp_path: Path) -> None:
    recs, files = _replay(tmp_path, "--extract-max-files", "3", "--extract-max-bytes", "9000")
    sizes = [p.stat().st_size for p in files.iterdir()]
    assert len(sizes) == 3 and max(sizes) <= 9000
    big = [r["response"] for r in recs if r["response"] and (r["response"]["body_len"] or 0) > 9000]
    assert big and all(m["extracted"] is None for m in big)


def _disposition_flow(value: str) -> list:
    body = b"payload for " + value.encode()
    return [
        ("data", CLIENT, req("GET", "/dl"), 1),
        ("data", SERVER, resp(body=body, extra=f"Content-Disposition: {value}\r\n"), 2),
    ], body


@pytest.mark.parametrize(
    "value",
    [
        'attachment; filename="../../../../etc/cron.d/x"',
        "attachment; filename*=UTF-8''..%2F..%2F..%2Fevil.sh",
        'attachment; filename="/abs/path"',
        'attachment; filename="..\\\\..\\\\win.ini"',
    ],
)
def test_traffic_names_never_reach_the_file_system(tmp_path: Path, value: str) -> None:
    target = tmp_path / "box" / "files"
    store = FileStore(target, 1 << 20, 100)
    ctx = FakeCtx()
    ctx.store_file = store.store  # the runtime's capability, backed by the real store
    dec = HttpDecoder(ctx, {"extract_max_bytes": 1 << 20})
    events, body = _disposition_flow(value)
    for e in events:
        apply(dec, ctx, e)
    dec.on_close("fin")
    (rec,) = ctx.http()
    name = hashlib.sha256(body).hexdigest()
    assert rec["response"]["extracted"] == name
    everything = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert everything == ["box", "box/files", f"box/files/{name}"]
    assert "/" not in (rec["filename"] or "") and "\\" not in (rec["filename"] or "")


def test_planted_symlink_is_replaced_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"keep me")
    store = FileStore(tmp_path / "files", 1 << 20, 100)
    data = b"hello"
    name = hashlib.sha256(data).hexdigest()
    os.symlink(outside, tmp_path / "files" / name)
    assert store.store(data) == name
    assert outside.read_bytes() == b"keep me"
    assert not (tmp_path / "files" / name).is_symlink()
    assert (tmp_path / "files" / name).read_bytes() == data
    # a planted temporary name (O_EXCL) makes the write fail, it is not followed either
    other = b"other"
    oname = hashlib.sha256(other).hexdigest()
    os.symlink(outside, tmp_path / "files" / f".{oname}.{os.getpid()}.part")
    assert store.store(other) is None and store.errors == 1
    assert outside.read_bytes() == b"keep me"


def test_gap_or_oversize_body_is_not_extracted() -> None:
    store_calls: list[bytes] = []
    ctx = FakeCtx()
    ctx.store_file = lambda data: store_calls.append(data) or "x"
    dec = HttpDecoder(ctx, {"extract_max_bytes": 10})
    for e in [("data", CLIENT, req("GET", "/"), 1), ("data", SERVER, resp(body=b"y" * 11), 2)]:
        apply(dec, ctx, e)
    (rec,) = ctx.http()
    assert rec["response"]["extracted"] is None and store_calls == []  # empty, or too big


def test_restore_anywhere_extracts_the_same(tmp_path: Path) -> None:
    """Snapshot/restore at every event of real flows: the same records, `extracted`
    included (storing is idempotent), and the same files."""
    import msgpack

    opts = {"extract_max_bytes": 1 << 20, "md5": True}
    name = "own_nginx_keepalive_multi.pcap"
    rng = random.Random(name)
    for key, events in tcp_flows(PCAPS / name).items():
        chunks = rechunk(events, rng, max_chunk=1500)[:150]
        base_store = FileStore(tmp_path / "base", 1 << 20, 1000)
        ctx = FakeCtx(flow_info(key))
        ctx.store_file = base_store.store
        dec = HttpDecoder(ctx, opts)
        for e in chunks:
            apply(dec, ctx, e)
        base = canon(ctx.out)
        assert any('"extracted": "' in line for line in base)
        for at in range(0, len(chunks) + 1, 3):
            store = FileStore(tmp_path / f"at{at}", 1 << 20, 1000)
            ctx = FakeCtx(flow_info(key))
            ctx.store_file = store.store
            dec = HttpDecoder(ctx, opts)
            for e in chunks[:at]:
                apply(dec, ctx, e)
            blob = msgpack.packb(dec.snapshot(), use_bin_type=True)
            ctx2 = FakeCtx(flow_info(key), ctx.out)
            ctx2.ts_ns = ctx.ts_ns
            ctx2.store_file = store.store
            dec2 = HttpDecoder.restore(ctx2, opts, msgpack.unpackb(blob, raw=False))
            for e in chunks[at:]:
                apply(dec2, ctx2, e)
            assert canon(ctx2.out) == base, f"restore after event {at} changed the output"
            assert sorted(p.name for p in (tmp_path / f"at{at}").iterdir()) == sorted(
                p.name for p in (tmp_path / "base").iterdir()
            )
