"""Checks every resource's request values share: what JSON would carry wrongly, silently.

A shared module (resources never import one another): opportunities and leads both run
``check_json_value`` on the free-form values they send (custom fields, contacts).
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from .._exceptions import InvalidInputError

# Values JSON would carry wrongly without an error: msgspec writes NaN and infinity as null
# (which would clear the field), and a naive datetime without an offset (which Close reads as
# UTC, silently shifting it). Scalars of other types cost one isinstance check.
CONTAINERS = (list, tuple, dict, set, frozenset)
CHECKED = (float, dt.datetime, *CONTAINERS)
_SCALARS = frozenset({str, int, bool, type(None)})  # nothing inside them to check


def check_json_value(name: str, value: Any) -> None:
    """Reject NaN, infinities and naive datetimes anywhere inside ``value``, naming ``name``."""
    if value.__class__ is list:  # the usual: a multi-value field's ids or names, walked at once
        for node in value:
            if node.__class__ not in _SCALARS:
                break
        else:
            return
    stack = [value]
    seen: set[int] = set()  # a container met twice (shared, or a cycle) is walked once
    while stack:
        node = stack.pop()
        if isinstance(node, float):
            if not math.isfinite(node):
                raise InvalidInputError(
                    name, node, "must be a finite number (JSON has no NaN or infinity)"
                )
        elif isinstance(node, dt.datetime):
            if node.utcoffset() is None:
                raise InvalidInputError(name, node, "must be timezone-aware")
        elif isinstance(node, CONTAINERS) and id(node) not in seen:
            seen.add(id(node))
            stack.extend(node.values() if isinstance(node, dict) else node)
