from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from typing import Any

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from close_async._transport.ratelimit import (
    RateLimitInfo,
    _retry_after,
    parse_rate_limit,
    retry_after,
)

# 2015-10-21 07:28:00 UTC, the instant of the RFC 9110 Retry-After example date.
NOW = datetime(2015, 10, 21, 7, 28, tzinfo=timezone.utc).timestamp()

# Real Close 429 bodies.
NESTED_BODY = (
    b'{"error": {"rate_reset": 1, "message": "API call count exceeded for this 15 second window",'
    b' "rate_limit": 600, "rate_window": 15}}'
)
FLAT_BODY = (
    b'{"message": "API call count exceeded for this period", "rate_endpoint_group": "ab60",'
    b' "rate_limit": 320, "rate_limit_type": "key", "rate_reset": "0.595956", "rate_window": 8}'
)
LEGACY_HEADERS = {
    "X-Rate-Limit-Limit": "600",
    "X-Rate-Limit-Remaining": "599",
    "X-Rate-Limit-Reset": "14.047826",
}

# Values that are not a usable duration; each must be treated as absent.
BAD_NUMBERS = [
    pytest.param("", id="empty"),
    pytest.param("   ", id="blank"),
    pytest.param('""', id="empty-quotes"),
    pytest.param("abc", id="letters"),
    pytest.param("-1", id="negative"),
    pytest.param("-0.5", id="negative-decimal"),
    pytest.param("NaN", id="nan"),
    pytest.param("nan", id="nan-lower"),
    pytest.param("inf", id="inf"),
    pytest.param("-inf", id="minus-inf"),
    pytest.param("Infinity", id="infinity"),
    pytest.param("1e400", id="exponent-overflow"),
    pytest.param("1" + "0" * 400, id="huge-overflows-float"),
    pytest.param("9" * 5000, id="huge-5000-digits"),
    pytest.param("1_000", id="underscore"),
    pytest.param("0x10", id="hex"),
    pytest.param("\u0663", id="arabic-digit"),
    pytest.param("1.2.3", id="two-dots"),
    pytest.param('"1', id="unbalanced-quote"),
    pytest.param("1 2", id="two-numbers"),
]


def _header_cases() -> list[Any]:
    cases: list[Any] = []
    for header, fmt in [
        ("RateLimit", "limit=600, remaining=0, reset={}"),
        ("RateLimit-Reset", "{}"),
        ("Retry-After", "{}"),
        ("X-Rate-Limit-Reset", "{}"),
    ]:
        for bad in BAD_NUMBERS:
            (value,) = bad.values
            cases.append(pytest.param({header: fmt.format(value)}, id=f"{header}-{bad.id}"))
    return cases


