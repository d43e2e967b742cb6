"""Names and byte patterns shared by the modules of the HTTP side machine.

Kept apart so that the side's parts (side.py and the modules it mixes in) and the
decoder (decoder.py) agree on one spelling of each mode without importing one another.
"""

from __future__ import annotations

import re

MSG, WAIT, RESYNC, TUNNEL, DONE, BODY = "msg", "wait", "resync", "tunnel", "done", "body"
CHUNK = "chunk"
GUESSED = "no_body_guessed"  # tag: no request known, taken as bodiless (a status line followed)
CHUNK_SIZE_SANITY = 1 << 62  # larger chunk sizes are overflow attacks, not bodies
CRLF = (10, 13)
BLANK = re.compile(rb"\n\r?\n")
CL_LINE = re.compile(rb"(?im)^content-length[ \t]*:([^\r\n]*)")
