"""The HTTP/1.x decoder, one module per job (Zeek keeps one directory per analyzer; h11 one
private module per job). `decoders.http:HttpDecoder` is the plugin entry point
(pyproject.toml), so the package exports it; the map of the modules is in docs/architecture.md.
"""

from wirestream.decoders.http.decoder import HttpDecoder

__all__ = ["HttpDecoder"]
