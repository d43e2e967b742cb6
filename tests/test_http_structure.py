"""Structure rules of the HTTP decoder (issue 14), checked on the source by an AST walk:

- h11's internals are touched in one module only, decoders/http/h11_access.py: no other
  module imports `h11._*` or reads/writes an underscore attribute that h11's objects have
  (the names are taken from live h11 objects, not listed by hand), and the installed h11
  is the version that module was checked against (pyproject.toml pins it).
- No mixins: no class of the HTTP decoder has more than one base besides `object` and the
  plugin/exception/tuple bases; a side HOLDS its parts (buffer.ByteBuffer, resync.Resync).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import h11
from h11._readers import ChunkedReader, ContentLengthReader, Http10Reader
from h11._receivebuffer import ReceiveBuffer

from wirestream.decoders.http import h11_access

ROOT = Path(__file__).resolve().parent.parent
ACCESS = ROOT / "decoders" / "http" / "h11_access.py"
SCANNED = ("decoders", "streams", "bench", "fuzz", "tests", "reassembly", "state")
THIS = Path(__file__).resolve()


def _sources() -> list[Path]:
    out: list[Path] = []
    for d in SCANNED:
        out += sorted((ROOT / d).rglob("*.py"))
    return [p for p in out if p.resolve() not in (ACCESS.resolve(), THIS)]


def _own_private_names(files: list[Path]) -> set[str]:
    """Underscore attributes the repo's own classes define (`self._x = ...`): those are not
    h11's, whatever their spelling."""
    names: set[str] = set()
    for p in files:
        for node in ast.walk(ast.parse(p.read_text(), str(p))):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.ctx, ast.Store)
                and isinstance(node.value, ast.Name)
                and node.value.id in ("self", "cls")
            ):
                names.add(node.attr)
    return names


def _h11_private_names() -> set[str]:
    objs = [h11.Connection(h11.CLIENT), ChunkedReader(), ContentLengthReader(5), Http10Reader()]
    objs.append(ReceiveBuffer())
    return {k for o in objs for k in vars(o) if k.startswith("_")}


def h11_internal_uses(files: list[Path], root: Path = ROOT) -> list[str]:
    private = _h11_private_names() - _own_private_names(files)
    assert {"_reader", "_receive_buffer", "_bytes_in_chunk", "_remaining"} <= private
    hits = []
    for p in files:
        rel = p.relative_to(root)
        for node in ast.walk(ast.parse(p.read_text(), str(p))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("h11._"):
                hits.append(f"{rel}:{node.lineno} from {node.module} import")
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.startswith("h11._"):
                        hits.append(f"{rel}:{node.lineno} import {a.name}")
            elif isinstance(node, ast.Attribute) and node.attr in private:
                hits.append(f"{rel}:{node.lineno} .{node.attr}")
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "setattr", "hasattr")
                and len(node.args) > 1
                and isinstance(node.args[1], ast.Constant)
                and node.args[1].value in private
            ):
                hits.append(f"{rel}:{node.lineno} {node.func.id}(..., {node.args[1].value!r})")
    return hits


def test_h11_internals_only_in_h11_access() -> None:
    assert h11_internal_uses(_sources()) == []


def test_the_walk_finds_h11_internals(tmp_path: Path) -> None:
    """The check itself can fail: each kind of access it must catch is caught."""
    p = tmp_path / "bad.py"
    p.write_text(
        "from h11._readers import ChunkedReader\n"
        "import h11._util\n"
        "def f(conn):\n"
        "    n = len(conn._receive_buffer)\n"
        "    conn._reader._bytes_in_chunk = 0\n"
        "    return getattr(conn, '_reader', None)\n"
    )
    hits = h11_internal_uses([p], root=tmp_path)
    assert len(hits) == 6, hits


def test_h11_is_the_version_h11_access_was_checked_against() -> None:
    assert h11.__version__ == h11_access.H11_VERSION
    pins = re.findall(r'"h11==([^"]+)"', (ROOT / "pyproject.toml").read_text())
    assert pins == [h11_access.H11_VERSION]


ALLOWED_BASES = {"object", "Decoder", "Exception", "NamedTuple", "Generic", "Protocol"}


def http_modules(root: Path = ROOT) -> list[Path]:
    """The HTTP decoder's modules, in the package or (older layout) flat in decoders/."""
    d = root / "decoders"
    return sorted((d / "http").glob("*.py")) + sorted(d.glob("http*.py"))


def _base_name(node: ast.expr) -> str:
    if isinstance(node, ast.Subscript):
        node = node.value
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ast.unparse(node)


def mixin_classes(files: list[Path], root: Path = ROOT) -> list[str]:
    hits = []
    for p in files:
        for node in ast.walk(ast.parse(p.read_text(), str(p))):
            if isinstance(node, ast.ClassDef):
                bases = [b for b in map(_base_name, node.bases) if b not in ALLOWED_BASES]
                if len(bases) > 1:
                    hits.append(f"{p.relative_to(root)}:{node.lineno} {node.name}{tuple(bases)}")
    return hits


def test_no_mixins_in_the_http_decoder() -> None:
    files = http_modules()
    assert len(files) >= 10  # the walk sees the package
    assert mixin_classes(files) == []


def test_the_walk_finds_mixins(tmp_path: Path) -> None:
    p = tmp_path / "bad.py"
    p.write_text(
        "class A(Decoder): ...\n"
        "class B(Exception): ...\n"
        "class Side(Buffer, Bypass, Gaps): ...\n"
        "class C(x.Mixin, Generic[T], Other): ...\n"
    )
    assert [h.split()[1].split("(")[0] for h in mixin_classes([p], root=tmp_path)] == ["Side", "C"]
