"""One options table → its validated :class:`~harness._core.options.Options`, or one :class:`ConfigError` line.

Every table of an experiment (core tables, each component's options, loggers) is validated here, so every
bad value reads the same: the file, the table, the key, its value (a pasted key masked), what was expected
and the field's description; an unknown key lists the allowed ones.
"""
from __future__ import annotations

import json
import typing
from typing import Any, Mapping

from pydantic import ValidationError

from harness._core.errors import ConfigError, did_you_mean
from harness._core.options import Options
from harness._core.registry import Registry
from harness._core.secrets import scrub_data

_EXPECTED = {
    "float_parsing": "expected a number",
    "float_type": "expected a number",
    "int_parsing": "expected an integer",
    "int_type": "expected an integer",
    "int_from_float": "expected an integer",
    "bool_parsing": "expected true or false",
    "bool_type": "expected true or false",
    "string_type": "expected a string",
    "finite_number": "expected a finite number, not inf or nan",
    "missing": "is required",
}
_ARRAYS = {"tuple_type", "list_type", "set_type", "frozen_set_type"}  # pydantic's "Input should be a valid tuple"
_ITEM_EXAMPLES = {str: '["a", "b"]', int: "[1, 2]", float: "[0.5, 1.0]", bool: "[true, false]"}


def validate_options(model: type[Options], values: Mapping[str, Any], source: str, table: str,
                     registry: Registry | None = None) -> Options:
    """``model(**values)`` or one ConfigError naming file, table, key, expectation and allowed keys.

    With ``registry``, validators see ``{"registry", "source", "table"}`` as their validation context, so an
    options table can name other components (:func:`harness._core.building.validate_component_tables`).
    """
    context = {"registry": registry, "source": source, "table": table} if registry is not None else None
    try:
        return model.model_validate(dict(values), context=context)
    except ValidationError as err:
        raise ConfigError(_describe(err, model, values, source, table)) from None


def _describe(err: ValidationError, model: type[Options], values: Mapping[str, Any], source: str, table: str) -> str:
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(table)"
    allowed = ", ".join(model.model_fields) or "(none)"
    if first["type"] == "extra_forbidden":
        return f"{source}: [{table}] unknown key {key!r}{did_you_mean(key, model.model_fields)}. " \
               f"Allowed keys: {allowed}."
    if first["type"] == "value_error" and not first["loc"]:  # a whole-table check; its message names the fields
        return f"{source}: [{table}] {first['msg'].removeprefix('Value error, ')}."
    field_info = model.model_fields.get(str(first["loc"][0])) if first["loc"] else None
    hint = f" ({field_info.description})" if field_info and field_info.description else ""
    expected = _EXPECTED.get(first["type"], first["msg"][0].lower() + first["msg"][1:])
    if first["type"] == "literal_error":
        expected = "expected " + first["msg"].removeprefix("Input should be ")
    if first["type"] in _ARRAYS and len(first["loc"]) == 1 and field_info is not None:
        expected = f"expected an array (TOML: {key} = {_array_example(field_info.annotation)})"
    shown = f" = {_toml_repr(scrub_data(values[key], key))}" if key in values else ""  # a pasted key is never echoed
    return f"{source}: [{table}] {key}{shown}: {expected}{hint}."


def _array_example(annotation: Any) -> str:
    """A TOML array of the field's item type (``tuple[str, ...]`` → ``["a", "b"]``), to show how one is written."""
    for arg in typing.get_args(annotation):  # tuple[str, ...] → (str, Ellipsis); a union → its members
        if typing.get_origin(arg) is typing.Literal:
            return json.dumps(list(typing.get_args(arg)[:2]))  # JSON arrays of scalars are TOML arrays
        if isinstance(arg, type) and arg in _ITEM_EXAMPLES:
            return _ITEM_EXAMPLES[arg]
        if typing.get_args(arg):
            return _array_example(arg)
    return "[...]"


def _toml_repr(value: Any) -> str:
    """How the user wrote it: ``true``, not ``True``."""
    return str(value).lower() if isinstance(value, bool) else repr(value)
