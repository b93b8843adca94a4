"""Where each element of the top-level arrays of a JSON document starts (1-based line), so a
bad record in a grid file can be reported by line as well as by position."""

from __future__ import annotations

import json
import re

_WS = re.compile(r"[ \t\n\r]*")
_decoder = json.JSONDecoder()


def _skip(text: str, i: int) -> int:
    m = _WS.match(text, i)
    return m.end() if m else i


def element_lines(text: str) -> dict[str, list[int]]:
    """{key: [line of element 0, line of element 1, ...]} for every top-level array value.
    Expects valid JSON (parse it with json.loads first); returns {} for a non-object."""
    lines: dict[str, list[int]] = {}
    counted, line = 0, 1  # newlines are counted incrementally: one pass over the text

    def line_at(pos: int) -> int:
        nonlocal counted, line
        line += text.count("\n", counted, pos)
        counted = pos
        return line

    i = _skip(text, 0)
    if not text.startswith("{", i):
        return lines
    i = _skip(text, i + 1)
    while i < len(text) and text[i] != "}":
        key, i = _decoder.raw_decode(text, i)
        i = _skip(text, _skip(text, i) + 1)  # past ':'
        if text.startswith("[", i):
            starts: list[int] = []
            i = _skip(text, i + 1)
            while text[i] != "]":
                starts.append(line_at(i))
                _, i = _decoder.raw_decode(text, i)
                i = _skip(text, i)
                if text[i] == ",":
                    i = _skip(text, i + 1)
            i += 1
            lines[str(key)] = starts
        else:
            _, i = _decoder.raw_decode(text, i)
        i = _skip(text, i)
        if i < len(text) and text[i] == ",":
            i = _skip(text, i + 1)
    return lines
