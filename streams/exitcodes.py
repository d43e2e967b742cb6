"""How every command ends: one set of exit codes for replay, probe, run and enrich.

Scripts and supervisors branch on these numbers (README, docs/kafka-mode.md,
docs/hostile-input.md), so they are defined once and never reused for another meaning.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    # replay/probe: a capture was damaged (what came before is still processed);
    # run/enrich: the member failed (an unexpected fatal error).
    INPUT_ERROR = 1
    ERROR = 1  # alias of INPUT_ERROR, for commands without input files
    # a bad option, environment variable or config file key; a state directory in use
    USAGE = 2
    # brokers unreachable at start, or lost for longer than --reconnect-timeout
    BROKER = 3
    INTERRUPTED = 130  # SIGINT in the foreground (shell convention 128 + 2)


class UsageError(Exception):
    """A command line (or environment, or config file) that cannot do what it says: one
    line on stderr naming the option, exit 2."""
