"""Models with flat ``custom.*`` keys, and their one-pass decoder (for any such model).

``CustomFieldsModel`` gives a model ``.custom``, pickling and copying; ``CustomDecoder`` decodes
it (or a subclass declaring typed custom fields). The private attributes they share
(``_close_base``, ``_close_custom``, ``_absent``, ``_undeclared``) are written and read in this
module and in ``custom_types.py`` (the Struct types it decodes with) only.

Custom fields travel as flat ``"custom.cf_<id>"`` keys that no static model can declare, and a
msgspec Struct silently drops keys it does not declare. Decoding twice (once to a dict to find them)
costs 3-4x. Instead we learn the top-level keys seen so far that no model declares, and decode with
a Struct type that declares them all (built once per key set and cached), in one pass. That type
forbids unknown keys, which proves for free that nothing was dropped: a key we have not seen yet,
however it is spelled (escaped, inside a nested object or not), makes the decode fail, and the
payload takes the exact path instead: decoded to a dict as well, keys learned, so the next payload
of that shape is fast again. Key names inside string values never matter: they are not keys.

Datetimes come out tz-aware (as API.md promises; a naive one takes the exact path, read as UTC:
see custom_types.py). One decoder may serve many threads: learning keys and building types hold a
lock, and decoding a payload of a known shape takes none.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Collection
from typing import Any, Generic, Protocol, TypeVar, overload

import msgspec

from .._constants import CUSTOM_PREFIX as _PREFIX
from .._exceptions import MSGSPEC_DECODE_ERRORS as _MSGSPEC_ERRORS
from .._exceptions import DecodeError
from .base import CloseModel
from .custom_types import _FastType, _fill_typed, _finish_exact

_Bound = Callable[[bytes | str], Any]

_dict_decoder = msgspec.json.Decoder(dict[str, Any])
_UNDECLARABLE = re.compile(r'[\\"\x00-\x1f]')
_UNSET = msgspec.UNSET
M = TypeVar("M", bound="CustomFieldsModel")
R = TypeVar("R", bound="CustomFieldsModel", covariant=True)
# Learning is bounded so a stream of ever-new keys cannot grow memory without limit.
MAX_LEARNED_KEYS = 2000


class CustomFieldsModel(CloseModel, kw_only=True):
    """A response model whose ``custom.*`` keys are kept, whatever they are (see ``.custom``).

    Instances from ``CustomDecoder`` are of a subclass (same name) that also declares the custom
    keys seen so far, which is what lets one pass keep them all. ``isinstance`` checks, pickling
    and ``msgspec.json.encode`` (which writes the flat ``custom.*`` keys back) work as usual.
    """

    @property
    def custom(self) -> dict[str, Any]:
        """Every ``custom.*`` key of the response, keyed by field id (``cf_...``).

        Built from the object's fields on each access, so decoding never pays for it (keep it in
        a variable to read it many times). It is a new dict each time: changing it leaves the
        object as it is.
        """
        extra: dict[str, Any] | None = getattr(self, "__dict__", None)
        if not extra:  # the usual case: instances of the decoder's fast type have no __dict__
            return _read_custom(self, ())
        custom = _read_custom(self, extra.get("_absent", ()))
        custom.update(extra.get("_undeclared", ()))
        return custom

    def __reduce__(self) -> tuple[Any, ...]:
        # Decoded instances are of a generated class that pickle cannot look up by name: rebuild
        # them through the decoder from the class the user knows.
        base = getattr(type(self), "_close_base", type(self))
        data = msgspec.to_builtins(self)
        absent = getattr(self, "__dict__", {}).get("_absent", ())
        for field in msgspec.structs.fields(self):
            if field.name in absent:  # a typed custom field that the payload did not have
                data.pop(field.encode_name, None)
        for field_id, value in self.custom.items():  # keys no Struct field could declare
            data.setdefault(_PREFIX + field_id, value)
        return (_restore, (base, msgspec.json.encode(data)))

    def __copy__(self) -> CustomFieldsModel:
        # msgspec's own __copy__ would not carry which typed custom fields were absent.
        restore, args = self.__reduce__()
        clone: CustomFieldsModel = restore(*args)
        return clone


def _read_custom(opp: CustomFieldsModel, absent: Collection[str]) -> dict[str, Any]:
    cls = type(opp)
    # Kept on the class itself (its own __dict__: a subclass declares more fields), so that the
    # decoder's generated classes of past key sets are not held alive by a cache of ours.
    attrs: tuple[tuple[int, str, str], ...] | None = cls.__dict__.get("_close_custom")
    if attrs is None:
        attrs = tuple(
            (index, f.name, f.encode_name[len(_PREFIX) :])
            for index, f in enumerate(msgspec.structs.fields(cls))
            if f.encode_name.startswith(_PREFIX)
        )
        cls._close_custom = attrs  # type: ignore[attr-defined]
    values = msgspec.structs.astuple(opp)  # one C call, instead of a getattr per field
    return {
        field_id: values[index]
        for index, name, field_id in attrs
        if values[index] is not _UNSET and name not in absent
    }


def _restore(cls: type[CustomFieldsModel], raw: bytes) -> CustomFieldsModel:
    return shared_decoder(cls).decode(raw, cls)


_SHARED: dict[type[CustomFieldsModel], CustomDecoder[Any]] = {}


def share(decoder: CustomDecoder[Any]) -> None:
    """Make ``decoder`` the one that unpickles (and copies) its root model's instances."""
    _SHARED[decoder.root] = decoder


