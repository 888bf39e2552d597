"""Stripe's form encoding: `a[b][0][c]=x` ⇄ nested dicts and lists.

The `stripe` library sends every POST body (and GET query) as
`application/x-www-form-urlencoded` with bracket nesting; list items carry their index (`[0]`),
and `[]` appends.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_SEGMENT = re.compile(r"\[([^\[\]]*)\]")


class FormDecodeError(ValueError):
    """Two fields disagree on the shape of one parameter (e.g. `a=1` and `a[b]=2`)."""

    def __init__(self, param: str) -> None:
        super().__init__(f"Invalid nesting for parameter: {param}")
        self.param = param


def decode_form(raw: bytes | str) -> dict[str, Any]:
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    root: dict[str, Any] = {}
    for key, value in parse_qsl(text, keep_blank_values=True):
        match = _KEY.match(key)
        # A key that is not `name[seg]...` is taken literally rather than refused.
        segments = [match.group(1), *_SEGMENT.findall(match.group(2))] if match else [key]
        _insert(root, segments, value, key)
    return _listify(root)


def _insert(root: dict[str, Any], segments: list[str], value: str, key: str) -> None:
    node = root
    for index, segment in enumerate(segments):
        if segment == "":
            # `[]` appends: number it after the items already there.
            segment = str(len(node))
        last = index == len(segments) - 1
        if last:
            if isinstance(node.get(segment), dict):
                raise FormDecodeError(key)
            node[segment] = value
        else:
            child = node.setdefault(segment, {})
            if not isinstance(child, dict):
                raise FormDecodeError(key)
            node = child


def _listify(node: Any) -> Any:
    """Turn every dict whose keys are all indices into a list ordered by index."""
    if not isinstance(node, dict):
        return node
    converted = {k: _listify(v) for k, v in node.items()}
    if converted and all(k.isdigit() for k in converted):
        return [converted[k] for k in sorted(converted, key=int)]
    return converted
