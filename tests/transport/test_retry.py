"""Tests for _transport.retry.RetryPolicy: the decision, the waits, and the tenacity wiring.

Waits run on the fake loop clock, and tenacity's own clock (``time.monotonic`` in its module,
used for the deadline) is pointed at it too, so nothing here sleeps for real.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import math
import types
from collections.abc import Callable
from typing import Any

import pytest
import tenacity

from close_async import _constants as const
from close_async._exceptions import (
    APIConnectionError,
    APITimeoutError,
    CloseError,
    DecodeError,
    InvalidInputError,
    RateLimitError,
    error_for_status,
)
from close_async._transport.retry import MAX_RATE_LIMITED, ZERO_WAIT_FLOOR, RetryPolicy
from tests.support.clock import FakeClock


def rate_limited(retry_after: float | None) -> RateLimitError:
    exc = error_for_status(429, {}, b"", retry_after=retry_after)
    assert isinstance(exc, RateLimitError)
    return exc


class Script:
    """An async function that raises the given exceptions in turn, then returns "ok"; it
    records the loop time of each call, and can take ``duration`` seconds per attempt."""

    def __init__(self, *failures: BaseException, duration: float = 0.0) -> None:
        self.failures = list(failures)
        self.duration = duration
        self.calls: list[float] = []
        self.raised: list[BaseException] = []

    @property
    def count(self) -> int:
        return len(self.calls)

    async def __call__(self) -> str:
        self.calls.append(asyncio.get_running_loop().time())
        if self.duration:
            await asyncio.sleep(self.duration)
        if len(self.raised) < len(self.failures):
            exc = self.failures[len(self.raised)]
            self.raised.append(exc)
            raise exc
        return "ok"


def on_fake_time(monkeypatch: pytest.MonkeyPatch, clock: FakeClock) -> None:
    """Point tenacity's clock (attempt timestamps, hence the deadline) at the fake loop clock."""
    monkeypatch.setattr(tenacity, "time", types.SimpleNamespace(monotonic=lambda: clock.now))


async def run(policy: RetryPolicy, script: Script, clock: FakeClock) -> asyncio.Task[str]:
    """Run ``script`` under the policy, moving the fake clock until it is done."""
    task: asyncio.Task[str] = asyncio.get_running_loop().create_task(policy.retrying()(script))
    for _ in range(1000):
        await clock.advance(1.0)
        if task.done():
            return task
    raise AssertionError("still retrying after 1000 s")


def state_after(policy: RetryPolicy, exc: BaseException | None, attempt: int) -> Any:
    """tenacity's RetryCallState after ``attempt`` attempts, the last one failing with exc."""
    state = tenacity.RetryCallState(retry_object=policy.retrying(), fn=None, args=(), kwargs={})
    state.attempt_number = attempt
    if exc is not None:
        state.set_exception((type(exc), exc, None))
    return state


# --------------------------------------------------------------------------------------------
# The decision: should_retry, one branch at a time, each logged at DEBUG
# --------------------------------------------------------------------------------------------

_UNKNOWN_NO = "not retrying, a retry could duplicate"
_UNKNOWN_YES = "retrying (retry_unknown_outcome=True)"


