"""JSON in and out: the request encoder and the fast Opportunity decoder.

Custom fields travel as flat ``"custom.cf_<id>"`` keys that no static model can declare, and a
msgspec Struct silently drops keys it does not declare. Decoding twice (once to a dict to find them)
costs 3-4x. Instead we learn the custom keys seen so far and decode with a Struct type that declares
them (built once per key set and cached), so a response is decoded in one pass. A cheap count proves
nothing was dropped: every ``custom.`` key in the payload contributes one ``"custom.`` to the raw
bytes, so if the fields we captured match that count, we have them all. Anything else (a new key,
a string value containing ``"custom.``, escaped key characters) takes the slower, exact path, which
also learns the new keys so the next payload is fast again.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec

from ._exceptions import DecodeError, InvalidInputError
from .models import CreateOpportunity, Opportunity

OpportunityT = TypeVar("OpportunityT", bound=Opportunity)

_encoder = msgspec.json.Encoder()
_dict_decoder = msgspec.json.Decoder(dict[str, Any])
_UNSET = msgspec.UNSET
_PREFIX = "custom."
_MARKER = b'"custom.'
# json.dumps (Close's encoder) never escapes printable ASCII; if a payload does, a key could be
# spelled without the literal marker, so such payloads take the exact path.
_ESCAPED_ASCII = re.compile(rb"\\u00[2-7][0-9a-fA-F]")
# Learning is bounded so a stream of ever-new keys cannot grow memory without limit.
MAX_LEARNED_KEYS = 2000


def encode_create(item: CreateOpportunity) -> bytes:
    """The request body: declared fields (unset ones left out) plus flat ``custom.cf_*`` keys."""
    if not item.custom:
        return _encoder.encode(item)
    try:
        custom = _encoder.encode({_PREFIX + k: v for k, v in item.custom.items()})
    except (TypeError, msgspec.EncodeError) as exc:
        raise InvalidInputError("custom", item.custom, f"is not JSON-serializable: {exc}") from exc
    body = _encoder.encode(msgspec.structs.replace(item, custom={}))
    if body == b"{}":
        return custom
    return body[:-1] + b"," + custom[1:]


class _FastType:
    """One Struct type declaring a set of learned custom keys, and what reads them back."""

    def __init__(self, base: type[Opportunity], keys: tuple[str, ...], generation: int) -> None:
        self.generation = generation
        base_fields = msgspec.structs.fields(base)
        declared = {f.encode_name for f in base_fields}
        # Custom fields a user declared on a subclass (typed custom fields); Close omits empty
        # custom fields, so one holding its default is taken as absent (at worst: the exact path).
        self.typed = [
            (f.name, f.default, f.encode_name[len(_PREFIX) :])
            for f in base_fields
            if f.encode_name.startswith(_PREFIX)
        ]
        keys = tuple(k for k in keys if k not in declared)
        attrs = [_attr_name(k, i, base) for i, k in enumerate(keys)]
        fields = [(a, Any, _UNSET) for a in attrs]
        self.type: type[Any] = msgspec.defstruct(
            base.__name__,
            fields,
            bases=(base,),
            rename=dict(zip(attrs, keys, strict=True)),
            kw_only=True,
            module=base.__module__,
        )
        self.decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(self.type)
        self.ids = tuple(k[len(_PREFIX) :] for k in keys)
        self.keys = frozenset(keys)
        getter: Callable[[Any], Any] = operator.attrgetter(*attrs) if attrs else lambda _: ()
        # attrgetter of one name returns the value itself, not a 1-tuple.
        self.values = (lambda o: (getter(o),)) if len(attrs) == 1 else getter


def _attr_name(key: str, index: int, base: type[Opportunity]) -> str:
    name = key[len(_PREFIX) :]
    if name.isidentifier() and not hasattr(base, name):
        return name  # shows as cf_... in reprs, which is what users recognise
    return f"custom_field_{index}"


class OpportunityDecoder:
    """Decodes Opportunity responses (or a subclass with typed custom fields) in one pass."""

    def __init__(self) -> None:
        self._learned: dict[str, None] = {}  # insertion-ordered set of "custom.cf_*" keys
        self._generation = 0  # bumped whenever a key is learned, to rebuild the fast types
        self._fast: dict[type[Opportunity], _FastType] = {}

    def decode(self, data: bytes | str, type: type[OpportunityT] = Opportunity) -> OpportunityT:  # type: ignore[assignment]
        raw = data.encode() if isinstance(data, str) else data
        fast = self._fast_type(type)
        try:
            opp: OpportunityT = fast.decoder.decode(raw)
        except msgspec.DecodeError as exc:  # also ValidationError
            raise DecodeError(f"response is not an Opportunity: {exc}", body=raw) from exc
        if not opp.id:
            raise DecodeError("response is not an Opportunity: it has no id", body=raw)
        values = fast.values(opp)
        missing = values.count(_UNSET)
        custom = (
            dict(zip(fast.ids, values, strict=True))
            if not missing
            else {i: v for i, v in zip(fast.ids, values, strict=True) if v is not _UNSET}
        )
        for name, default, field_id in fast.typed:
            value = getattr(opp, name)
            if value != default:
                custom[field_id] = value
        if len(custom) == raw.count(_MARKER) and (
            b"\\u00" not in raw or not _ESCAPED_ASCII.search(raw)
        ):
            opp.custom = custom
            return opp
        return self._decode_exact(raw, type)

    def _decode_exact(self, raw: bytes, type: type[OpportunityT]) -> OpportunityT:
        opp: OpportunityT
        # The fast decode succeeded, so this is a JSON object of the right shape.
        fields = _dict_decoder.decode(raw)
        custom = {k[len(_PREFIX) :]: v for k, v in fields.items() if k.startswith(_PREFIX)}
        for key in fields:
            if (
                key.startswith(_PREFIX)
                and key not in self._learned
                and len(self._learned) < MAX_LEARNED_KEYS
            ):
                self._learned[key] = None
                self._generation += 1
        opp = self._fast_type(type).decoder.decode(raw)
        opp.custom = custom
        return opp

    def _fast_type(self, type: type[Opportunity]) -> _FastType:
        fast = self._fast.get(type)
        if fast is None or fast.generation != self._generation:
            fast = self._fast[type] = _FastType(type, tuple(self._learned), self._generation)
        return fast


_decoder = OpportunityDecoder()


def decode_opportunity(data: bytes | str, type: type[OpportunityT] = Opportunity) -> OpportunityT:  # type: ignore[assignment]
    """Decode one Opportunity JSON document, keeping every ``custom.*`` key in ``.custom``.

    Pass ``type=`` a subclass of :class:`Opportunity` with fields renamed to ``custom.cf_...``
    to get those custom fields as typed attributes (they are in ``.custom`` too).
    Raises :class:`~close_async.DecodeError` (keeping the raw body) if it is not an Opportunity.
    """
    return _decoder.decode(data, type)
