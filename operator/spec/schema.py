"""Declarative fields: one dataclass definition gives the parser, the OpenAPI schema and the docs.

The Study schema has three consumers (the CRD's `openAPIV3Schema`, the Python model, the
reference in docs/). Writing them by hand would let them drift, so each spec dataclass declares
its fields once with `spec_field(...)`; this module walks those declarations to
- parse a plain dict into the dataclass, collecting *every* problem with its field path,
- emit the structural OpenAPI v3 schema Kubernetes wants,
- list the fields for the generated reference.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types
import typing
from dataclasses import MISSING, dataclass
from typing import Any, Union

JSON_SCALARS = (str, int, float, bool)


@dataclass(frozen=True)
class FieldInfo:
    description: str
    json_name: str | None = None
    enum: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False
    min_items: int | None = None
    max_items: int | None = None
    min_properties: int | None = None
    max_properties: int | None = None
    pattern: str | None = None
    pattern_hint: str | None = None  # the reason given when `pattern` does not match
    max_length: int | None = None
    any_value: bool = False  # a JSON scalar of any type (categorical values, fixed values)
    embedded_object: bool = False  # e.g. a pod template: kept as-is, validated elsewhere
    required: bool = False


@dataclass(frozen=True)
class SpecError:
    """One problem with one field, rendered `path: reason` as `kubetune validate` prints it."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def spec_field(
    description: str,
    *,
    default: Any = MISSING,
    default_factory: Any = MISSING,
    **info: Any,
) -> Any:
    """Declare a spec field; without a default the field is required."""
    required = default is MISSING and default_factory is MISSING
    meta = {"spec": FieldInfo(description=description, required=required, **info)}
    if default_factory is not MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    if default is not MISSING:
        return dataclasses.field(default=default, metadata=meta)
    return dataclasses.field(metadata=meta)


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def field_info(f: dataclasses.Field[Any]) -> FieldInfo | None:
    """A field's declaration: `spec_field` metadata, or an algorithm setting's.

    The algorithms' settings classes (`kubetune.algorithms.settings`) are part of the Study
    schema but cannot import the operator, so they declare plain metadata, read here."""
    if "spec" in f.metadata:
        info: FieldInfo = f.metadata["spec"]
        return info
    if "setting" in f.metadata:
        declared = dict(f.metadata["setting"])
        required = f.default is MISSING and f.default_factory is MISSING
        return FieldInfo(required=required, **declared)
    return None


def json_name(f: dataclasses.Field[Any]) -> str:
    info = field_info(f)
    assert info is not None, f.name
    return info.json_name or camel(f.name)


