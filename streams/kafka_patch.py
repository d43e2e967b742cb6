"""Methods of kafka-python's classes replaced together, only on the version they were
written against.

The member changes a few kafka-python 3.0.12 methods (streams/kafka_copies.py,
streams/kafka_python_fixes.py): each replacement is a copy of the library's method with one
change, so it is only right for that version. A `LibraryPatch` holds the replacements and
the originals: `install()` swaps them in (on another kafka-python version it changes
nothing and logs a warning), `uninstall()` puts the library's own back (tests compare both).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kafka
import structlog

log = structlog.get_logger("wirestream.kafka")

Replacement = tuple[type, str, Callable[..., Any]]  # (class, attribute, new function)


class LibraryPatch:
    def __init__(self, name: str, written_for: str, replacements: list[Replacement]) -> None:
        self.name = name
        self.written_for = written_for
        self._replacements = replacements
        self._originals = [(cls, attr, cls.__dict__[attr]) for cls, attr, _ in replacements]

    def install(self) -> None:
        """Idempotent; called by every client factory (streams/kafka_clients.py)."""
        if self.installed():
            return
        if kafka.__version__ != self.written_for:
            log.warning("kafka_python_unpatched", patch=self.name,
                        kafka_python=kafka.__version__, written_for=self.written_for)  # fmt: skip
            return
        for cls, attr, new in self._replacements:
            setattr(cls, attr, new)

    def uninstall(self) -> None:
        for cls, attr, original in self._originals:
            setattr(cls, attr, original)

    def installed(self) -> bool:
        return all(cls.__dict__[attr] is new for cls, attr, new in self._replacements)
