"""wirestream replay vs third-party oracles, for every capture in fixtures/pcaps/manifest.json.

Expected values come from fixtures/pcaps/oracles/ only; tests/oracles.py chooses the reference per
capture (with reasons) and holds KNOWN_DIFFERENCES, the per-capture table of documented
differences, which become xfail marks here (strict unless listed in NOT_STRICT).
"""

from __future__ import annotations

import json

import pytest

try:
    from tests import oracles
except ImportError:  # pytest puts tests/ itself on sys.path when it is not a package
    import oracles


def _cases() -> list:
    cases = []
    for name in oracles.captures():
        for check in oracles.CHECKS:
            if not oracles.applicable(name, check):
                continue
            marks = []
            reason = oracles.known(name, check)
            if reason:
                strict = (name, check) not in oracles.NOT_STRICT
                marks.append(pytest.mark.xfail(reason=reason, strict=strict, raises=AssertionError))
            cases.append(pytest.param(name, check, id=f"{name}::{check}", marks=marks))
    return cases


def _records(name: str) -> tuple[dict, ...]:
    return oracles.replay(name)


def test_manifest_lists_every_capture_with_its_oracles():
    names = oracles.captures()
    assert len(names) == len(set(names)) > 0
    on_disk = {p.name for p in oracles.PCAP_DIR.iterdir() if p.is_file()} - {
        "MANIFEST.md",
        "manifest.json",
        "README.md",
    }
    assert on_disk == set(names)
    for name in names:
        assert (oracles.ORACLE_DIR / name / "summary.json").exists(), name
        assert (oracles.ORACLE_DIR / name / "flows.jsonl").exists(), name


def test_known_differences_name_real_captures_and_checks():
    names = set(oracles.captures())
    for table in (
        oracles.KNOWN_DIFFERENCES,
        oracles.HTTP_SOURCE,
        oracles.RESPONSE_SOURCE,
        oracles.REQUEST_SOURCE,
        oracles.EXCLUDED_FLOWS,
    ):
        assert set(table) <= names
    for name, checks in oracles.KNOWN_DIFFERENCES.items():
        assert set(checks) <= set(oracles.CHECKS), name
        assert all(isinstance(r, str) and len(r) > 10 for r in checks.values()), name
        assert all(oracles.applicable(name, c) for c in checks), name
    for name, per_check in oracles.EXCLUDED_FLOWS.items():
        assert set(per_check) <= set(oracles.CHECKS), name
    for name, check in oracles.NOT_STRICT:
        assert check in oracles.KNOWN_DIFFERENCES.get(name, {}), (name, check)
    for name, (src, _) in oracles.STREAM_SOURCE.items():
        assert name in names
        assert src == "tcpflow" or src.removeprefix("twin:") in names


def test_every_ooo_mode_difference_has_a_written_decision():
    for name in oracles.captures():
        if oracles.load_oracle(name).summary["http_ooo_mode_differs"]:
            src, reason = oracles.HTTP_SOURCE.get(name, ("", ""))
            assert src in ("tshark", "tshark_ooo") and reason, name


def test_suricata_yaml_reader_drops_commented_expectations():
    checks = oracles.load_oracle("sv__http-gap-beyond-body__input.pcap").sv_checks
    http = [c["match"] for c in checks if c["match"].get("event_type") == "http"]
    assert [m.get("http.url") for m in http] == ["/1", "/2", "/3"]
    assert ["http.status" in m for m in http] == [True, False, False]


def _multiflow() -> list[str]:
    return [m["name"] for m in oracles.manifest() if "multiflow" in m["tags"].split()]


@pytest.mark.parametrize("capture", _multiflow())
def test_partitions_do_not_change_records(capture: str):
    """Flows spread over 4 virtual partitions must give the same records as one partition."""
    _records(capture)
    from wirestream.streams.replay import replay_records

    path = [str(oracles.capture_path(capture))]
    one = sorted(json.dumps(r, sort_keys=True) for r in replay_records(path))
    four = sorted(json.dumps(r, sort_keys=True) for r in replay_records(path, partitions=4))
    assert one == four


@pytest.mark.parametrize(("capture", "check"), _cases())
def test_oracle(capture: str, check: str):
    outcome = oracles.compare(capture, check, _records(capture))
    assert outcome.ok, f"{capture}: {outcome.explain()}"
