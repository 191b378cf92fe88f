"""Read what a Close API response says about rate limits.

Sources of the wait before retrying a 429, highest priority first:

1. ``RateLimit: limit=600, remaining=0, reset=2.5`` (``,`` or ``;`` separated, values may be quoted)
2. ``RateLimit-Reset`` (seconds, decimal allowed)
3. ``Retry-After`` (delta-seconds or an HTTP-date)
4. ``X-Rate-Limit-Reset`` (legacy 2017 header, present on every response)
5. ``rate_reset`` in a legacy JSON body, top level or under ``"error"``

Anything malformed is treated as absent: this runs on error paths, so it must never raise.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timezone
from email.utils import parsedate_to_datetime
from time import time
from typing import Any

import msgspec
from multidict import CIMultiDict, CIMultiDictProxy

from .._exceptions import MSGSPEC_DECODE_ERRORS

__all__ = ["RateLimitInfo", "parse_rate_limit", "retry_after"]

# Strict on purpose: float() alone would accept "nan", "-1", "1_0", "1e3" and non-ASCII digits.
_DECIMAL = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)", re.ASCII)
_CASE_INSENSITIVE = (CIMultiDict, CIMultiDictProxy)
# Every source of window state needs one of these (a source without `remaining` does not count).
_INFO_HEADERS = ("RateLimit", "RateLimit-Remaining", "X-Rate-Limit-Remaining")
_SEPARATOR = re.compile(r"[,;]")
# Typed as a dict so a non-object body is a DecodeError, not a case to handle.
_DECODER = msgspec.json.Decoder(dict[str, Any])


@dataclass(frozen=True, slots=True)
class RateLimitInfo:
    limit: int | None  # requests allowed in the window
    remaining: int | None  # requests left in the current window
    reset: float | None  # seconds until the window resets
    # ``reset`` was sent as a whole number ("reset=1"): it may be rounded up by up to a second.
    whole_seconds: bool = field(default=False, compare=False)


# The shape Close sends on every response, "limit=600, remaining=599, reset=0.5" (or with ";"),
# is answered by one regex (0.6 us) instead of a split and three strict parses (5.7 us); any
# other shape (quotes, other order, extra fields) takes the general path.
_COMMON = re.compile(r"limit=(\d+)[,;] *remaining=(\d+)[,;] *reset=(\d+(?:\.\d+)?)", re.ASCII)


def _info(limit: int | None, remaining: int, reset: float, whole_seconds: bool) -> RateLimitInfo:
    # The frozen dataclass's __init__ costs 1.8 us (object.__setattr__ per field); the slots'
    # own setters build the same object in 0.6 us.
    info = _new(RateLimitInfo)
    _set_limit(info, limit)
    _set_remaining(info, remaining)
    _set_reset(info, reset)
    _set_whole(info, whole_seconds)
    return info


_new = object.__new__
_set_limit = vars(RateLimitInfo)["limit"].__set__
_set_remaining = vars(RateLimitInfo)["remaining"].__set__
_set_reset = vars(RateLimitInfo)["reset"].__set__
_set_whole = vars(RateLimitInfo)["whole_seconds"].__set__


def _header(headers: Mapping[str, str], name: str) -> str | None:
    # aiohttp's CIMultiDictProxy answers get() case-insensitively, so its miss is final (this runs
    # on every response: the scan would cost more than the rest of the parse); a plain dict needs
    # the scan.
    value = headers.get(name)
    if value is None and not isinstance(headers, _CASE_INSENSITIVE):
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return value


def _seconds(value: object) -> float | None:
    if isinstance(value, str):
        text = value.strip()
        if len(text) >= 2 and text[0] == text[-1] == '"':
            text = text[1:-1].strip()
        if not _DECIMAL.fullmatch(text):
            return None
        value = float(text)
    # bool is an int subclass; `true` in a JSON body is not a duration.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # a JSON integer too large for a float
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _count(value: str | None) -> int | None:
    number = _seconds(value)
    return int(number) if number is not None and number.is_integer() else None


def _structured(value: str | None) -> dict[str, str]:
    fields: dict[str, str] = {}
    for item in _SEPARATOR.split(value or ""):
        key, sep, val = item.partition("=")
        if sep:
            fields.setdefault(key.strip().lower(), val)
    return fields


def _whole(value: str | None) -> bool:
    return value is not None and "." not in value


def _info_sources(
    headers: Mapping[str, str],
) -> Iterator[tuple[int | None, int | None, float | None, bool]]:
    fields = _structured(_header(headers, "RateLimit"))
    reset = fields.get("reset")
    yield (
        _count(fields.get("limit")),
        _count(fields.get("remaining")),
        _seconds(reset),
        _whole(reset),
    )
    for prefix in ("RateLimit-", "X-Rate-Limit-"):
        reset = _header(headers, prefix + "Reset")
        yield (
            _count(_header(headers, prefix + "Limit")),
            _count(_header(headers, prefix + "Remaining")),
            _seconds(reset),
            _whole(reset),
        )


def parse_rate_limit(headers: Mapping[str, str]) -> RateLimitInfo | None:
    """Window state from the headers of ANY response (not only 429s).

    RateLimit first, then the separate RateLimit-Limit/-Remaining/-Reset headers, then
    X-Rate-Limit-*. Sources are not mixed: the first one giving both ``remaining`` and ``reset``
    wins. None when no source does.
    """
    if isinstance(headers, _CASE_INSENSITIVE):
        value = headers.get("RateLimit")
        if value is not None:
            match = _COMMON.fullmatch(value)
            if match is not None:
                limit, remaining, reset = match.groups()
                return _info(int(limit), int(remaining), float(reset), "." not in reset)
        elif not any(n in headers for n in _INFO_HEADERS):
            return None  # the common miss, answered without parsing anything
    for limit, remaining, reset, whole_seconds in _info_sources(headers):
        if remaining is not None and reset is not None:
            return RateLimitInfo(limit, remaining, reset, whole_seconds)
    return None


def _http_date_delay(value: str | None, now: float) -> float | None:
    try:
        when = parsedate_to_datetime(value or "")
    except (TypeError, ValueError, IndexError):  # the exception type varies across 3.10-3.13
        return None
    if when.tzinfo is None:  # "-0000" means UTC with unknown origin; never use local time
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - now)


def _body_reset(body: bytes) -> float | None:
    if not body.lstrip().startswith(b"{"):  # ingress 429s are HTML or empty: skip decoding
        return None
    try:
        data = _DECODER.decode(body)
    except MSGSPEC_DECODE_ERRORS:
        return None
    error = data.get("error")
    nested = error.get("rate_reset") if isinstance(error, dict) else None
    top = _seconds(data.get("rate_reset"))
    return top if top is not None else _seconds(nested)


def _wait_sources(headers: Mapping[str, str], body: bytes, now: float) -> Iterator[float | None]:
    # A generator so the body is only decoded when no header answered.
    yield _seconds(_structured(_header(headers, "RateLimit")).get("reset"))
    yield _seconds(_header(headers, "RateLimit-Reset"))
    retry = _header(headers, "Retry-After")
    yield _seconds(retry)
    yield _http_date_delay(retry, now)
    yield _seconds(_header(headers, "X-Rate-Limit-Reset"))
    yield _body_reset(body)


def _retry_after(headers: Mapping[str, str], body: bytes, now: float) -> float | None:
    return next((s for s in _wait_sources(headers, body, now) if s is not None), None)


def retry_after(headers: Mapping[str, str], body: bytes) -> float | None:
    """Seconds the server asks us to wait before retrying (sources in module docstring), or None."""
    return _retry_after(headers, body, time())