@pytest.mark.parametrize(
    ("make", "unknown_ok", "expected", "message"),
    [
        pytest.param(
            lambda: rate_limited(None),
            False,
            True,
            "429: retrying, the request was not processed",
            id="429-no-retry-after",
        ),
        pytest.param(
            lambda: rate_limited(5.0),
            False,
            True,
            "429: retrying, the request was not processed",
            id="429-under-the-cap",
        ),
        pytest.param(
            lambda: rate_limited(60.0),
            False,
            True,
            "429: retrying, the request was not processed",
            id="429-exactly-the-cap",
        ),
        pytest.param(
            lambda: rate_limited(60.5),
            False,
            False,
            "429 asks for 60.500s, over max_retry_wait=60.000s: giving up",
            id="429-over-the-cap",
        ),
        pytest.param(
            lambda: rate_limited(60.5),
            True,
            False,
            "429 asks for 60.500s, over max_retry_wait=60.000s: giving up",
            id="429-over-the-cap:unknown-outcome-allowed",
        ),
        pytest.param(
            lambda: APITimeoutError("read timed out", may_have_succeeded=True),
            False,
            False,
            f"outcome unknown (read timed out): {_UNKNOWN_NO}",
            id="timeout-after-sending",
        ),
        pytest.param(
            lambda: APITimeoutError("read timed out", may_have_succeeded=True),
            True,
            True,
            f"outcome unknown (read timed out): {_UNKNOWN_YES}",
            id="timeout-after-sending:unknown-outcome-allowed",
        ),
        pytest.param(
            lambda: APIConnectionError("reset by peer", may_have_succeeded=True),
            False,
            False,
            f"outcome unknown (reset by peer): {_UNKNOWN_NO}",
            id="connection-lost-after-sending",
        ),
        pytest.param(
            lambda: error_for_status(503, {}, b""),
            False,
            False,
            f"outcome unknown (HTTP 503): {_UNKNOWN_NO}",
            id="503",
        ),
        pytest.param(
            lambda: error_for_status(500, {}, b'{"error": "boom"}'),
            True,
            True,
            f"outcome unknown (HTTP 500: boom): {_UNKNOWN_YES}",
            id="500:unknown-outcome-allowed",
        ),
        pytest.param(
            lambda: APIConnectionError("could not connect"),
            False,
            True,
            "not sent (could not connect): retrying",
            id="not-sent",
        ),
        pytest.param(
            lambda: APITimeoutError("timed out connecting"),
            False,
            True,
            "not sent (timed out connecting): retrying",
            id="connect-timeout",
        ),
        pytest.param(
            lambda: APIConnectionError("could not connect"),
            True,
            True,
            "not sent (could not connect): retrying",
            id="not-sent:unknown-outcome-allowed",
        ),
        pytest.param(
            lambda: error_for_status(400, {}, b'{"error": "bad"}'),
            True,
            False,
            "BadRequestError: not retryable",
            id="400",
        ),
        pytest.param(
            lambda: error_for_status(401, {}, b""),
            True,
            False,
            "AuthenticationError: not retryable",
            id="401",
        ),
        pytest.param(
            lambda: error_for_status(404, {}, b""),
            False,
            False,
            "NotFoundError: not retryable",
            id="404",
        ),
        pytest.param(
            lambda: error_for_status(418, {}, b""),
            False,
            False,
            "APIStatusError: not retryable",
            id="418-other-status",
        ),
        pytest.param(
            lambda: DecodeError("not an opportunity", body=b"[]"),
            True,
            False,
            "DecodeError: not retryable",
            id="decode-error",
        ),
        pytest.param(
            lambda: InvalidInputError("value", -1, "must be >= 0"),
            True,
            False,
            "InvalidInputError: not retryable",
            id="invalid-input",
        ),
        pytest.param(
            lambda: KeyError("bug"), True, False, "KeyError: not retryable", id="not-a-close-error"
        ),
    ],
)
def test_should_retry(
    caplog: pytest.LogCaptureFixture,
    make: Callable[[], BaseException],
    unknown_ok: bool,
    expected: bool,
    message: str,
) -> None:
    caplog.set_level(logging.DEBUG, logger="close_async")
    policy = RetryPolicy(retry_unknown_outcome=unknown_ok)
    assert policy.should_retry(make()) is expected
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        ("close_async", logging.DEBUG, message)
    ]


def test_the_cap_is_max_retry_wait() -> None:
    assert RetryPolicy(max_retry_wait=1.0).should_retry(rate_limited(1.5)) is False
    assert RetryPolicy(max_retry_wait=2.0).should_retry(rate_limited(1.5)) is True
    assert RetryPolicy(max_retry_wait=0).should_retry(rate_limited(0.0)) is True


# --------------------------------------------------------------------------------------------
# The wait: the server's, or full-jitter exponential backoff
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("retry_after", [0.0, 0.01, 0.25, 7.5, 30.0, 59.0])
@pytest.mark.parametrize("attempt", [1, 4])
def test_a_429_waits_exactly_what_it_asks(retry_after: float, attempt: int) -> None:
    policy = RetryPolicy()  # 30 s is over max_backoff: the server's word still wins
    assert policy.wait(state_after(policy, rate_limited(retry_after), attempt)) == retry_after


def _backoff_cases() -> list[Any]:
    cases = []
    for initial, cap in [(const.INITIAL_BACKOFF, const.MAX_BACKOFF), (0.1, 1.0), (2.0, 3.0)]:
        for attempt in (1, 2, 3, 4, 5, 6, 12, 60):
            bound = min(cap, initial * 2 ** (attempt - 1))
            cases.append(
                pytest.param(
                    initial, cap, attempt, bound, id=f"initial={initial:g}:max={cap:g}:n={attempt}"
                )
            )
    return cases


