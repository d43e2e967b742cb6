"""Shared fixtures. Brokers (tests/brokers.py) start lazily, once per session, only when a
test asks for one; `broker` runs a test on both noida-db and Tansu."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

try:
    from tests import brokers
except ImportError:  # pytest puts tests/ itself on sys.path when it is not a package
    import brokers


@pytest.fixture(scope="session")
def noida_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[brokers.Broker]:
    with brokers.running_broker("noida", tmp_path_factory.mktemp("noida")) as broker:
        yield broker


@pytest.fixture(scope="session")
def tansu_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[brokers.Broker]:
    with brokers.running_broker("tansu", tmp_path_factory.mktemp("tansu")) as broker:
        yield broker


@pytest.fixture(params=["noida", "tansu"])
def broker(request: pytest.FixtureRequest) -> brokers.Broker:
    """The test runs once per broker implementation."""
    return request.getfixturevalue(f"{request.param}_broker")