def spec_fields(cls: type) -> list[tuple[dataclasses.Field[Any], FieldInfo, Any]]:
    """The declared fields of a spec dataclass with their metadata and resolved type hints."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        info = field_info(f)
        if info is not None:
            out.append((f, info, hints[f.name]))
    return out


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


# ---------------------------------------------------------------------------------------------
# Parsing


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    if value is None:
        return "null"
    return type(value).__name__


def _check_bounds(value: float, info: FieldInfo, path: str, errors: list[SpecError]) -> None:
    if info.minimum is not None:
        if info.exclusive_minimum and not value > info.minimum:
            errors.append(SpecError(path, f"must be > {_fmt(info.minimum)}, got {_fmt(value)}"))
        elif not info.exclusive_minimum and not value >= info.minimum:
            errors.append(SpecError(path, f"must be >= {_fmt(info.minimum)}, got {_fmt(value)}"))
    if info.maximum is not None:
        if info.exclusive_maximum and not value < info.maximum:
            errors.append(SpecError(path, f"must be < {_fmt(info.maximum)}, got {_fmt(value)}"))
        elif not info.exclusive_maximum and not value <= info.maximum:
            errors.append(SpecError(path, f"must be <= {_fmt(info.maximum)}, got {_fmt(value)}"))


def _fmt(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    return str(int(value)) if float(value).is_integer() else repr(float(value))


INT64_MAX = 2**63 - 1


def _parse_value(tp: Any, info: FieldInfo, value: Any, path: str, errors: list[SpecError]) -> Any:
    tp, _ = _strip_optional(tp)
    origin = typing.get_origin(tp)
    if info.embedded_object:
        if not isinstance(value, dict):
            errors.append(SpecError(path, f"must be an object, got {_type_name(value)}"))
            return None
        return value
    if info.any_value and tp is Any:
        if not isinstance(value, JSON_SCALARS):
            errors.append(
                SpecError(path, f"must be a string, number or boolean, got {_type_name(value)}")
            )
            return None
        return value
    if dataclasses.is_dataclass(tp):
        return parse_dataclass(typing.cast(type, tp), value, path, errors)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            errors.append(SpecError(path, f"must be a list, got {_type_name(value)}"))
            return None
        if info.min_items is not None and len(value) < info.min_items:
            errors.append(SpecError(path, f"must have at least {info.min_items} item(s)"))
        if info.max_items is not None and len(value) > info.max_items:
            errors.append(
                SpecError(path, f"must have at most {info.max_items} item(s), got {len(value)}")
            )
        item_info = dataclasses.replace(info, min_items=None, max_items=None)
        return [
            _parse_value(item_tp, item_info, item, f"{path}[{i}]", errors)
            for i, item in enumerate(value)
        ]
    if origin is dict:
        _, item_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            errors.append(SpecError(path, f"must be a mapping, got {_type_name(value)}"))
            return None
        if info.min_properties is not None and len(value) < info.min_properties:
            errors.append(SpecError(path, f"must have at least {info.min_properties} entry"))
        if info.max_properties is not None and len(value) > info.max_properties:
            errors.append(
                SpecError(
                    path, f"must have at most {info.max_properties} entries, got {len(value)}"
                )
            )
        item_info = dataclasses.replace(
            info, min_properties=None, max_properties=None, pattern=None
        )
        out = {}
        for key, item in value.items():
            if info.pattern and not re.fullmatch(info.pattern, str(key)):
                errors.append(SpecError(f"{path}.{key}", f"name must match {info.pattern}"))
            out[str(key)] = _parse_value(item_tp, item_info, item, f"{path}.{key}", errors)
        return out
    if tp is bool:
        if not isinstance(value, bool):
            errors.append(SpecError(path, f"must be a boolean, got {_type_name(value)}"))
            return None
        return value
    if tp is int:
        if isinstance(value, bool) or not (
            isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        ):
            errors.append(SpecError(path, f"must be an integer, got {_type_name(value)}"))
            return None
        value = int(value)
        if abs(value) > INT64_MAX:
            errors.append(SpecError(path, "must fit in a 64-bit integer"))
            return None
        _check_bounds(value, info, path, errors)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            errors.append(SpecError(path, f"must be a number, got {_type_name(value)}"))
            return None
        try:
            number = float(value)  # an int beyond the float range raises OverflowError
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            errors.append(SpecError(path, "must be a finite number"))
            return None
        _check_bounds(number, info, path, errors)
        return number
    if tp is str:
        if not isinstance(value, str):
            errors.append(SpecError(path, f"must be a string, got {_type_name(value)}"))
            return None
        if info.enum is not None and value not in info.enum:
            errors.append(SpecError(path, f"must be one of {', '.join(info.enum)}; got {value!r}"))
            return None
        if info.pattern and not re.fullmatch(info.pattern, value):
            hint = info.pattern_hint or f"must match {info.pattern}"
            errors.append(SpecError(path, f"{hint}; got {value!r}"))
        if info.max_length is not None and len(value) > info.max_length:
            errors.append(SpecError(path, f"must be at most {info.max_length} characters"))
        return value
    raise TypeError(f"unsupported spec field type {tp!r} at {path}")


def _has_none(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, list):
        return any(v is None for v in value)
    if isinstance(value, dict):
        return any(v is None for v in value.values())
    return False


def parse_dataclass(cls: type, data: Any, path: str, errors: list[SpecError]) -> Any:
    """Build `cls` from `data`, appending every problem to `errors`; None if unusable."""
    if not isinstance(data, dict):
        errors.append(SpecError(path, f"must be an object, got {_type_name(data)}"))
        return None
    fields = spec_fields(cls)
    known = {json_name(f): (f, info, tp) for f, info, tp in fields}
    for key in data:
        if key not in known:
            choices = ", ".join(sorted(known))
            errors.append(SpecError(f"{path}.{key}", f"unknown field (known: {choices})"))
    kwargs: dict[str, Any] = {}
    ok = True
    for name, (f, info, tp) in known.items():
        sub = f"{path}.{name}"
        if name not in data or data[name] is None:
            if info.required:
                errors.append(SpecError(sub, "required field is missing"))
                ok = False
            continue
        before = len(errors)
        value = _parse_value(tp, info, data[name], sub, errors)
        if len(errors) > before and _has_none(value):
            # Already reported. A required field makes the object unusable; an optional one
            # falls back to its default so the cross-field checks can still run on the rest.
            ok = ok and not info.required
            continue
        kwargs[f.name] = value
    if not ok:
        return None
    return cls(**kwargs)


# ---------------------------------------------------------------------------------------------
# OpenAPI v3 (structural, as Kubernetes requires for CRDs)


def _value_schema(tp: Any, info: FieldInfo) -> dict[str, Any]:
    tp, _ = _strip_optional(tp)
    origin = typing.get_origin(tp)
    schema: dict[str, Any]
    if info.embedded_object:
        schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    elif info.any_value and tp is Any:
        schema = {"x-kubernetes-preserve-unknown-fields": True}
    elif dataclasses.is_dataclass(tp):
        schema = dataclass_schema(typing.cast(type, tp))
    elif origin is list:
        (item_tp,) = typing.get_args(tp)
        item_info = dataclasses.replace(info, min_items=None, max_items=None)
        schema = {"type": "array", "items": _value_schema(item_tp, item_info)}
        if info.min_items is not None:
            schema["minItems"] = info.min_items
        if info.max_items is not None:
            schema["maxItems"] = info.max_items
    elif origin is dict:
        _, item_tp = typing.get_args(tp)
        item_info = dataclasses.replace(
            info, min_properties=None, max_properties=None, pattern=None
        )
        schema = {"type": "object", "additionalProperties": _value_schema(item_tp, item_info)}
        if info.min_properties is not None:
            schema["minProperties"] = info.min_properties
        if info.max_properties is not None:
            schema["maxProperties"] = info.max_properties
    elif tp is bool:
        schema = {"type": "boolean"}
    elif tp is int:
        schema = {"type": "integer"}
    elif tp is float:
        schema = {"type": "number"}
    elif tp is str:
        schema = {"type": "string"}
        if info.enum is not None:
            schema["enum"] = list(info.enum)
        if info.pattern is not None:
            schema["pattern"] = f"^{info.pattern}$"
        if info.max_length is not None:
            schema["maxLength"] = info.max_length
    else:
        raise TypeError(f"unsupported spec field type {tp!r}")
    if tp in (int, float):
        if info.minimum is not None:
            schema["minimum"] = info.minimum
            if info.exclusive_minimum:
                schema["exclusiveMinimum"] = True
        if info.maximum is not None:
            schema["maximum"] = info.maximum
            if info.exclusive_maximum:
                schema["exclusiveMaximum"] = True
    return schema


def dataclass_schema(cls: type) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    required: list[str] = []
    for f, info, tp in spec_fields(cls):
        name = json_name(f)
        prop = _value_schema(tp, info)
        prop["description"] = info.description
        if f.default is not MISSING and f.default is not None:
            prop["default"] = f.default
        properties[name] = prop
        if info.required:
            required.append(name)
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    rules = getattr(cls, "CEL_RULES", ())
    if rules:
        schema["x-kubernetes-validations"] = [{"rule": r, "message": m} for r, m in rules]
    doc = (cls.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
    if doc:
        schema["description"] = doc
    return schema


# ---------------------------------------------------------------------------------------------
# Reference docs


def field_rows(cls: type, prefix: str) -> list[tuple[str, str, str, str]]:
    """(path, type, default, description) for every field, depth first, for the reference page."""
    rows: list[tuple[str, str, str, str]] = []
    for f, info, tp in spec_fields(cls):
        path = f"{prefix}.{json_name(f)}"
        inner, _ = _strip_optional(tp)
        origin = typing.get_origin(inner)
        default = "required" if info.required else _default_text(f)
        rows.append((path, _type_text(inner, info), default, _describe(info)))
        if dataclasses.is_dataclass(inner):
            rows.extend(field_rows(typing.cast(type, inner), path))
        elif origin is list and dataclasses.is_dataclass(typing.get_args(inner)[0]):
            rows.extend(field_rows(typing.get_args(inner)[0], f"{path}[]"))
        elif origin is dict and dataclasses.is_dataclass(typing.get_args(inner)[1]):
            rows.extend(field_rows(typing.get_args(inner)[1], f"{path}.<name>"))
    return rows


def _default_text(f: dataclasses.Field[Any]) -> str:
    if f.default is not MISSING:
        return "" if f.default is None else f"`{json.dumps(f.default)}`"
    if f.default_factory is not MISSING:
        value = f.default_factory()
        if dataclasses.is_dataclass(value):
            return "(defaults below)"
        return f"`{json.dumps(value)}`"
    return ""


def _type_text(tp: Any, info: FieldInfo) -> str:
    origin = typing.get_origin(tp)
    if info.embedded_object:
        return "object (pod template)"
    if tp is Any:
        return "scalar"
    if dataclasses.is_dataclass(tp):
        return "object"
    if origin is list:
        return f"list of {_type_text(typing.get_args(tp)[0], FieldInfo(''))}"
    if origin is dict:
        return f"map of {_type_text(typing.get_args(tp)[1], FieldInfo(''))}"
    return {bool: "boolean", int: "integer", float: "number", str: "string"}.get(tp, str(tp))


def _describe(info: FieldInfo) -> str:
    parts = [info.description]
    if info.enum:
        parts.append("One of: " + ", ".join(f"`{e}`" for e in info.enum) + ".")
    bounds = []
    if info.minimum is not None:
        bounds.append(("> " if info.exclusive_minimum else "≥ ") + _fmt(info.minimum))
    if info.maximum is not None:
        bounds.append(("< " if info.exclusive_maximum else "≤ ") + _fmt(info.maximum))
    if bounds:
        parts.append("Bounds: " + ", ".join(bounds) + ".")
    if info.min_items:
        parts.append(f"At least {info.min_items} item(s).")
    if info.max_items is not None:
        parts.append(f"At most {info.max_items} item(s).")
    if info.max_properties is not None:
        parts.append(f"At most {info.max_properties} entries.")
    return " ".join(parts)