# --------------------------------------------------------------------------- retry_after sources


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param({"RateLimit": "limit=600, remaining=0, reset=2.5"}, 2.5, id="ratelimit-comma"),
        pytest.param({"RateLimit": "limit=600; remaining=0; reset=2.5"}, 2.5, id="ratelimit-semi"),
        pytest.param({"RateLimit": "limit=600; remaining=0, reset=3"}, 3.0, id="ratelimit-mixed"),
        pytest.param(
            {"RateLimit": 'limit=600, remaining=0, reset="2.5"'}, 2.5, id="ratelimit-quoted"
        ),
        pytest.param({"RateLimit": 'limit="600";reset=" 4 "'}, 4.0, id="ratelimit-quoted-spaces"),
        pytest.param({"RateLimit": "  limit = 600 ,remaining=0 ,  reset =  7 "}, 7.0, id="ws"),
        pytest.param({"RateLimit": "limit=600,remaining=0,reset=1"}, 1.0, id="ratelimit-no-spaces"),
        pytest.param(
            {"RateLimit": "LIMIT=600, Remaining=0, RESET=3"}, 3.0, id="ratelimit-key-case"
        ),
        pytest.param({"ratelimit": "reset=2"}, 2.0, id="ratelimit-header-lower"),
        pytest.param({"RATELIMIT": "reset=2"}, 2.0, id="ratelimit-header-upper"),
        pytest.param({"RateLimit": "reset=0"}, 0.0, id="ratelimit-zero"),
        pytest.param({"RateLimit": "reset=.5"}, 0.5, id="ratelimit-leading-dot"),
        pytest.param({"RateLimit": "junk, reset=2, =3, reset=9"}, 2.0, id="ratelimit-first-wins"),
        pytest.param({"RateLimit-Reset": "4.25"}, 4.25, id="ratelimit-reset"),
        pytest.param({"ratelimit-reset": '"4"'}, 4.0, id="ratelimit-reset-lower-quoted"),
        pytest.param({"Retry-After": "120"}, 120.0, id="retry-after-int"),
        pytest.param({"Retry-After": "1.5"}, 1.5, id="retry-after-decimal"),
        pytest.param({"retry-after": " 3 "}, 3.0, id="retry-after-lower-padded"),
        pytest.param(
            {"Retry-After": "Wed, 21 Oct 2015 07:28:30 GMT"}, 30.0, id="retry-after-date-future"
        ),
        pytest.param(
            {"Retry-After": "Wed, 21 Oct 2015 07:27:00 GMT"}, 0.0, id="retry-after-date-past"
        ),
        pytest.param(
            {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0, id="retry-after-date-now"
        ),
        pytest.param(
            {"Retry-After": "Wed, 21 Oct 2015 07:28:10 -0000"}, 10.0, id="retry-after-date-naive"
        ),
        pytest.param(
            {"Retry-After": "Wed, 21 Oct 2015 09:28:05 +0200"}, 5.0, id="retry-after-date-offset"
        ),
        pytest.param({"X-Rate-Limit-Reset": "14.047826"}, 14.047826, id="x-rate-limit-reset"),
        pytest.param({"x-rate-limit-reset": "1"}, 1.0, id="x-rate-limit-reset-lower"),
    ],
)
def test_retry_after_header_sources(headers: dict[str, str], expected: float) -> None:
    assert _retry_after(headers, b"", NOW) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(NESTED_BODY, 1.0, id="nested-real-sample"),
        pytest.param(FLAT_BODY, 0.595956, id="flat-real-sample"),
        pytest.param(b'{"rate_reset": 2}', 2.0, id="flat-int"),
        pytest.param(b'{"rate_reset": 0.25}', 0.25, id="flat-float"),
        pytest.param(b'{"rate_reset": 0}', 0.0, id="flat-zero"),
        pytest.param(b'{"error": {"rate_reset": "3.5"}}', 3.5, id="nested-string"),
        pytest.param(b' \r\n\t{"rate_reset": 1}\n', 1.0, id="leading-whitespace"),
        pytest.param(b'{"rate_reset": 1, "error": {"rate_reset": 9}}', 1.0, id="flat-beats-nested"),
        pytest.param(b'{"rate_reset": "x", "error": {"rate_reset": 9}}', 9.0, id="bad-flat-nested"),
    ],
)
def test_retry_after_body(body: bytes, expected: float) -> None:
    assert _retry_after({}, body, NOW) == pytest.approx(expected)


# --------------------------------------------------------------------------- priority


@pytest.mark.parametrize(
    ("headers", "body", "expected"),
    [
        pytest.param(
            {
                "RateLimit": "reset=1",
                "RateLimit-Reset": "2",
                "Retry-After": "3",
                "X-Rate-Limit-Reset": "4",
            },
            NESTED_BODY,
            1.0,
            id="ratelimit-beats-everything",
        ),
        pytest.param(
            {"RateLimit-Reset": "2", "Retry-After": "3", "X-Rate-Limit-Reset": "4"},
            NESTED_BODY,
            2.0,
            id="ratelimit-reset-beats-retry-after",
        ),
        pytest.param(
            {"Retry-After": "3", "X-Rate-Limit-Reset": "4"},
            FLAT_BODY,
            3.0,
            id="retry-after-beats-x",
        ),
        pytest.param(
            {"Retry-After": "Wed, 21 Oct 2015 07:28:03 GMT", "X-Rate-Limit-Reset": "4"},
            FLAT_BODY,
            3.0,
            id="retry-after-date-beats-x",
        ),
        pytest.param({"X-Rate-Limit-Reset": "4"}, NESTED_BODY, 4.0, id="x-beats-body"),
        pytest.param({"Retry-After": "5"}, b'{"rate_reset": 9}', 5.0, id="header-beats-body"),
        pytest.param(
            {"RateLimit": "reset=abc", "RateLimit-Reset": "2"}, b"", 2.0, id="bad-ratelimit-falls"
        ),
        pytest.param(
            {"RateLimit": "limit=600, remaining=0", "Retry-After": "3"},
            b"",
            3.0,
            id="ratelimit-without-reset-falls",
        ),
        pytest.param(
            {"RateLimit-Reset": "-1", "X-Rate-Limit-Reset": "4"}, b"", 4.0, id="negative-falls"
        ),
        pytest.param({"Retry-After": "soon"}, NESTED_BODY, 1.0, id="bad-retry-after-falls"),
        pytest.param({"X-Rate-Limit-Reset": "nan"}, FLAT_BODY, 0.595956, id="nan-x-falls"),
    ],
)
def test_retry_after_priority(headers: dict[str, str], body: bytes, expected: float) -> None:
    assert _retry_after(headers, body, NOW) == pytest.approx(expected)


