"""The Struct types ``custom.CustomDecoder`` decodes with: every key seen so far declared.

A ``_FastType`` is built once per (model, learned key set) and holds two decoders. The fast one
forbids unknown keys, requires a non-empty ``id`` and tz-aware datetimes, so one msgspec pass
proves that nothing was dropped; the lenient one (with a ``__dict__``) is the exact path's, for
the payload that failed the fast one. Attribute names come from the custom field ids where they
can shadow nothing (``_attr_name``). Typed custom fields a user declared on a subclass are
declared again with an UNSET default, so ``_fill_typed`` can tell "absent" from "present with
the default value". Only ``custom.py`` uses this module.

Datetimes: the fast type requires a time zone on every ``datetime`` field, which msgspec checks
while parsing at no measurable cost, so a timestamp without one fails the fast decode and takes
the exact path, which reads it as UTC (``_finish_exact``). That path costs 4-9x the fast one;
Close always sends zones, and fast types that accepted naive timestamps (to fix them afterwards)
would slow every aware payload by 7-30%, so naive ones stay on the exact path.
"""

from __future__ import annotations

import datetime as dt
import keyword
from collections.abc import Iterable
from typing import Annotated, Any, TypeVar, Union

import msgspec

from .._constants import CUSTOM_PREFIX as _PREFIX
from .._exceptions import DecodeError
from .base import CloseModel

_DATETIME = Union[dt.datetime, None]  # noqa: UP007 (compared with a field's resolved type)
_AWARE = Union[Annotated[dt.datetime, msgspec.Meta(tz=True)], None]  # noqa: UP007
_UNSET = msgspec.UNSET
# Bases are CustomFieldsModel subclasses, typed as CloseModel: custom.py is not imported back.
M = TypeVar("M", bound=CloseModel)


class _FastType:
    """Struct types declaring every key seen so far (and so every custom field), for one base.

    ``strict`` forbids unknown keys: that is how the fast path proves it dropped nothing, at no
    cost (an undeclared key, custom or not, escaped or not, makes msgspec raise). This is not a
    strict *response* model: on that error the decoder takes the exact path, which accepts the
    unknown key and learns it, so unknown fields still always decode.
    """

    def __init__(self, base: type[CloseModel], keys: Iterable[str]) -> None:
        base_fields = msgspec.structs.fields(base)
        declared = {f.encode_name for f in base_fields}
        # Typed custom fields a user declared on a subclass are declared again here with an
        # UNSET default, to tell "absent" from "present with the default value".
        typed = [f for f in base_fields if f.encode_name.startswith(_PREFIX)]
        self.typed = [(f.name, f.default, f.default_factory) for f in typed]
        keys = tuple(k for k in keys if k not in declared)
        self.keys = frozenset(keys)
        attrs = [_attr_name(k, i, base) for i, k in enumerate(keys)]
        fields: list[tuple[str, Any, Any]] = [(a, Any, _UNSET) for a in attrs]
        fields += [
            (
                f.name,
                Union[f.type, msgspec.UnsetType],  # noqa: UP007 (f.type may be a typing form)
                msgspec.field(default=_UNSET, name=f.encode_name),
            )
            for f in typed
        ]
        rename = dict(zip(attrs, keys, strict=True))
        # The exact path's type has a __dict__: room for custom keys no field can declare, and
        # for which typed custom fields were absent.
        lenient = msgspec.defstruct(
            base.__name__,
            fields,
            bases=(base,),
            rename=rename,
            kw_only=True,
            dict=True,
            gc=True,  # a __dict__ needs it, even where the user's base says gc=False
            module=base.__module__,
        )
        # The fast type also requires a non-empty id, so that check costs nothing either. It is
        # a sibling of the lenient type, not a subclass: without typed custom fields it needs no
        # __dict__ (which costs ~4% of a small decode), and its instances are not tracked by the
        # cycle collector (gc=False: ~5% faster to build and free, and less work for every
        # collection while thousands are held). Decoded JSON is a tree, so it has no cycles.
        # Its datetimes must carry a time zone too (free: a flag checked while parsing): a naive
        # one takes the exact path, which reads it as UTC.
        aware = [f for f in base_fields if f.type == _DATETIME]
        self.aware = tuple(f.name for f in aware)
        aware_fields = [
            (f.name, _AWARE, msgspec.field(default=f.default, name=f.encode_name)) for f in aware
        ]
        strict = msgspec.defstruct(
            base.__name__,
            [*fields, *aware_fields, ("id", Annotated[str, msgspec.Meta(min_length=1)])],
            bases=(base,),
            rename=rename,
            kw_only=True,
            forbid_unknown_fields=True,
            module=base.__module__,
            **_fast_options(base, typed=bool(typed)),
        )
        lenient._close_base = strict._close_base = base  # type: ignore[attr-defined]
        self.decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(strict)
        self.lenient: msgspec.json.Decoder[Any] = msgspec.json.Decoder(lenient)


def _fast_options(base: type[CloseModel], *, typed: bool) -> dict[str, Any]:
    """``dict``/``gc`` for the fast type: a __dict__ only to note absent typed fields, and
    untracked unless the user's base has a __dict__ or weak references (msgspec requires GC
    tracking for either)."""
    if typed:
        return {"dict": True, "gc": True}
    if base.__dictoffset__ or base.__weakrefoffset__:
        return {}
    return {"gc": False}


def _attr_name(key: str, index: int, base: type[CloseModel]) -> str:
    name = key[len(_PREFIX) :] if key.startswith(_PREFIX) else ""
    # A custom field id becomes the attribute name (it shows as cf_... in reprs, which is what
    # users recognise) unless it could shadow something: a name of the class, a keyword, or any
    # name starting with "_" (special methods, msgspec's and our own). Those get "_<index>"
    # names, which no id used as a name can collide with.
    usable = name.isidentifier() and not name.startswith("_") and not keyword.iskeyword(name)
    return name if usable and not hasattr(base, name) else f"_{index}"


def _finish_exact(opp: M, fast: _FastType, noun: str) -> M:
    """The exact path's object, made what the fast type gives: naive datetimes read as UTC
    (API.md promises tz-aware ones), absent typed custom fields given their defaults."""
    for name in fast.aware:
        when = getattr(opp, name)
        if when is not None and when.tzinfo is None:
            setattr(opp, name, when.replace(tzinfo=dt.timezone.utc))
    return _fill_typed(opp, fast, noun) if fast.typed else opp


def _fill_typed(opp: M, fast: _FastType, noun: str) -> M:
    """Give absent typed custom fields their declared default, and remember they were absent."""
    absent = []
    for name, default, factory in fast.typed:
        if getattr(opp, name) is _UNSET:
            absent.append(name)
            if default is not msgspec.NODEFAULT:
                setattr(opp, name, default)
            elif factory is not msgspec.NODEFAULT:
                setattr(opp, name, factory())
            else:
                raise DecodeError(
                    f"response is not {noun}: missing required custom field {name!r}",
                    body=msgspec.json.encode(opp),
                )
    if absent:
        opp.__dict__["_absent"] = absent
    return opp
