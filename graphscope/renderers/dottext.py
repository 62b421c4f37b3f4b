"""DOT text: quoted strings and sorted attribute lists, so names cannot break the DOT or the
SVG and output never depends on insertion order."""

from __future__ import annotations


class LeftText(str):
    """A label whose lines are left-aligned (written with DOT's `\\l` line ends)."""


def quote(text: str) -> str:
    """A DOT double-quoted string; `&` is escaped so Graphviz never reads an entity from a name."""
    escaped = (
        text.replace("&", "&amp;").replace("\\", "\\\\").replace('"', '\\"')
        .replace("\r\n", "\n").replace("\r", "\n")
    )
    if isinstance(text, LeftText):
        return '"' + escaped.replace("\n", "\\l") + '\\l"'
    return '"' + escaped.replace("\n", "\\n") + '"'


def attributes(attrs: dict[str, str]) -> str:
    """`[a="1", b="2"]` with keys sorted, so output never depends on insertion order."""
    return "[" + ", ".join(f"{key}={quote(attrs[key])}" for key in sorted(attrs)) + "]"