# --------------------------------------------------------------------------- malformed -> None


@pytest.mark.parametrize("headers", _header_cases())
def test_retry_after_bad_header_value(headers: dict[str, str]) -> None:
    assert _retry_after(headers, b"", NOW) is None


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("", id="empty"),
        pytest.param(",;,", id="only-separators"),
        pytest.param("reset", id="missing-equals"),
        pytest.param("reset 5", id="space-not-equals"),
        pytest.param("reset=", id="empty-value"),
        pytest.param("=5", id="empty-key"),
        pytest.param("limit=600, remaining=0", id="no-reset"),
        pytest.param("reset=abc", id="reset-abc"),
        pytest.param("reset=1e999", id="reset-overflow"),
        pytest.param("resets=5", id="similar-key"),
    ],
)
def test_retry_after_malformed_ratelimit(value: str) -> None:
    assert _retry_after({"RateLimit": value}, b"", NOW) is None


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("garbage", id="garbage"),
        pytest.param("1 2 3 4 5", id="five-numbers"),
        pytest.param("Wed, 32 Oct 2015 07:28:00 GMT", id="day-out-of-range"),
        pytest.param("Wed, 21 Oct 99999 07:28:00 GMT", id="year-out-of-range"),
        pytest.param("Wed, 21 Foo 2015 07:28:00 GMT", id="bad-month"),
        pytest.param("Wed, 21 Oct 2015 25:61:00 GMT", id="bad-time"),
    ],
)
def test_retry_after_malformed_date(value: str) -> None:
    assert _retry_after({"Retry-After": value}, b"", NOW) is None


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"  \n ", id="whitespace"),
        pytest.param(b"<html><body>429 Too Many Requests</body></html>", id="html"),
        pytest.param(b"\xff\xfe\x00\x81garbage", id="garbage-bytes"),
        pytest.param(b"{\xff\xfe}", id="brace-then-garbage"),
        pytest.param(b'{"rate_reset": "\xc3"}', id="invalid-utf8-in-string"),
        pytest.param(b'{"\xff": 1}', id="invalid-utf8-in-key"),
        pytest.param(b"{", id="truncated"),
        pytest.param(b"{not json}", id="not-json"),
        pytest.param(b'{"rate_reset": 1}{}', id="trailing-data"),
        pytest.param(b'{"a":' + b"[" * 100_000, id="deeply-nested"),
        pytest.param(b"[1]", id="list"),
        pytest.param(b'"x"', id="string"),
        pytest.param(b"null", id="null"),
        pytest.param(b"1", id="number"),
        pytest.param(b"{}", id="empty-object"),
        pytest.param(b'{"message": "API call count exceeded"}', id="no-rate-reset"),
        pytest.param(b'{"rate_reset": null}', id="rate-reset-null"),
        pytest.param(b'{"rate_reset": -1}', id="rate-reset-negative"),
        pytest.param(b'{"rate_reset": "-1"}', id="rate-reset-negative-string"),
        pytest.param(b'{"rate_reset": "NaN"}', id="rate-reset-nan-string"),
        pytest.param(b'{"rate_reset": "inf"}', id="rate-reset-inf-string"),
        pytest.param(b'{"rate_reset": 1e400}', id="rate-reset-float-overflow"),
        pytest.param(b'{"rate_reset": 1' + b"0" * 400 + b"}", id="rate-reset-int-overflow"),
        pytest.param(b'{"rate_reset": "abc"}', id="rate-reset-abc"),
        pytest.param(b'{"rate_reset": ""}', id="rate-reset-empty-string"),
        pytest.param(b'{"rate_reset": true}', id="rate-reset-bool"),
        pytest.param(b'{"rate_reset": [1]}', id="rate-reset-list"),
        pytest.param(b'{"rate_reset": {"s": 1}}', id="rate-reset-object"),
        pytest.param(b'{"error": "rate limited"}', id="error-is-string"),
        pytest.param(b'{"error": [1]}', id="error-is-list"),
        pytest.param(b'{"error": null}', id="error-is-null"),
        pytest.param(b'{"error": {"message": "x"}}', id="error-without-rate-reset"),
        pytest.param(b'{"error": {"rate_reset": -3}}', id="error-negative"),
        pytest.param(b'{"error": {"rate_reset": "abc"}}', id="error-abc"),
    ],
)
def test_retry_after_malformed_body(body: bytes) -> None:
    assert _retry_after({}, body, NOW) is None