@pytest.mark.parametrize(("initial", "cap", "attempt", "bound"), _backoff_cases())
@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: APIConnectionError("refused"), id="not-sent"),
        pytest.param(lambda: rate_limited(None), id="429-without-retry-after"),
        pytest.param(lambda: error_for_status(503, {}, b""), id="5xx"),
        pytest.param(lambda: None, id="no-outcome"),
    ],
)
def test_otherwise_full_jitter_exponential_backoff(
    make: Callable[[], BaseException | None],
    initial: float,
    cap: float,
    attempt: int,
    bound: float,
) -> None:
    policy = RetryPolicy(initial_backoff=initial, max_backoff=cap)
    state = state_after(policy, make(), attempt)
    samples = [policy.wait(state) for _ in range(300)]
    assert all(0 <= s <= bound for s in samples)
    # The whole interval is used: full jitter, not a fixed or half-jittered wait. (Each fails
    # by chance with probability 0.75 ** 300.)
    assert max(samples) > 0.75 * bound
    assert min(samples) < 0.25 * bound


# --------------------------------------------------------------------------------------------
# retrying(): the tenacity object, driven end to end
# --------------------------------------------------------------------------------------------


def test_retrying_builds_a_fresh_object_each_call() -> None:
    policy = RetryPolicy()
    first, second = policy.retrying(), policy.retrying()
    assert isinstance(first, tenacity.AsyncRetrying)
    assert first is not second


@pytest.mark.parametrize("max_retries", [0, 1, 3, 7])
async def test_stops_after_max_retries_plus_one_attempts_and_reraises_the_last_error(
    fake_clock: FakeClock, max_retries: int
) -> None:
    policy = RetryPolicy(max_retries=max_retries, initial_backoff=0.01, max_backoff=0.01)
    failures = [APIConnectionError(f"refused #{i}") for i in range(10)]
    script = Script(*failures)
    task = await run(policy, script, fake_clock)
    with pytest.raises(APIConnectionError) as info:
        task.result()
    assert script.count == max_retries + 1
    assert info.value is failures[max_retries]  # the original object, not a RetryError
    assert not isinstance(info.value, tenacity.RetryError)


async def test_a_success_after_retries_is_returned(fake_clock: FakeClock) -> None:
    t0 = fake_clock.now
    policy = RetryPolicy(max_retries=3)
    script = Script(rate_limited(0.25), rate_limited(1.5), rate_limited(0.0))
    task = await run(policy, script, fake_clock)
    assert task.result() == "ok"
    # Each retry waits exactly what the 429 asked.
    assert script.calls == pytest.approx([t0, t0 + 0.25, t0 + 1.75, t0 + 1.75], abs=1e-9)


async def test_retries_back_off_within_the_jitter_window(fake_clock: FakeClock) -> None:
    policy = RetryPolicy(max_retries=4, initial_backoff=0.5, max_backoff=1.5)
    script = Script(*(APIConnectionError("refused") for _ in range(4)))
    task = await run(policy, script, fake_clock)
    assert task.result() == "ok"
    gaps = [b - a for a, b in itertools.pairwise(script.calls)]
    assert len(gaps) == 4
    for gap, bound in zip(gaps, [0.5, 1.0, 1.5, 1.5], strict=True):
        assert 0 <= gap <= bound + 1e-9


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: error_for_status(400, {}, b""), id="400"),
        pytest.param(lambda: rate_limited(61.0), id="429-over-the-cap"),
        pytest.param(lambda: APITimeoutError("x", may_have_succeeded=True), id="unknown-outcome"),
        pytest.param(lambda: RuntimeError("bug"), id="not-a-close-error"),
    ],
)
async def test_a_non_retryable_error_is_raised_at_once(
    fake_clock: FakeClock, make: Callable[[], BaseException]
) -> None:
    exc = make()
    script = Script(exc, rate_limited(0.0))
    task = await run(RetryPolicy(max_retries=5), script, fake_clock)
    with pytest.raises(type(exc)) as info:
        task.result()
    assert info.value is exc
    assert script.count == 1


async def test_a_429_over_the_cap_keeps_its_retry_after(fake_clock: FakeClock) -> None:
    task = await run(RetryPolicy(max_retry_wait=10), Script(rate_limited(11.0)), fake_clock)
    with pytest.raises(RateLimitError) as info:
        task.result()
    assert info.value.retry_after == 11.0


async def test_unknown_outcomes_are_retried_when_allowed(fake_clock: FakeClock) -> None:
    policy = RetryPolicy(retry_unknown_outcome=True, initial_backoff=0.01)
    script = Script(APITimeoutError("x", may_have_succeeded=True), error_for_status(502, {}, b""))
    task = await run(policy, script, fake_clock)
    assert task.result() == "ok"
    assert script.count == 3


