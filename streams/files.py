"""Extracted HTTP bodies on disk (`wirestream replay --extract-files DIR`): the I/O edge the
decoders reach through their context (`store_file`), never directly.

Each file is named by the sha256 of its content and nothing else, so no byte of the traffic
(a Content-Disposition file name, a URI) ever becomes part of a path: a file cannot be
written outside DIR. Writes go to a temporary name opened exclusively (O_EXCL: a planted
symlink makes it fail, not follow) and are renamed into place, so a reader never sees a
partial file and two workers writing the same content leave one file. Bounded: bodies over
`max_bytes` are not extracted (the decoder keeps at most that much), and at most `max_files`
files are written per partition task; refusals and write errors are counted.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


class FileStore:
    def __init__(self, directory: str | os.PathLike[str], max_bytes: int, max_files: int) -> None:
        self.dir = Path(directory).resolve()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.max_files = max_files
        self.written = 0
        self.refused = 0  # over a bound
        self.errors = 0  # the file system said no

    def store(self, data: bytes) -> str | None:
        """The file name holding `data` (written now, or already there), or None."""
        name = hashlib.sha256(data).hexdigest()
        path = self.dir / name
        if path.is_file() and not path.is_symlink():
            return name
        if len(data) > self.max_bytes or self.written >= self.max_files:
            self.refused += 1
            return None
        tmp = self.dir / f".{name}.{os.getpid()}.part"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0))
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except OSError:
            self.errors += 1
            try:
                tmp.unlink()
            except OSError:
                pass
            return None
        self.written += 1
        return name