def test_retry_after_nothing() -> None:
    assert _retry_after({"Content-Type": "text/html"}, b"", NOW) is None


# --------------------------------------------------------------------------- public wrapper


def test_public_retry_after_uses_wall_clock() -> None:
    future = {"Retry-After": "Fri, 31 Dec 9999 23:59:59 GMT"}
    wait = retry_after(future, b"")
    assert wait is not None
    assert wait > 0
    assert retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, b"") == 0.0
    assert retry_after({"RateLimit": "reset=2.5"}, b"") == 2.5
    assert retry_after({}, FLAT_BODY) == pytest.approx(0.595956)
    assert retry_after({}, b"") is None


@pytest.fixture
def local_time_not_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    if not hasattr(time, "tzset"):
        pytest.skip("needs time.tzset (POSIX)")
    monkeypatch.setenv("TZ", "EST+05")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("local_time_not_utc")
def test_naive_http_date_is_utc_not_local_time() -> None:
    # "-0000" makes parsedate_to_datetime return a naive datetime; it must still mean UTC.
    headers = {"Retry-After": "Wed, 21 Oct 2015 07:28:10 -0000"}
    assert _retry_after(headers, b"", NOW) == 10.0


def test_huge_finite_value_is_not_capped() -> None:
    # Capping is the caller's job; only values that overflow to inf are rejected.
    assert _retry_after({"Retry-After": "1" + "0" * 300}, b"", NOW) == 1e300


def test_aiohttp_headers() -> None:
    headers = CIMultiDictProxy(CIMultiDict({"ratelimit": "limit=600, remaining=0, reset=2"}))
    assert _retry_after(headers, b"", NOW) == 2.0
    assert parse_rate_limit(headers) == RateLimitInfo(limit=600, remaining=0, reset=2.0)


