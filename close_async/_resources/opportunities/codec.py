"""JSON in and out for opportunities: the request encoder and the fast Opportunity decoder.

The decoder is ``custom.CustomDecoder`` for ``Opportunity`` (one pass, every ``custom.*`` key
kept: see that module); ``decode_opportunity`` is the module decoder's own ``decode``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any, Protocol, TypeVar, overload

import msgspec

from ..._constants import CUSTOM_PREFIX as _PREFIX
from ..._exceptions import InvalidInputError
from ..custom import CustomDecoder, share
from .requests import CreateOpportunity
from .responses import Opportunity

OpportunityT = TypeVar("OpportunityT", bound=Opportunity)

_encoder = msgspec.json.Encoder()
_UNSET = msgspec.UNSET


def encode_create(item: CreateOpportunity) -> bytes:
    """The request body: declared fields (unset ones left out) plus flat ``custom.cf_*`` keys.

    A value JSON cannot carry (an arbitrary object, a lone surrogate in a string, a dict with
    tuple keys, nesting deeper than ~1,000 levels) raises ``InvalidInputError`` naming its field.
    """
    try:
        return _encode(item)
    # Whatever msgspec refuses: TypeError, UnicodeEncodeError, RecursionError, or an error from
    # a user's container while it is read. Encoding has no side effects, so none is lost.
    except Exception as exc:
        raise _unencodable(item, exc) from exc


def _encode(item: CreateOpportunity) -> bytes:
    if not item.custom:
        return _encoder.encode(item)
    custom = _encoder.encode({_PREFIX + k: v for k, v in item.custom.items()})
    # A shallow copy without the custom dict (copy, not structs.replace: that would validate again).
    bare = copy.copy(item)
    bare.custom = {}
    body = _encoder.encode(bare)
    if body == b"{}":
        return custom
    return body[:-1] + b"," + custom[1:]


def _unencodable(item: CreateOpportunity, exc: Exception) -> InvalidInputError:
    """The error naming the first field whose value cannot be encoded (on the failure path only:
    each field is encoded again on its own to find it)."""
    try:
        for name, value, wire in _wire_parts(item):
            try:
                _encoder.encode(wire)
            except Exception as err:
                return InvalidInputError(name, value, f"cannot be sent as JSON ({_reason(err)})")
    except Exception:  # a container that fails to be read again: name the item as a whole
        pass
    return InvalidInputError("item", item, f"cannot be sent as JSON ({_reason(exc)})")


def _wire_parts(item: CreateOpportunity) -> Iterable[tuple[str, Any, Any]]:
    """``(field name, value, what is encoded)`` for every part of the body, finest first."""
    for field in msgspec.structs.fields(item):
        value = getattr(item, field.name)
        if value is _UNSET or field.name == "custom":
            continue
        if isinstance(value, dict):
            for key, sub in value.items():
                yield f"{field.name}.{key}", sub, {key: sub}
        elif isinstance(value, list):
            for i, sub in enumerate(value):
                yield f"{field.name}[{i}]", sub, sub
        yield field.name, value, value
    for key, value in item.custom.items():
        yield f"custom.{key}", value, {_PREFIX + key: value}


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class DecodeOpportunity(Protocol):
    """The signature of ``decode_opportunity`` (and of every ``OpportunityDecoder().decode``)."""

    @overload
    def __call__(self, data: bytes | str, type: None = None) -> Opportunity: ...
    @overload
    def __call__(self, data: bytes | str, type: type[OpportunityT]) -> OpportunityT: ...
    def __call__(self, data: bytes | str, type: type[Opportunity] | None = None) -> Opportunity:
        """Decode one Opportunity JSON document, keeping every ``custom.*`` key in ``.custom``;
        ``type=`` a subclass of ``Opportunity`` for typed custom fields. Raises ``DecodeError``.
        (The reference documents it in full, under ``decode_opportunity``.)
        """
        ...


class OpportunityDecoder(CustomDecoder[Opportunity]):
    """Decodes Opportunity responses (or a subclass with typed custom fields) in one pass."""

    # Narrower than the base's Decode[Opportunity] (whose type= takes any CustomFieldsModel):
    # type= here is Opportunity or a subclass of it, which mypy then checks at the call.
    decode: DecodeOpportunity  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__(Opportunity)
        self.decode.__doc__ = DecodeOpportunity.__call__.__doc__


_decoder = OpportunityDecoder()
share(_decoder)  # the decoder that unpickles and copies Opportunities


decode_opportunity: DecodeOpportunity = _decoder.decode
"""Decode one Opportunity JSON document, keeping every ``custom.*`` key in ``.custom``.

``decode_opportunity(data: bytes | str, type: type[T] | None = None) -> T``, where ``T`` is
``Opportunity`` or the subclass given. Pass ``type=`` a subclass of ``Opportunity`` with fields
renamed to ``custom.cf_...`` to get those custom fields as typed attributes (they are in
``.custom`` too). Raises ``DecodeError`` (keeping the raw body) if it is not an Opportunity.

It is the module decoder's own ``decode``, a closure: the hot path costs one Python call.
"""
