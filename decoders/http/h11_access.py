"""Every access to h11's private internals, in one place (checked against h11==0.16.0, the
version pinned in pyproject.toml; tests/test_http_structure.py fails if any other module
imports `h11._*` or touches an underscore attribute of an h11 object, and checks that the
installed h11 is the one these functions were read against).

Why each is needed (h11's public API has no equivalent):
- `buffered`: how many bytes h11 holds unparsed (`Connection._receive_buffer`). The public
  `trailing_data` copies the whole buffer, which would make long pipelines quadratic; the
  side needs the count after every event to know where h11 stopped reading.
- `content_length_left`, `reads_content_length`: the bytes left of a Content-Length body
  (`ContentLengthReader._remaining`). The side takes such a body over from h11 (bypass.py:
  a body segment costs a hash update, not an h11 event) and a gap inside it is absorbed.
- `chunk_left`, `set_chunk_left`: the bytes left of the current chunk
  (`ChunkedReader._bytes_in_chunk`, `_bytes_to_discard`). The rest of a chunk bypasses h11,
  and the reader is put back where it would be when the countdown ends or is interrupted;
  a chunk size beyond any real body is caught before h11 hands out its data.
- `skippable_body_bytes`: how many lost bytes the current body's framing spans
  (`ContentLengthReader._remaining`, `ChunkedReader` fields, `Http10Reader`), so a gap is
  absorbed instead of treated as a loss.
"""

from __future__ import annotations

import h11
from h11._readers import ChunkedReader, ContentLengthReader, Http10Reader

H11_VERSION = "0.16.0"  # the version the functions below were checked against


def _reader(conn: h11.Connection | None) -> object:
    return getattr(conn, "_reader", None)


def buffered(conn: h11.Connection) -> int:
    """Bytes h11 holds unparsed."""
    return len(conn._receive_buffer)


def content_length_left(conn: h11.Connection | None) -> int:
    """Bytes left of the Content-Length body h11 is reading (0: not reading one)."""
    r = _reader(conn)
    return r._remaining if type(r) is ContentLengthReader else 0


def reads_content_length(conn: h11.Connection | None) -> bool:
    """h11 is reading a Content-Length body."""
    return type(_reader(conn)) is ContentLengthReader


def chunk_left(conn: h11.Connection | None) -> int:
    """Bytes left of the chunk h11 is reading (0: not inside a chunk's data)."""
    r = _reader(conn)
    return r._bytes_in_chunk if type(r) is ChunkedReader else 0


def set_chunk_left(conn: h11.Connection, left: int) -> None:
    """Put the chunked reader where it would be with `left` bytes of the chunk to come
    (0: the chunk's data is done and its CRLF is expected, as h11 after the last byte)."""
    r = conn._reader
    assert type(r) is ChunkedReader
    r._bytes_in_chunk = left
    if not left:
        r._bytes_to_discard = b"\r\n"


def skippable_body_bytes(conn: h11.Connection | None) -> int | None:
    """Bytes of the current body whose framing is known (a gap this size can be skipped);
    None: unlimited (a read-until-close body); 0: none (h11 holds unparsed bytes, or it is
    not inside body data)."""
    if conn is None or buffered(conn):
        return 0
    r = _reader(conn)
    try:
        if isinstance(r, ContentLengthReader):
            return r._remaining
        if isinstance(r, ChunkedReader):
            if r._reading_trailer or r._bytes_to_discard:
                return 0
            return r._bytes_in_chunk
        if isinstance(r, Http10Reader):
            return None
    except AttributeError:
        return 0
    return 0