# --------------------------------------------------------------------------- parse_rate_limit


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param(
            {"RateLimit": "limit=600, remaining=0, reset=2.5"},
            RateLimitInfo(600, 0, 2.5),
            id="ratelimit-comma",
        ),
        pytest.param(
            {"RateLimit": "limit=600; remaining=12; reset=2.5"},
            RateLimitInfo(600, 12, 2.5),
            id="ratelimit-semi",
        ),
        pytest.param(
            {"ratelimit": 'Limit="600" ;REMAINING = "3"; Reset="0.5"'},
            RateLimitInfo(600, 3, 0.5),
            id="ratelimit-quoted-case-ws",
        ),
        pytest.param(
            {"RateLimit": "remaining=5, reset=1"},
            RateLimitInfo(None, 5, 1.0),
            id="ratelimit-no-limit",
        ),
        pytest.param(
            {"RateLimit": "limit=abc, remaining=5, reset=1"},
            RateLimitInfo(None, 5, 1.0),
            id="ratelimit-bad-limit",
        ),
        pytest.param(
            {"RateLimit": "limit=600.0, remaining=5.0, reset=1"},
            RateLimitInfo(600, 5, 1.0),
            id="ratelimit-integral-decimals",
        ),
        pytest.param(
            {"RateLimit-Limit": "600", "RateLimit-Remaining": "7", "RateLimit-Reset": "3.25"},
            RateLimitInfo(600, 7, 3.25),
            id="separate",
        ),
        pytest.param(
            {"ratelimit-remaining": '"7"', "RATELIMIT-RESET": "3"},
            RateLimitInfo(None, 7, 3.0),
            id="separate-case-no-limit",
        ),
        pytest.param(LEGACY_HEADERS, RateLimitInfo(600, 599, 14.047826), id="legacy-x-rate-limit"),
        pytest.param(
            {k.lower(): v for k, v in LEGACY_HEADERS.items()},
            RateLimitInfo(600, 599, 14.047826),
            id="legacy-lowercase",
        ),
        pytest.param(
            {
                "RateLimit": "limit=100, remaining=1, reset=1",
                "RateLimit-Limit": "200",
                "RateLimit-Remaining": "2",
                "RateLimit-Reset": "2",
                **LEGACY_HEADERS,
            },
            RateLimitInfo(100, 1, 1.0),
            id="ratelimit-beats-all",
        ),
        pytest.param(
            {"RateLimit-Limit": "200", "RateLimit-Remaining": "2", "RateLimit-Reset": "2"}
            | LEGACY_HEADERS,
            RateLimitInfo(200, 2, 2.0),
            id="separate-beats-legacy",
        ),
        pytest.param(
            {"RateLimit": "limit=100, reset=1", "RateLimit-Limit": "200"} | LEGACY_HEADERS,
            RateLimitInfo(600, 599, 14.047826),
            id="incomplete-sources-not-mixed",
        ),
        pytest.param(
            {"RateLimit": "limit=100, remaining=-1, reset=1"} | LEGACY_HEADERS,
            RateLimitInfo(600, 599, 14.047826),
            id="bad-remaining-falls-through",
        ),
        pytest.param(
            {"RateLimit-Remaining": "3", "RateLimit-Reset": "nan", "RateLimit-Limit": "9"},
            None,
            id="bad-reset",
        ),
        pytest.param({}, None, id="no-headers"),
        pytest.param({"Content-Type": "application/json"}, None, id="unrelated"),
        pytest.param({"RateLimit": "limit=600, reset=1"}, None, id="no-remaining"),
        pytest.param({"RateLimit": "limit=600, remaining=1"}, None, id="no-reset"),
        pytest.param({"RateLimit": "remaining=1.5, reset=1"}, None, id="fractional-remaining"),
        pytest.param({"RateLimit": "remaining=1e400, reset=1"}, None, id="overflow-remaining"),
        pytest.param({"RateLimit": "remaining, reset"}, None, id="missing-equals"),
        pytest.param({"RateLimit": ""}, None, id="empty-ratelimit"),
        pytest.param({"X-Rate-Limit-Remaining": "599"}, None, id="legacy-no-reset"),
        pytest.param({"X-Rate-Limit-Reset": "1"}, None, id="legacy-no-remaining"),
        pytest.param({"Retry-After": "5"}, None, id="retry-after-is-not-window-state"),
    ],
)
def test_parse_rate_limit(headers: Mapping[str, str], expected: RateLimitInfo | None) -> None:
    assert parse_rate_limit(headers) == expected


@pytest.mark.parametrize("bad", BAD_NUMBERS)
def test_parse_rate_limit_bad_values(bad: str) -> None:
    headers = {
        "RateLimit": f"limit={bad}, remaining={bad}, reset={bad}",
        "RateLimit-Remaining": bad,
        "RateLimit-Reset": bad,
        "X-Rate-Limit-Remaining": bad,
        "X-Rate-Limit-Reset": bad,
    }
    assert parse_rate_limit(headers) is None


def test_info_is_frozen() -> None:
    info = RateLimitInfo(limit=1, remaining=0, reset=1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.limit = 2  # type: ignore[misc]
    assert not hasattr(info, "__dict__")


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param({"Content-Type": "application/json"}, None, id="no-rate-headers"),
        pytest.param(
            {"x-rate-limit-remaining": "4", "X-Rate-Limit-Reset": "1.5"},
            RateLimitInfo(limit=None, remaining=4, reset=1.5),
            id="legacy-lowercase",
        ),
        pytest.param(
            {"ratelimit": "limit=5, remaining=0, reset=0.25"},
            RateLimitInfo(limit=5, remaining=0, reset=0.25),
            id="modern-lowercase",
        ),
    ],
)
def test_aiohttp_headers_fast_path(headers: dict[str, str], expected: RateLimitInfo | None) -> None:
    from multidict import CIMultiDict, CIMultiDictProxy

    assert parse_rate_limit(CIMultiDictProxy(CIMultiDict(headers))) == expected