async def test_concurrent_calls_keep_their_own_count(fake_clock: FakeClock) -> None:
    policy = RetryPolicy(max_retries=2, initial_backoff=0.01)
    scripts = [Script(*(APIConnectionError("refused") for _ in range(5))) for _ in range(3)]
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[str]] = [loop.create_task(policy.retrying()(s)) for s in scripts]
    await fake_clock.advance(10)
    for task in tasks:
        with pytest.raises(APIConnectionError):
            task.result()
    assert [s.count for s in scripts] == [3, 3, 3]


# --------------------------------------------------------------------------------------------
# The deadline: no wait that would pass it
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("deadline", "duration", "retry_after", "attempts"),
    [
        pytest.param(1.0, 0.0, 0.4, 3, id="waits-0,0.4,0.8:the-next-would-end-at-1.2"),
        pytest.param(1.0, 0.15, 0.4, 2, id="attempt-time-counts:the-next-would-end-at-1.1"),
        pytest.param(0.3, 0.0, 0.5, 1, id="the-first-wait-already-passes-it"),
        # Issue 11: 429s do not count against max_retries; the deadline, or the backstop, stops.
        pytest.param(10.2, 0.0, 0.4, 26, id="far-deadline:429s-are-not-max-retries"),
        pytest.param(None, 0.0, 5.0, MAX_RATE_LIMITED + 1, id="no-deadline:the-backstop"),
    ],
)
async def test_the_deadline_stops_before_a_wait_that_would_pass_it(
    fake_clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    deadline: float | None,
    duration: float,
    retry_after: float,
    attempts: int,
) -> None:
    on_fake_time(monkeypatch, fake_clock)
    t0 = fake_clock.now
    policy = RetryPolicy(max_retries=5, deadline=deadline)
    failures = [rate_limited(retry_after) for _ in range(MAX_RATE_LIMITED + 10)]
    script = Script(*failures, duration=duration)
    task = await run(policy, script, fake_clock)
    with pytest.raises(RateLimitError) as info:
        task.result()
    assert info.value is failures[attempts - 1]
    step = duration + retry_after
    assert script.calls == pytest.approx([t0 + i * step for i in range(attempts)], abs=1e-9)
    if deadline is not None:
        assert script.calls[-1] + duration - t0 < deadline


# --------------------------------------------------------------------------------------------
# Logging: each retry at INFO, with its wait and the failure
# --------------------------------------------------------------------------------------------


async def test_each_retry_is_logged_at_info(
    fake_clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="close_async")
    policy = RetryPolicy(max_retries=3)
    script = Script(rate_limited(0.01), rate_limited(2.5), APIConnectionError("could not connect"))
    task = await run(policy, script, fake_clock)
    assert task.result() == "ok"
    retry_info = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert retry_info[:2] == [
        "retrying in 0.010s (attempt 1 failed: RateLimitError: HTTP 429)",
        "retrying in 2.500s (attempt 2 failed: RateLimitError: HTTP 429)",
    ]
    assert len(retry_info) == 3
    assert retry_info[2].startswith("retrying in ")
    assert retry_info[2].endswith("s (attempt 3 failed: APIConnectionError: could not connect)")
    wait = float(retry_info[2].removeprefix("retrying in ").split("s", 1)[0])
    assert 0 <= wait <= const.INITIAL_BACKOFF * 4
    assert [r.levelno for r in caplog.records] == [logging.DEBUG, logging.INFO] * 3
    assert all(r.name == "close_async" for r in caplog.records)


async def test_no_info_log_when_nothing_is_retried(
    fake_clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="close_async")
    task = await run(RetryPolicy(max_retries=0), Script(rate_limited(0.1)), fake_clock)
    with pytest.raises(RateLimitError):
        task.result()
    assert [r.levelno for r in caplog.records] == [logging.DEBUG]  # the decision, no retry


def test_the_retry_log_copes_with_a_bare_state(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="close_async")
    retrying = RetryPolicy().retrying()
    assert retrying.before_sleep is not None
    retrying.before_sleep(state_after(RetryPolicy(), None, 1))  # no outcome, no next action
    assert [r.getMessage() for r in caplog.records] == [
        "retrying in 0.000s (attempt 1 failed: NoneType: None)"
    ]


# --------------------------------------------------------------------------------------------
# Construction
# --------------------------------------------------------------------------------------------


