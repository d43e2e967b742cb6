"""The test broker's launcher (devkafka/): pure parts, no JVM."""

from __future__ import annotations

import base64

from devkafka.broker import _cluster_id


def test_cluster_ids_are_kafka_uuids_the_storage_tool_accepts() -> None:
    """22 URL-safe base64 characters of 16 bytes, never starting with '-' (taken for an
    option by StorageTool's parser): 4000 draws meet a leading '-' with ~1 - (63/64)^4000."""
    for _ in range(4000):
        text = _cluster_id()
        assert len(text) == 22 and not text.startswith("-")
        assert len(base64.urlsafe_b64decode(text + "==")) == 16
