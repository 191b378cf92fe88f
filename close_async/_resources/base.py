"""``CloseModel``: the base of every request and response model."""

from __future__ import annotations

import msgspec


class CloseModel(msgspec.Struct, kw_only=True, omit_defaults=True, repr_omit_defaults=True):
    """Base of every model: defaults left out of encoded JSON and out of reprs.

    (msgspec does not inherit ``kw_only``, so each model states it: every model is built with
    keywords only.)

    ``omit_defaults`` is what keeps unset request fields off the wire; it never loses information
    on responses because their defaults are ``None`` or empty.
    """
