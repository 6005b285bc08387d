"""YAML read the way Helm (Go, sigs.k8s.io/yaml) reads Chart.yaml: numbers keep their
text, timestamps stay strings, and scalars in string fields become the strings Go would
print."""

from __future__ import annotations

import math
import unicodedata
from decimal import Decimal
from typing import Any

import yaml

from cargohold.client.errors import ClientError
from cargohold.client.gojson import sorted_map


class GoNumber:
    """A YAML number, remembered so a string field can format it the way Go does."""

    def __init__(self, value: int | float) -> None:
        self.value = value


class _ChartLoader(yaml.SafeLoader):
    pass


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> GoNumber:
    return GoNumber(yaml.SafeLoader.construct_yaml_int(loader, node))


def _construct_float(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> GoNumber:
    return GoNumber(yaml.SafeLoader.construct_yaml_float(loader, node))


def _construct_raw(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> str:
    return str(node.value)


_ChartLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_ChartLoader.add_constructor("tag:yaml.org,2002:float", _construct_float)
_ChartLoader.add_constructor("tag:yaml.org,2002:timestamp", _construct_raw)


def go_format_float(value: float) -> str:
    """``strconv.FormatFloat(v, 'g', -1, 64)``: shortest digits, %e when exp < -4 or >= 6."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "-0" if math.copysign(1, value) < 0 else "0"
    sign = "-" if value < 0 else ""
    exact = Decimal(repr(abs(value))).as_tuple()
    raw_digits = "".join(str(d) for d in exact.digits)
    point = len(raw_digits) + int(exact.exponent)
    digits = raw_digits.rstrip("0") or "0"
    exp = point - 1
    if exp < -4 or exp >= 6:
        tail = digits[1:]
        mantissa = digits[0] + ("." + tail if tail else "")
        return f"{sign}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if point <= 0:
        return f"{sign}0.{'0' * (-point)}{digits}"
    if point >= len(digits):
        return f"{sign}{digits}{'0' * (point - len(digits))}"
    return f"{sign}{digits[:point]}.{digits[point:]}"


def go_string(value: Any, field: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, GoNumber):
        if isinstance(value.value, bool | int):
            return str(int(value.value))
        return go_format_float(float(value.value))
    if isinstance(value, str):
        return value
    raise ClientError(f"Chart.yaml: {field} must be a string, not {type(value).__name__}")


def go_string_list(value: Any, field: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ClientError(f"Chart.yaml: {field} must be a list")
    return [go_string(v, field) for v in value]


def go_bool(value: Any, field: str) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    raise ClientError(f"Chart.yaml: {field} must be true or false")


def plain(value: Any) -> Any:
    """Values of ``[]interface{}`` fields: numbers back to numbers, maps with sorted keys."""
    if isinstance(value, GoNumber):
        return value.value
    if isinstance(value, dict):
        return sorted_map({go_key(k): plain(v) for k, v in value.items()})
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def go_key(key: Any) -> str:
    if isinstance(key, GoNumber):
        return go_string(key, "key")
    if isinstance(key, bool):
        return "true" if key else "false"
    return str(key)


def sanitize(text: str) -> str:
    """Helm's sanitizeString: whitespace becomes ' ', non-printable runes are dropped."""
    out = []
    for char in text:
        if char.isspace() or char in "\u0085\u00a0":
            out.append(" ")
        elif char.isprintable() or unicodedata.category(char) == "Zs":
            out.append(char)
    return "".join(out)


def load_yaml(text: str | bytes, where: str) -> Any:
    try:
        return yaml.load(text, Loader=_ChartLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        raise ClientError(f"{where} is not valid YAML{line}") from None

