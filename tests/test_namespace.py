"""One import namespace: the repository keeps the card's top-level folders, the installed
distribution exposes them as `wirestream.*` only (pyproject's package-dir), and plugins
import the stable paths `wirestream.api` and `wirestream.testing`."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import wirestream.api
from wirestream.decoders import api as contract
from wirestream.decoders import options

ROOT = Path(__file__).resolve().parent.parent
# The folders (and root modules) that become wirestream.*; the rest (tests, bench, fuzz,
# tools, devkafka) is development tooling and is not installed.
PACKAGES = ("decoders", "enrich", "probe", "reassembly", "state", "stats", "streams")
ROOT_MODULES = ("api.py", "runner.py", "testing.py")
FIXTURE = ROOT / "fixtures" / "pcaps" / "own_nginx_keepalive_multi.pcap"


def _tracked_python() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True)
    names = out.stdout.split() if out.returncode == 0 else []
    if not names:  # not a git checkout (an sdist): every .py outside the venv
        return [p for p in ROOT.rglob("*.py") if ".venv" not in p.parts]
    return [ROOT / n for n in names if not n.startswith("fixtures/") and (ROOT / n).exists()]


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def test_no_module_imports_the_old_top_level_names() -> None:
    """`import decoders` would load a second copy of a module next to wirestream.decoders
    (two registries, two classes that are not each other), and would be a plugin's own
    `decoders/` in an installed setup."""
    top = {*PACKAGES, "runner", "api", "testing"}
    offenders = [
        f"{path.relative_to(ROOT)}:{line} {module}"
        for path in _tracked_python()
        for line, module in _imported_modules(path)
        if module.split(".")[0] in top
    ]
    assert offenders == []


def test_plugins_and_their_docs_use_the_stable_paths_only() -> None:
    """The test plugin and docs/plugins.md's worked example are what plugin authors copy."""
    allowed = {"wirestream.api", "wirestream.testing"}
    plugin = [p for p in (ROOT / "tests" / "plugins").rglob("*.py")]
    used = {m for p in plugin for _, m in _imported_modules(p) if m.startswith("wirestream.")}
    doc = (ROOT / "docs" / "plugins.md").read_text()
    for line in doc.splitlines():
        if line.startswith("from wirestream.") and " import " in line:
            used.add(line.split()[1])
    assert used and used <= allowed, used - allowed


def test_the_api_names_are_the_contract_objects() -> None:
    for name in wirestream.api.__all__:
        obj = getattr(wirestream.api, name)
        assert obj is getattr(contract, name, None) or obj is getattr(options, name, None), name


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # Built from a copy: setuptools builds in the source tree and keeps what an earlier build
    # left in build/ (a module since moved would still be in the wheel).
    src = out / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in PACKAGES:
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    for name in (*ROOT_MODULES, "pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, src / name)
    cmd = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
           "--wheel-dir", str(out), str(src)]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=out)
    assert result.returncode == 0, result.stderr[-3000:]
    (path,) = out.glob("wirestream-*.whl")
    return path


def test_the_wheel_installs_one_name_with_every_module(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    dist_info = {t for t in tops if t.endswith(".dist-info")}
    assert tops - dist_info == {"wirestream"}
    expected = {f"wirestream/{m}" for m in ROOT_MODULES}
    for package in PACKAGES:
        expected |= {
            "wirestream/" + p.relative_to(ROOT).as_posix()
            for p in (ROOT / package).rglob("*.py")
            if "__pycache__" not in p.parts
        }
    modules = {n for n in names if n.endswith(".py")}
    assert modules == expected, (sorted(expected - modules), sorted(modules - expected))
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "wirestream = wirestream.runner:main" in text


def test_the_installed_wheel_replays_as_the_repository_does(wheel: Path, tmp_path: Path) -> None:
    """Outside the repository (no editable finder: python -S), from the wheel's files alone:
    nothing reads a path of the repository's layout."""
    target = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
           str(target), str(wheel)]  # fmt: skip
    assert subprocess.run(pip, capture_output=True, timeout=300).returncode == 0
    deps = sysconfig.get_paths()["purelib"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), deps])}
    args = ["replay", str(FIXTURE), "--no-progress", "--decoders", "http,tls,dns"]
    code = "import sys; from wirestream.runner import main; sys.exit(main(sys.argv[1:]))"
    installed = subprocess.run([sys.executable, "-S", "-c", code, *args], capture_output=True,
                               env=env, cwd=tmp_path, timeout=120)  # fmt: skip
    assert installed.returncode == 0, installed.stderr[-2000:]
    repo = subprocess.run([sys.executable, str(ROOT / "runner.py"), *args], capture_output=True,
                          cwd=ROOT, timeout=120)  # fmt: skip
    assert repo.returncode == 0, repo.stderr[-2000:]
    assert installed.stdout == repo.stdout and b'"type":"http"' in installed.stdout
