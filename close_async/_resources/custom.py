"""JSON in and out: the request encoder and the fast Opportunity decoder.

Custom fields travel as flat ``"custom.cf_<id>"`` keys that no static model can declare, and a
msgspec Struct silently drops keys it does not declare. Decoding twice (once to a dict to find them)
costs 3-4x. Instead we learn the top-level keys seen so far that no model declares, and decode with
a Struct type that declares them all (built once per key set and cached), in one pass. That type
forbids unknown keys, which proves for free that nothing was dropped: a key we have not seen yet,
however it is spelled (escaped, inside a nested object or not), makes the decode fail, and the
payload takes the exact path instead: decoded to a dict as well, keys learned, so the next payload
of that shape is fast again. Key names inside string values never matter: they are not keys.

Datetimes come out tz-aware (as API.md promises): the fast type also requires a time zone on every
``datetime`` field, which msgspec checks while parsing at no measurable cost, so a timestamp
without one fails the fast decode and takes the exact path, which reads it as UTC. That path costs
4-9x the fast one; Close always sends zones, and fast types that accepted naive timestamps (to fix
them afterwards) would slow every aware payload by 7-30%, so naive ones stay on the exact path.
"""

from __future__ import annotations

import copy
import datetime as dt
import keyword
import re
from collections.abc import Callable, Iterable
from typing import Annotated, Any, Protocol, TypeVar, Union, cast, overload

import msgspec

from .._constants import CUSTOM_PREFIX as _PREFIX
from .._exceptions import MSGSPEC_DECODE_ERRORS as _MSGSPEC_ERRORS
from .._exceptions import DecodeError, InvalidInputError
from .opportunities.responses import CreateOpportunity, Opportunity

OpportunityT = TypeVar("OpportunityT", bound=Opportunity)
Decode = Callable[[bytes | str], Any]

_encoder = msgspec.json.Encoder()
_dict_decoder = msgspec.json.Decoder(dict[str, Any])
_DATETIME = Union[dt.datetime, None]  # noqa: UP007 (compared with a field's resolved type)
_AWARE = Union[Annotated[dt.datetime, msgspec.Meta(tz=True)], None]  # noqa: UP007
_UNDECLARABLE = re.compile(r'[\\"\x00-\x1f]')
_UNSET = msgspec.UNSET
# Learning is bounded so a stream of ever-new keys cannot grow memory without limit.
MAX_LEARNED_KEYS = 2000


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


class _FastType:
    """Struct types declaring every key seen so far (and so every custom field), for one base.

    ``strict`` forbids unknown keys: that is how the fast path proves it dropped nothing, at no
    cost (an undeclared key, custom or not, escaped or not, makes msgspec raise). This is not a
    strict *response* model: on that error the decoder takes the exact path, which accepts the
    unknown key and learns it, so unknown fields still always decode.
    """

    def __init__(self, base: type[Opportunity], keys: Iterable[str]) -> None:
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


def _fast_options(base: type[Opportunity], *, typed: bool) -> dict[str, Any]:
    """``dict``/``gc`` for the fast type: a __dict__ only to note absent typed fields, and
    untracked unless the user's base has a __dict__ or weak references (msgspec requires GC
    tracking for either)."""
    if typed:
        return {"dict": True, "gc": True}
    if base.__dictoffset__ or base.__weakrefoffset__:
        return {}
    return {"gc": False}


def _attr_name(key: str, index: int, base: type[Opportunity]) -> str:
    name = key[len(_PREFIX) :] if key.startswith(_PREFIX) else ""
    # A custom field id becomes the attribute name (it shows as cf_... in reprs, which is what
    # users recognise) unless it could shadow something: a name of the class, a keyword, or any
    # name starting with "_" (special methods, msgspec's and our own). Those get "_<index>"
    # names, which no id used as a name can collide with.
    usable = name.isidentifier() and not name.startswith("_") and not keyword.iskeyword(name)
    return name if usable and not hasattr(base, name) else f"_{index}"


class DecodeOpportunity(Protocol):
    """The signature of ``decode_opportunity`` (and of every ``OpportunityDecoder().decode``)."""

    @overload
    def __call__(self, data: bytes | str, type: None = None) -> Opportunity: ...
    @overload
    def __call__(self, data: bytes | str, type: type[OpportunityT]) -> OpportunityT: ...
    def __call__(self, data: bytes | str, type: type[Opportunity] | None = None) -> Opportunity:
        """Decode one Opportunity JSON document, keeping every ``custom.*`` key in ``.custom``.

        ``decode_opportunity(data: bytes | str, type: type[T] | None = None) -> T``, where ``T``
        is ``Opportunity`` or the subclass given. Pass ``type=`` a subclass of ``Opportunity``
        with fields renamed to ``custom.cf_...`` to get those custom fields as typed attributes
        (they are in ``.custom`` too). Raises ``DecodeError`` (keeping the raw body) if it is not
        an Opportunity.
        """
        ...


class _NotBuilt(Exception):
    """No fast type for this target yet (a private class: a KeyError raised by a user's
    ``__post_init__`` must not be taken for this)."""


def _not_built(data: bytes | str) -> Any:
    raise _NotBuilt