def shared_decoder(cls: type[CustomFieldsModel]) -> CustomDecoder[Any]:
    """The shared decoder of the model ``cls`` derives from (one is made on first need)."""
    for root in cls.__mro__:
        if root in _SHARED:
            return _SHARED[root]
    decoder = _SHARED[cls] = CustomDecoder(cls)
    return decoder


class _NotBuilt(Exception):
    """No fast type for this target yet (a private class: a KeyError raised by a user's
    ``__post_init__`` must not be taken for this)."""


def _not_built(data: bytes | str) -> Any:
    raise _NotBuilt


class Decode(Protocol[R]):
    """The signature of ``CustomDecoder(Model).decode``: ``Model``, or the ``type`` given."""

    @overload
    def __call__(self, data: bytes | str, type: None = None) -> R: ...
    @overload
    def __call__(self, data: bytes | str, type: type[M]) -> M: ...


class CustomDecoder(Generic[R]):
    """Decodes responses of the model ``root`` (or a subclass with typed custom fields) in one
    pass. ``decode(data, type=None)``: ``type`` defaults to ``root``.

    ``root`` is any ``CustomFieldsModel`` with an ``id`` field (a response without a non-empty
    ``id`` is a ``DecodeError``). Make one per model, at module level, and ``share`` it::

        _decoder = CustomDecoder(Lead)
        share(_decoder)  # the decoder that unpickles and copies Leads
        decode_lead = _decoder.decode  # (data) -> Lead; (data, LeadSubclass) -> LeadSubclass
    """

    decode: Decode[R]

    def __init__(self, root: type[R]) -> None:
        if "id" not in root.__struct_fields__:
            raise TypeError(f"{root.__name__} has no id field: CustomDecoder needs one")
        self.root: type[R] = root
        name = root.__name__
        self._noun = f"{'an' if name[:1].upper() in 'AEIOU' else 'a'} {name}"
        # Insertion-ordered set of the top-level keys seen that no model declares: custom.*
        # keys, and fields Close added after this release (declared only to be skipped).
        self._learned: dict[str, None] = {}
        self._fast: dict[type[CustomFieldsModel], _FastType] = {}
        # By target type: msgspec's own bound decode method (or, for typed custom fields, a
        # small wrapper), so that the hot path adds a single Python call to msgspec's work.
        self._decoders: dict[type[CustomFieldsModel], _Bound] = {}
        # Types for payloads whose keys could not be learned any more (the bound was reached).
        self._overflow: dict[tuple[type[CustomFieldsModel], frozenset[str]], _FastType] = {}
        # By target type: the keys its own fields declare (they never change).
        self._declared: dict[type[CustomFieldsModel], frozenset[str]] = {}
        # Held to learn keys, forget types and build them, never on the hot path (~0.25 us, 1-3%
        # of an exact decode). Threads sharing a decoder then never leave a type built without
        # its decode function (another thread forgetting the types between the two), which sent
        # every later decode of it into endless recursion. Reentrant: msgspec runs a base's
        # __init_subclass__ while it builds.
        self._lock = threading.RLock()
        self.decode, self._set_default = self._hot_path()

    def _hot_path(self) -> tuple[Decode[R], Callable[[_Bound], None]]:
        """``decode``: a closure, because its whole overhead budget is one Python call.

        A bound method with a dict lookup per call cost ~5% of a small decode; a closure that
        holds the plain Opportunity decoder in a variable costs ~2%.
        """
        decoders = self._decoders
        root = self.root
        default: _Bound = _not_built  # until built, and again when keys are learned

        def decode(
            data: bytes | str, type: type[CustomFieldsModel] | None = None
        ) -> CustomFieldsModel:
            try:
                if type is None:
                    return default(data)  # type: ignore[no-any-return]
                return decoders.get(type, _not_built)(data)  # type: ignore[no-any-return]
            except _MSGSPEC_ERRORS:  # also an undeclared key, or a missing or empty id
                return self._decode_exact(_bytes(data), type or root)
            except _NotBuilt:  # first use of this type, or keys were learned since
                pass
            return self._decode_built(data, type or root)

        def set_default(function: _Bound) -> None:
            nonlocal default
            default = function

        decode.__qualname__ = f"{type(self).__name__}.decode"
        return decode, set_default  # type: ignore[return-value]  # (the overloads: see Decode)

    def _decode_built(self, data: bytes | str, type: type[M]) -> M:
        """Build ``type``'s fast decoder and decode with it, once: not through ``decode`` again,
        where other threads learning keys could keep sending it back here."""
        with self._lock:
            self._fast_type(type)
            bound = self._decoders[type]
        try:
            return bound(data)  # type: ignore[no-any-return]
        except _MSGSPEC_ERRORS:
            return self._decode_exact(_bytes(data), type)

    def _decode_exact(self, raw: bytes, type: type[M]) -> M:
        try:
            fields = _dict_decoder.decode(raw)
        except _MSGSPEC_ERRORS as exc:
            raise DecodeError(f"response is not {self._noun}: {exc}", body=raw) from exc
        declared = self._declared.get(type)
        if declared is None:  # structs.fields evaluates annotations: ~2 ms, once per type
            declared = self._declared[type] = frozenset(
                f.encode_name for f in msgspec.structs.fields(type)
            )
        with self._lock:  # from reading the learned keys to the type built from them
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
                fast = self._fast_type(type)
            keys = frozenset(k for k in fields if k not in declared and k not in odd)
            if not keys <= fast.keys:
                # The bound on learned keys was reached: never drop a key.
                fast = self._overflow.get((type, keys)) or _FastType(type, keys)
                if len(self._overflow) < 64:
                    self._overflow[(type, keys)] = fast
        try:
            opp: M = fast.lenient.decode(raw)
        except _MSGSPEC_ERRORS as exc:
            raise DecodeError(f"response is not {self._noun}: {exc}", body=raw) from exc
        if not getattr(opp, "id", None):
            raise DecodeError(f"response is not {self._noun}: it has no id", body=raw)
        _finish_exact(opp, fast, self._noun)
        if undeclared := {k[len(_PREFIX) :]: fields[k] for k in odd if k.startswith(_PREFIX)}:
            opp.__dict__["_undeclared"] = undeclared  # no field holds these: .custom adds them
        return opp

    def _forget_types(self) -> None:
        """The learned keys changed: the fast types are rebuilt on next use (the lock held)."""
        self._fast.clear()
        self._decoders.clear()
        self._set_default(_not_built)

    def _fast_type(self, type: type[CustomFieldsModel]) -> _FastType:
        """The type's fast type, built and installed if need be (the lock held)."""
        fast = self._fast.get(type)
        if fast is None:
            # Stored after its function: an interrupt (a signal) leaves no type without one.
            built = _FastType(type, tuple(self._learned))
            if built.typed:
                decode, noun = built.decoder.decode, self._noun
                self._decoders[type] = lambda data: _fill_typed(decode(data), built, noun)
            else:
                self._decoders[type] = built.decoder.decode
            if type is self.root:
                self._set_default(self._decoders[type])
            fast = self._fast[type] = built
        return fast


def _bytes(data: bytes | str) -> bytes:
    return data.encode() if isinstance(data, str) else data