def test_defaults() -> None:
    policy = RetryPolicy()
    assert dataclasses.astuple(policy) == (
        const.DEFAULT_MAX_RETRIES,
        const.DEFAULT_MAX_RETRY_WAIT,
        None,
        False,
        const.INITIAL_BACKOFF,
        const.MAX_BACKOFF,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.max_retries = 5  # type: ignore[misc]


_NUMERIC_FIELDS = ["max_retries", "max_retry_wait", "initial_backoff", "max_backoff", "deadline"]


def _invalid_cases() -> list[Any]:
    bad: list[tuple[str, object]] = [
        ("negative", -1),
        ("negative-float", -0.001),
        ("bool", True),
        ("false", False),
        ("str", "3"),
        ("nan", math.nan),
        ("-inf", -math.inf),
        ("list", [1]),
    ]
    cases = [
        pytest.param(name, value, "must be a number >= 0", id=f"{name}={label}")
        for name in _NUMERIC_FIELDS
        for label, value in bad
    ]
    cases += [
        pytest.param(name, None, "must be a number >= 0", id=f"{name}=None")
        for name in _NUMERIC_FIELDS
        if name != "deadline"
    ]
    cases += [
        pytest.param("max_retries", 2.0, "must be an integer", id="max_retries=float-whole"),
        pytest.param("max_retries", 1.5, "must be an integer", id="max_retries=float"),
        pytest.param("max_retries", math.inf, "must be an integer", id="max_retries=inf"),
    ]
    return cases


@pytest.mark.parametrize(("name", "value", "reason"), _invalid_cases())
def test_invalid_arguments_are_rejected(name: str, value: object, reason: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        RetryPolicy(**{name: value})  # type: ignore[arg-type]
    assert (info.value.field, info.value.reason) == (name, reason)
    assert info.value.value is value
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, CloseError)


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"max_retries": 0}, id="no-retries"),
        pytest.param({"max_retries": 100}, id="many-retries"),
        pytest.param({"max_retry_wait": 0}, id="never-wait-for-a-429"),
        pytest.param({"max_retry_wait": math.inf}, id="always-wait-for-a-429"),
        pytest.param({"deadline": 0}, id="zero-deadline"),
        pytest.param({"deadline": 2.5}, id="float-deadline"),
        pytest.param({"initial_backoff": 0, "max_backoff": 0}, id="no-backoff"),
        pytest.param({"retry_unknown_outcome": True}, id="retry-unknown-outcome"),
    ],
)
def test_valid_arguments_are_accepted(kwargs: dict[str, Any]) -> None:
    policy = RetryPolicy(**kwargs)
    for name, value in kwargs.items():
        assert getattr(policy, name) == value


# --------------------------------------------------------------------------------------------
# Issue 11: 429s are not max_retries; repeated zero waits get a growing floor
# --------------------------------------------------------------------------------------------


async def test_429s_are_retried_past_max_retries_and_other_failures_still_count(
    fake_clock: FakeClock,
) -> None:
    policy = RetryPolicy(max_retries=2, initial_backoff=0.01, max_backoff=0.01)
    limited = [rate_limited(0.5) for _ in range(7)]
    refused = [APIConnectionError(f"refused #{i}") for i in range(3)]
    script = Script(*limited[:4], refused[0], *limited[4:], refused[1], refused[2])
    task = await run(policy, script, fake_clock)
    with pytest.raises(APIConnectionError) as info:
        task.result()
    assert info.value is refused[2]  # the third other failure, after 7 429s and 2 retries
    assert script.count == 7 + 3


async def test_max_retries_zero_still_means_no_retry_even_for_a_429(fake_clock: FakeClock) -> None:
    script = Script(rate_limited(0.1), rate_limited(0.1))
    task = await run(RetryPolicy(max_retries=0), script, fake_clock)
    with pytest.raises(RateLimitError):
        task.result()
    assert script.count == 1


async def test_repeated_429s_asking_for_nothing_get_a_growing_floor(fake_clock: FakeClock) -> None:
    policy = RetryPolicy(max_retries=3, max_backoff=1.0)
    script = Script(*[rate_limited(0.0) for _ in range(8)])
    task = await run(policy, script, fake_clock)
    assert task.result() == "ok"
    gaps = [b - a for a, b in zip(script.calls, script.calls[1:], strict=False)]
    floor = ZERO_WAIT_FLOOR
    expected = [0.0] + [min(floor * 2**k, 1.0) for k in range(7)]  # honoured once, then doubled
    assert gaps == pytest.approx(expected, abs=1e-9)
