"""The ECR API contract, taken from botocore's service model (service `ecr`, 2015-09-21).

Requests are validated against the same model botocore validates them with on the client:
types, required members, lengths and ranges (botocore's own validator), plus the patterns and
enums botocore leaves to the server.
"""

from __future__ import annotations

import re
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # botocore is imported on the first ECR request: 7 MiB a process otherwise
    from botocore.model import OperationModel, ServiceModel, Shape

TARGET_PREFIX = "AmazonEC2ContainerRegistry_V20150921"
JSON_CONTENT_TYPE = "application/x-amz-json-1.1"


class EcrError(Exception):
    """An ECR exception, rendered as `{"__type": name, "message": ...}`."""

    def __init__(self, name: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.name = name
        self.message = message
        self.status = status

    def body(self) -> dict[str, str]:
        return {"__type": self.name, "message": self.message}


def invalid_parameter(message: str) -> EcrError:
    return EcrError("InvalidParameterException", message)


@cache
def service_model() -> ServiceModel:
    import botocore.session

    return botocore.session.get_session().get_service_model("ecr")


def operation(name: str) -> OperationModel:
    """The model of an operation; UnknownOperationException when the model has none."""
    model = service_model()
    if name not in model.operation_names:
        raise EcrError("UnknownOperationException", f"unknown operation {name!r}")
    return model.operation_model(name)


def validate_request(op: OperationModel, params: Any) -> None:
    """Refuse a request that botocore's model would not produce, as ECR does."""
    if not isinstance(params, dict):
        raise EcrError("SerializationException", "the request body must be a JSON object")
    shape = op.input_shape
    if shape is None:
        return
    from botocore.validate import ParamValidator

    report = ParamValidator().validate(params, shape)
    if report.has_errors():
        raise invalid_parameter(report.generate_report())
    problems: list[str] = []
    _check_patterns(shape, params, shape.name, problems)
    if problems:
        raise invalid_parameter("; ".join(problems))


@cache
def _pattern(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _check_patterns(shape: Shape, value: Any, where: str, problems: list[str]) -> None:
    """The constraints botocore's client-side validator leaves out: patterns, enums, maxima."""
    maximum = shape.metadata.get("max")
    if shape.type_name == "structure" and isinstance(value, dict):
        for name, member in shape.members.items():  # type: ignore[attr-defined]
            if name in value:
                _check_patterns(member, value[name], f"{where}.{name}", problems)
    elif shape.type_name == "list" and isinstance(value, list):
        if maximum is not None and len(value) > maximum:
            problems.append(f"{where}: at most {maximum} items, not {len(value)}")
        for index, item in enumerate(value):
            _check_patterns(shape.member, item, f"{where}[{index}]", problems)  # type: ignore[attr-defined]
    elif shape.type_name == "map" and isinstance(value, dict):
        if maximum is not None and len(value) > maximum:
            problems.append(f"{where}: at most {maximum} entries, not {len(value)}")
        for key, item in value.items():
            _check_patterns(shape.key, key, f"{where} key", problems)  # type: ignore[attr-defined]
            _check_patterns(shape.value, item, f"{where}[{key}]", problems)  # type: ignore[attr-defined]
    elif shape.type_name == "string" and isinstance(value, str):
        if maximum is not None and len(value) > maximum:
            problems.append(f"{where}: at most {maximum} characters, not {len(value)}")
        enum = shape.enum
        if enum and value not in enum:
            problems.append(f"{where}: {value!r} is not one of {', '.join(enum)}")
        pattern = shape.metadata.get("pattern")
        if pattern and not _pattern(pattern).fullmatch(value):
            problems.append(f"{where}: {value!r} does not match {pattern}")
    elif shape.type_name in ("integer", "long") and isinstance(value, int):
        if maximum is not None and value > maximum:
            problems.append(f"{where}: at most {maximum}, not {value}")
    elif (shape.type_name == "blob" and isinstance(value, str) and maximum is not None
          and len(value) * 3 // 4 > maximum + 2):  # base64: four characters carry three bytes
        problems.append(f"{where}: at most {maximum} bytes")
