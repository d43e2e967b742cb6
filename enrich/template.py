"""URL templates: `http://host/asset/{server.ip}` filled from a record's fields."""

from __future__ import annotations

import string
from typing import Any
from urllib.parse import quote


class TemplateError(ValueError):
    """The record lacks a field the template needs (or it is not a scalar)."""


class UrlTemplate:
    """Literal text and `{dotted.path}` fields (`{{`, `}}` for braces). Values are
    percent-encoded whole (a `/` in a value cannot change the path)."""

    def __init__(self, template: str) -> None:
        self.template = template
        self.parts: list[tuple[str, tuple[str, ...] | None]] = []
        try:
            parsed = list(string.Formatter().parse(template))
        except ValueError as exc:
            raise ValueError(f"bad URL template {template!r}: {exc}") from None
        for literal, field, spec, conversion in parsed:
            if literal:
                self.parts.append((literal, None))
            if field is None:
                continue
            if not field or spec or conversion:
                raise ValueError(f"bad URL template field {{{field}}}: use {{a.b.c}} only")
            self.parts.append(("", tuple(field.split("."))))
        if not any(path for _, path in self.parts):
            raise ValueError(f"URL template {template!r} has no {{field}}")

    def render(self, record: dict[str, Any]) -> str:
        out = []
        for literal, path in self.parts:
            if path is None:
                out.append(literal)
                continue
            value: Any = record
            for name in path:
                if isinstance(value, dict) and name in value:
                    value = value[name]
                elif isinstance(value, list) and name.isdigit() and int(name) < len(value):
                    value = value[int(name)]
                else:
                    raise TemplateError(f"missing field {'.'.join(path)}")
            if value is None or isinstance(value, (dict, list)):
                raise TemplateError(f"field {'.'.join(path)} is not a scalar")
            if isinstance(value, bool):
                value = "true" if value else "false"
            out.append(quote(str(value), safe=""))
        return "".join(out)
