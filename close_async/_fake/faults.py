"""Private helpers of :mod:`close_async.testing`: random faults for reconcile testing.

Self-contained (stdlib only) so the fake server never depends on the rest of the package.

A :class:`FaultPlan` gives each kind of failure a rate; ``FakeCloseServer(faults=plan)`` draws
once per create request (``POST /opportunity/``) that passes auth and the rate limiter and is not
served by a fault scripted with ``fail_next`` (scripted faults come first and take no draw). The
draws come from one ``random.Random(seed)``: the n-th such request always gets the n-th draw, so a
run with the same seed and the same arrival order fails the same requests. Each rate is the
chance of one named fault of ``FAULTS``:

============================  =======================  ==========================================
rate                          fault                    what the client sees, what the server keeps
============================  =======================  ==========================================
``drop_after_create``         ``drop``                 created; the connection drops unanswered
``drop_before_create``        ``drop_before_create``   nothing created; the connection drops
``error_after_create``        ``500_after_create``     created; a 500 JSON error
``error_before_create``       ``500``                  nothing created; a 500 JSON error
``create_after_timeout``      ``late_create``          the server holds the request
                                                       ``late_seconds`` (a server option; make it
                                                       longer than the client's timeout), *then*
                                                       creates and answers 200 (to nobody, by then)
============================  =======================  ==========================================
"""

from __future__ import annotations

import random
from dataclasses import dataclass, fields

__all__ = ["FaultPlan", "FaultDraw"]


@dataclass(frozen=True, kw_only=True, slots=True)
class FaultPlan:
    """Rates (0 to 1, summing to at most 1) of random create faults; see the module docstring.

    ``FaultPlan(drop_after_create=0.01, drop_before_create=0.01, error_after_create=0.005,
    seed=7)`` is the mix ``benchmarks/bench_import.py --faults`` measures.
    """

    drop_after_create: float = 0.0
    """Created, then the connection is dropped before any answer (fault ``drop``)."""
    drop_before_create: float = 0.0
    """Dropped before anything is created (fault ``drop_before_create``)."""
    error_after_create: float = 0.0
    """Created, then answered 500 (fault ``500_after_create``)."""
    error_before_create: float = 0.0
    """Answered 500 without creating (fault ``500``)."""
    create_after_timeout: float = 0.0
    """Held ``late_seconds``, then created and answered (fault ``late_create``)."""
    seed: int | None = 0
    """Seed of the draws (None: a different sequence each run)."""

    def __post_init__(self) -> None:
        rates = self.rates()
        for name, rate in rates:
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"FaultPlan.{name} must be between 0 and 1, not {rate!r}")
        if sum(rate for _, rate in rates) > 1.0 + 1e-9:
            raise ValueError("FaultPlan rates must sum to at most 1")

    def rates(self) -> tuple[tuple[str, float], ...]:
        """``((field, rate), ...)`` in declaration order, ``seed`` excluded."""
        return tuple((f.name, getattr(self, f.name)) for f in fields(self) if f.name != "seed")


_FAULT_OF = {
    "drop_after_create": "drop",
    "drop_before_create": "drop_before_create",
    "error_after_create": "500_after_create",
    "error_before_create": "500",
    "create_after_timeout": "late_create",
}


class FaultDraw:
    """A ``FaultPlan``'s live state: ``next()`` is the fault (or None) of the next create."""

    def __init__(self, plan: FaultPlan) -> None:
        self.plan = plan
        self._rng = random.Random(plan.seed)
        self._table = [(_FAULT_OF[name], rate) for name, rate in plan.rates() if rate > 0]

    def __repr__(self) -> str:
        return f"<FaultDraw {self.plan!r}>"

    def next(self) -> str | None:
        """One draw: each fault with its rate, None (no fault) with the rest."""
        if not self._table:
            return None
        roll = self._rng.random()
        for fault, rate in self._table:
            if roll < rate:
                return fault
            roll -= rate
        return None
