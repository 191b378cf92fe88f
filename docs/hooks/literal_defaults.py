"""A griffe extension for the API reference: signatures show values, not the names of constants.

``timeout: float = const.DEFAULT_TIMEOUT`` reads as ``timeout: float = 30``: a parameter default
that is a name (or a dotted name) is evaluated in its module and replaced by the value when that
is a plain literal (a number, a string, a bool or None; ``msgspec.UNSET`` reads ``UNSET``, "not
sent"). A dataclass field's default is treated the same way. An instance attribute's value that
is not a literal (``self.field = field``) is not shown: it is the code's, not the reader's.
Loaded by mkdocs.yml.
"""

from __future__ import annotations

import ast
import importlib
from typing import Any

import griffe
import msgspec

LITERALS = (bool, int, float, str, type(None))


def _literal(value: Any) -> str | None:
    if value is msgspec.UNSET:
        return "UNSET"
    if not isinstance(value, LITERALS):
        return None
    if isinstance(value, float) and value.is_integer():
        return repr(int(value))  # 30, as the guides write it, not 30.0
    return repr(value)


def _is_literal(source: str) -> bool:
    try:
        ast.literal_eval(source)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False
    return True


def _evaluated(expression: object, module: griffe.Module) -> str | None:
    """The literal that a name or dotted name stands for in ``module``, if it is one."""
    if not isinstance(expression, griffe.ExprName | griffe.ExprAttribute):
        return None
    try:  # a name or a dotted name, nothing else
        value = eval(str(expression), vars(importlib.import_module(module.path)))
    except Exception:  # not importable this way: leave the source as it is
        return None
    return _literal(value)


class LiteralDefaults(griffe.Extension):
    def on_function_instance(self, *, func: griffe.Function, **kwargs: Any) -> None:
        for parameter in func.parameters:
            literal = _evaluated(parameter.default, func.module)
            if literal is not None:
                parameter.default = literal

    def on_attribute_instance(self, *, attr: griffe.Attribute, **kwargs: Any) -> None:
        # A dataclass's field defaults become its __init__'s: evaluate them as defaults are.
        literal = _evaluated(attr.value, attr.module)
        if literal is not None:
            attr.value = literal
        elif (
            "instance-attribute" in attr.labels
            and "class-attribute" not in attr.labels  # a dataclass field's default stays
            and attr.value is not None
            and not _is_literal(str(attr.value))
        ):
            attr.value = None  # self.field = field
