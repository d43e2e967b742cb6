"""The state directory of one `wirestream run` member: checked and claimed before anything
else, so that a directory that cannot be written, or one another process uses, is one clear
error at start (exit 2) rather than a failure after the member joined its group.

`<state-dir>/<application-id>/.lock` is held (flock) for the member's life, as Kafka
Streams locks its application directory: two members on one host must not share a state
directory (each would wait for the other's RocksDB locks). The file holds the owner's pid
for the error message; the lock itself goes away with the process, even on SIGKILL.
"""

from __future__ import annotations

import fcntl
import os

LOCK_NAME = ".lock"


class StateDirError(Exception):
    """The state directory cannot be used; the message names it and says what to do."""


class StateDirLock:
    def __init__(self, root: str, fd: int) -> None:
        self.root = root
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


def claim(state_dir: str, application_id: str) -> StateDirLock:
    """Create `<state_dir>/<application_id>` if needed, check it is writable, and lock it."""
    root = os.path.join(state_dir, application_id)
    try:
        os.makedirs(root, exist_ok=True)
        fd = os.open(os.path.join(root, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StateDirError(
            f"cannot use state directory {root}: {exc.strerror or exc}; choose a writable "
            "--state-dir (or WIRESTREAM_STATE_DIR), or fix its permissions"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        owner = _read_pid(fd)
        os.close(fd)
        who = f" (pid {owner})" if owner else ""
        raise StateDirError(
            f"state directory {root} is in use by another wirestream process{who}; stop "
            "it, or give each member on this host its own --state-dir"
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        if not os.access(root, os.W_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as exc:
        os.close(fd)
        raise StateDirError(
            f"cannot write to state directory {root}: {exc.strerror or exc}; choose a "
            "writable --state-dir (or WIRESTREAM_STATE_DIR), or fix its permissions"
        ) from None
    return StateDirLock(root, fd)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
