"""JSON encoded the way Go's ``encoding/json.Marshal`` does it.

Helm builds its chart config and manifest with ``json.Marshal``; reproducing those bytes
exactly (so digests match Helm's) needs Go's choices: no whitespace, struct fields in
declaration order (the caller builds dicts in that order), map keys sorted (the caller sorts
them), UTF-8 left as is, and ``<``, ``>``, ``&``, U+2028 and U+2029 escaped as ``\\uXXXX``.
"""

from __future__ import annotations

import json
from typing import Any

_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028",
               "\u2029": "\\u2029"}


def go_marshal(value: Any) -> bytes:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    for char, escape in _GO_ESCAPES.items():
        text = text.replace(char, escape)
    return text.encode("utf-8")


def sorted_map(mapping: dict[str, Any]) -> dict[str, Any]:
    """A Go ``map[string]...``: keys in byte order."""
    return {k: mapping[k] for k in sorted(mapping, key=lambda s: s.encode("utf-8"))}
