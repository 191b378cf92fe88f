"""``opportunities.reconcile``: was a create whose outcome is unknown carried out, or not?

Close has no idempotency keys and no request id, so the only way to learn what became of a create
that ended without a definite answer (a timeout, a lost connection, a 5xx) is to look for what it
would have made. The verdict, for a create sent at ``sent_at``:

- ``created``: exactly one opportunity matches (``_match.Probe``: same lead, every sent field
  equal, created at or after ``sent_at`` less ``CLOCK_SKEW``). Positive evidence counts at once.
- ``ambiguous``: more than one matches (a duplicate already exists, or someone made a twin).
- ``absent``: none matches, ``settle`` seconds have passed since ``sent_at`` (Close's list lags
  its writes by 30-60 s) and two reads found nothing, the last of them after ``settle``. Only then
  is it safe to send again.
- ``pending``: none matches yet and it is too early to say ``absent`` (only with ``wait=False``).

Opportunities this client created itself (``RecentIds``, the last ``KNOWN_IDS``) and the ids in
``exclude`` never match: they are some other create's. ``reconcile_group`` answers for ``k``
creates that no server could tell apart (identical rows of one file) at once, so that two of them
are never matched to one opportunity: ``m`` matches for ``k`` creates give ``min(m, k)``
``created`` (each its own), the rest ``absent`` or ``pending``, and ``m > k`` makes them all
``ambiguous``.

Reads (each one ``list`` call): with ``wait=True`` at most three for an ``absent`` verdict (now,
half-way to ``settle``, at ``settle``), one or two when ``settle`` has already passed (the second
``REREAD_GAP`` later); the first read that finds the create ends it. Waits use the loop's clock.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
from collections.abc import AsyncIterable, Callable, Container, Sequence
from dataclasses import dataclass
from typing import Literal

from ..._exceptions import CloseError, InvalidInputError
from .match import Probe
from .requests import CreateOpportunity
from .responses import Opportunity

State = Literal["created", "absent", "ambiguous", "pending"]
Lister = Callable[..., AsyncIterable[Opportunity]]  # ``opportunities.list(**filters)``

#: How far Close's clock may be behind ours, in seconds: candidates created this long before
#: ``sent_at`` still count (a wider window only risks ``ambiguous``, never a wrong match).
CLOCK_SKEW = 60.0
#: Seconds after ``sent_at`` before "not listed" means "not created": Close's list has been seen
#: 30-60 s behind its writes.
DEFAULT_SETTLE = 120.0
#: Seconds between the two reads that must both find nothing (less when ``settle`` is shorter).
REREAD_GAP = 1.0
#: How many of its own creates a client remembers, newest first (about 1 MB of ids).
KNOWN_IDS = 10_000
_UTC = dt.timezone.utc


@dataclass(frozen=True)
class Reconciled:
    """The verdict on one create: ``state``, and ``opportunity`` when it is ``created``."""

    state: State
    """``"created"``, ``"absent"`` (safe to send again), ``"ambiguous"`` or ``"pending"``."""
    opportunity: Opportunity | None = None
    """The opportunity the create made, when ``state`` is ``"created"``; else None."""
    matches: tuple[Opportunity, ...] = ()
    """Every opportunity that matched (several when ``"ambiguous"``)."""
    reads: int = 0
    """How many list reads the verdict took."""

    def __repr__(self) -> str:
        found = f" {self.opportunity.id}" if self.opportunity is not None else ""
        many = f" matches={len(self.matches)}" if len(self.matches) > 1 else ""
        return f"<Reconciled {self.state}{found}{many} reads={self.reads}>"


class SentClock:
    """The ``on_sent`` hook of one create: notes when its first body byte left (``at``), then
    passes the word on. ``stamp(error)`` gives an error that may have succeeded its ``sent_at``
    (the earliest attempt: a wider window is the safe side)."""

    __slots__ = ("at", "hook")

    def __init__(self, hook: Callable[[bool], None] | None = None) -> None:
        self.at: dt.datetime | None = None
        self.hook = hook

    def __call__(self, sent: bool) -> None:
        if sent and self.at is None:
            self.at = dt.datetime.now(_UTC)
        if self.hook is not None:
            self.hook(sent)

    def stamp(self, error: CloseError) -> CloseError:
        if error.may_have_succeeded and error.sent_at is None:
            error.sent_at = self.at or dt.datetime.now(_UTC)  # no byte seen: it left by now
        return error


class RecentIds:
    """The last ``size`` ids added, for ``in`` (an insertion-ordered dict used as a set)."""

    __slots__ = ("_ids", "size")

    def __init__(self, size: int = KNOWN_IDS) -> None:
        self._ids: dict[str, None] = {}
        self.size = size

    def add(self, opportunity_id: str) -> None:
        self._ids[opportunity_id] = None
        if len(self._ids) > self.size:
            del self._ids[next(iter(self._ids))]

    def __contains__(self, opportunity_id: object) -> bool:
        return opportunity_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)


def check_sent_at(sent_at: object) -> dt.datetime:
    if not isinstance(sent_at, dt.datetime):
        raise InvalidInputError("sent_at", sent_at, "must be a datetime (the error's .sent_at)")
    if sent_at.tzinfo is None or sent_at.utcoffset() is None:
        raise InvalidInputError("sent_at", sent_at, "must be tz-aware (e.g. the error's .sent_at)")
    return sent_at


def check_settle(settle: object) -> float:
    number = isinstance(settle, (int, float)) and not isinstance(settle, bool)
    if not number or not 0 <= settle < math.inf:  # type: ignore[operator]
        raise InvalidInputError("settle", settle, "must be a finite number of seconds >= 0")
    return float(settle)  # type: ignore[arg-type]


async def reconcile_group(
    lister: Lister,
    item: CreateOpportunity,
    sent_ats: Sequence[dt.datetime],
    *,
    settle: float = DEFAULT_SETTLE,
    wait: bool = True,
    exclude: Container[str] = (),
    skew: float = CLOCK_SKEW,
) -> list[Reconciled]:
    """The verdicts of ``len(sent_ats)`` creates of the same ``item``, in the order given."""
    if not sent_ats:
        return []
    sent_ats = [check_sent_at(s) for s in sent_ats]
    settle = check_settle(settle)
    probe = Probe(item)
    earliest, k = min(sent_ats), len(sent_ats)
    since = probe.since(earliest, skew)
    filters = probe.filters(earliest, skew)
    loop = asyncio.get_running_loop()
    elapsed = (dt.datetime.now(_UTC) - max(sent_ats)).total_seconds()
    settled_at = loop.time() + max(0.0, settle - elapsed)
    gap = min(REREAD_GAP, settle)
    reads = short = 0
    halfway = True  # one read half-way to settle, if there is time for it
    while True:
        found: dict[str, Opportunity] = {}
        async for opp in lister(**filters):
            if opp.id not in exclude and opp.id not in found and probe.matches(opp, since):
                found[opp.id] = opp
        reads += 1
        now = loop.time()
        if len(found) >= k:
            break
        short += 1
        if now >= settled_at and short >= 2:
            break
        if not wait and now < settled_at:
            break
        if not wait:
            continue  # settled already: the confirming read at once
        if now < settled_at:
            later = (now + settled_at) / 2 if halfway and settled_at - now > 2 * gap else None
            halfway = False
            await asyncio.sleep((later or settled_at) - now)
        else:
            await asyncio.sleep(gap)
    return _verdicts(sent_ats, list(found.values()), settled=now >= settled_at, reads=reads)


def _verdicts(
    sent_ats: Sequence[dt.datetime], found: list[Opportunity], *, settled: bool, reads: int
) -> list[Reconciled]:
    k, matches = len(sent_ats), tuple(found)
    if len(found) > k:
        return [Reconciled("ambiguous", None, matches, reads) for _ in sent_ats]
    # Indistinguishable creates: the earliest sent takes the earliest created (any pairing is
    # as true as another; this one is stable).
    found.sort(key=lambda o: (o.date_created or dt.datetime.min.replace(tzinfo=_UTC), o.id))
    order = sorted(range(k), key=lambda i: sent_ats[i])
    rest: State = "absent" if settled else "pending"
    results: list[Reconciled] = [Reconciled(rest, None, matches, reads)] * k
    for opp, i in zip(found, order[: len(found)], strict=True):
        results[i] = Reconciled("created", opp, matches, reads)
    return results


async def reconcile(
    lister: Lister,
    item: CreateOpportunity,
    *,
    sent_at: dt.datetime | None,
    settle: float = DEFAULT_SETTLE,
    wait: bool = True,
    exclude: Container[str] = (),
) -> Reconciled:
    """The verdict on one create of ``item`` sent at ``sent_at`` (see the module docstring)."""
    [result] = await reconcile_group(
        lister, item, [check_sent_at(sent_at)], settle=settle, wait=wait, exclude=exclude
    )
    return result


class Excluded(Container[str]):
    """Ids that never match: the caller's ``exclude`` and the client's own recent creates."""

    __slots__ = ("parts",)

    def __init__(self, *parts: Container[str]) -> None:
        self.parts = parts

    def __contains__(self, opportunity_id: object) -> bool:
        return any(opportunity_id in part for part in self.parts)
