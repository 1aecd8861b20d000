"""Strict scalar types for options: TOML's ``true`` is not the integer 1, ``"off"`` is not false.

pydantic's lax mode coerces ``steps = true`` to 1 and ``adaptive_kl = "off"`` to False, and its
strict mode would also refuse the integer ``1`` for a float field (TOML writes ``lr = 1`` as an
integer). The rule here, applied to every options field before pydantic sees the value:

- a ``bool`` field takes only ``true``/``false``;
- an ``int`` field takes no bool and no string;
- a ``float`` field takes integers and floats, no bool and no string.

Fields whose type admits a string or anything else (unions with ``str``, models, lists) are
left to pydantic.
"""
from __future__ import annotations

import types
import typing
from functools import lru_cache

from pydantic_core import PydanticCustomError

MESSAGES = {"bool_type": "Input should be a valid boolean", "int_type": "Input should be a valid integer",
            "float_type": "Input should be a valid number"}


@lru_cache(maxsize=None)
def scalar_kind(annotation) -> str | None:
    """'bool', 'int' or 'float' when the field holds exactly that scalar (optionally None); else None."""
    args = [a for a in _union_args(annotation) if a is not type(None)]
    if args == [bool]:
        return "bool"
    if set(args) <= {int, float} and args:
        return "float" if float in args else "int"
    return None


def _union_args(annotation) -> tuple:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _union_args(typing.get_args(annotation)[0])
    if origin is typing.Union or origin is types.UnionType:
        return tuple(a for arg in typing.get_args(annotation) for a in _union_args(arg))
    return (annotation,)


def check_strict(annotation, value):
    """``value`` unchanged, or a pydantic error when its TOML type is not the field's."""
    kind = scalar_kind(annotation)
    if kind is None or value is None:
        return value
    if kind == "bool":
        ok = isinstance(value, bool)
    else:
        ok = isinstance(value, (int, float) if kind == "float" else int) and not isinstance(value, bool)
    if not ok:
        error = f"{kind}_type"
        raise PydanticCustomError(error, MESSAGES[error])
    return value
