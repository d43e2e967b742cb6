"""Hypothesis settings shared by the fuzz tests: bounded and reproducible in `make test`;
`WIRESTREAM_FUZZ_EXAMPLES=N` (make fuzz, fuzz/run_fuzz.py) runs N examples with a random
seed instead."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

FUZZ_EXAMPLES = int(os.environ.get("WIRESTREAM_FUZZ_EXAMPLES", "0"))


def fuzz(examples: int) -> settings:
    """`examples` derandomized examples normally; WIRESTREAM_FUZZ_EXAMPLES, that many with a
    random seed."""
    return settings(
        max_examples=FUZZ_EXAMPLES or examples,
        derandomize=not FUZZ_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