class OpportunityDecoder:
    """Decodes Opportunity responses (or a subclass with typed custom fields) in one pass."""

    decode: DecodeOpportunity

    def __init__(self) -> None:
        # Insertion-ordered set of the top-level keys seen that no model declares: custom.*
        # keys, and fields Close added after this release (declared only to be skipped).
        self._learned: dict[str, None] = {}
        self._fast: dict[type[Opportunity], _FastType] = {}
        # By target type: msgspec's own bound decode method (or, for typed custom fields, a
        # small wrapper), so that the hot path adds a single Python call to msgspec's work.
        self._decoders: dict[type[Opportunity], Decode] = {}
        # Types for payloads whose keys could not be learned any more (the bound was reached).
        self._overflow: dict[tuple[type[Opportunity], frozenset[str]], _FastType] = {}
        # By target type: the keys its own fields declare (they never change).
        self._declared: dict[type[Opportunity], frozenset[str]] = {}
        self.decode, self._set_default = self._hot_path()

    def _hot_path(self) -> tuple[DecodeOpportunity, Callable[[Decode], None]]:
        """``decode``: a closure, because its whole overhead budget is one Python call.

        A bound method with a dict lookup per call cost ~5% of a small decode; a closure that
        holds the plain Opportunity decoder in a variable costs ~2%.
        """
        decoders = self._decoders
        default: Decode = _not_built  # until built, and again when keys are learned

        def decode(data: bytes | str, type: type[Opportunity] | None = None) -> Opportunity:
            try:
                if type is None:
                    return default(data)  # type: ignore[no-any-return]
                return decoders.get(type, _not_built)(data)  # type: ignore[no-any-return]
            except _MSGSPEC_ERRORS:  # also an undeclared key, or a missing or empty id
                return self._decode_exact(_bytes(data), type or Opportunity)
            except _NotBuilt:  # first use of this type, or keys were learned since
                pass
            self._fast_type(type or Opportunity)  # which makes the next call find it
            return decode(data, type)

        def set_default(function: Decode) -> None:
            nonlocal default
            default = function

        decode.__doc__ = DecodeOpportunity.__call__.__doc__
        decode.__qualname__ = "OpportunityDecoder.decode"
        return cast(DecodeOpportunity, decode), set_default

    def _decode_exact(self, raw: bytes, type: type[OpportunityT]) -> OpportunityT:
        try:
            fields = _dict_decoder.decode(raw)
        except _MSGSPEC_ERRORS as exc:
            raise DecodeError(f"response is not an Opportunity: {exc}", body=raw) from exc
        declared = self._declared.get(type)
        if declared is None:  # structs.fields evaluates annotations: ~2 ms, once per type
            declared = self._declared[type] = frozenset(
                f.encode_name for f in msgspec.structs.fields(type)
            )
        unknown = [k for k in fields if k not in declared and k not in self._learned]
        # msgspec cannot declare a key holding a quote, a backslash or a control character:
        # such a key is never learned, and its payloads always take this exact path.
        odd = [k for k in unknown if _UNDECLARABLE.search(k)]
        unknown = [k for k in unknown if k not in odd]
        learnable = unknown[: max(0, MAX_LEARNED_KEYS - len(self._learned))]
        if learnable:
            self._learned.update(dict.fromkeys(learnable))
            self._forget_types()
        try:
            fast = self._fast_type(type)
        except (TypeError, ValueError):
            # msgspec refused a key we thought declarable: forget it rather than break every
            # later decode, and read this payload without declaring its unknown keys.
            for key in learnable:
                self._learned.pop(key, None)
            self._forget_types()
            odd += learnable
            unknown = learnable = []
            fast = self._fast_type(type)
        keys = frozenset(k for k in fields if k not in declared and k not in odd)
        if not keys <= fast.keys:
            # The bound on learned keys was reached, or (decoding from several threads) another
            # decode forgot the types between our learning and our building: never drop a key.
            fast = self._overflow.get((type, keys)) or _FastType(type, keys)
            if len(self._overflow) < 64:
                self._overflow[(type, keys)] = fast
        try:
            opp: OpportunityT = fast.lenient.decode(raw)
        except _MSGSPEC_ERRORS as exc:
            raise DecodeError(f"response is not an Opportunity: {exc}", body=raw) from exc
        if not opp.id:
            raise DecodeError("response is not an Opportunity: it has no id", body=raw)
        for name in fast.aware:  # API.md promises tz-aware datetimes: naive ones are UTC
            when = getattr(opp, name)
            if when is not None and when.tzinfo is None:
                setattr(opp, name, when.replace(tzinfo=dt.timezone.utc))
        if fast.typed:
            _fill_typed(opp, fast)
        if undeclared := {k[len(_PREFIX) :]: fields[k] for k in odd if k.startswith(_PREFIX)}:
            opp.__dict__["_undeclared"] = undeclared  # no field holds these: .custom adds them
        return opp

    def _forget_types(self) -> None:
        """The learned keys changed: the fast types are rebuilt on next use."""
        self._fast.clear()
        self._decoders.clear()
        self._set_default(_not_built)

    def _fast_type(self, type: type[Opportunity]) -> _FastType:
        fast = self._fast.get(type)
        if fast is None:
            fast = self._fast[type] = _FastType(type, tuple(self._learned))
            if fast.typed:
                decode = fast.decoder.decode
                self._decoders[type] = lambda data: _fill_typed(decode(data), fast)
            else:
                self._decoders[type] = fast.decoder.decode
            if type is Opportunity:
                self._set_default(self._decoders[type])
        return fast


def _fill_typed(opp: OpportunityT, fast: _FastType) -> OpportunityT:
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
                    f"response is not an Opportunity: missing required custom field {name!r}",
                    body=msgspec.json.encode(opp),
                )
    if absent:
        opp.__dict__["_absent"] = absent
    return opp


def _bytes(data: bytes | str) -> bytes:
    return data.encode() if isinstance(data, str) else data


_decoder = OpportunityDecoder()


decode_opportunity: DecodeOpportunity = _decoder.decode
"""The module decoder's own ``decode`` (documented on ``DecodeOpportunity``): a closure, so the hot
path costs one Python call, not two."""
