"""What an import did, row by row counted: ``ImportSummary``, and the exit code it means.

- ``rows``: lines read; each ends in exactly one of ``created``, ``skipped`` (created by an
  earlier run), ``failed`` (certainly not created), ``unknown`` (may have been created), or is
  held back by a stop (``not_sent``, with the lines in flight when cut in ``in_flight``).
- ``stopped``/``stop_code``: why the run ended before the end of the file, and its exit code:
  ``EXIT_STOPPED`` (3: the server or the network refused every row), ``EXIT_JOURNAL`` (4: the
  journal could not be written) or ``EXIT_INTERRUPTED`` (130: Ctrl-C, SIGTERM).
- Otherwise ``exit_code`` is 1 when a row failed or is unknown, else 0.
- ``reconciled``/``resent``/``settled``: what ``--reconcile`` did with the unknown rows.

Plain data: the importer fills it, the progress bar and the command line's summary read it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

EXIT_STOPPED, EXIT_JOURNAL, EXIT_INTERRUPTED = 3, 4, 130


@dataclass
class ImportSummary:
    rows: int = 0
    created: int = 0
    skipped: int = 0  # created by an earlier run
    failed: list[tuple[int, str]] = field(default_factory=list)
    unknown: list[tuple[int, str]] = field(default_factory=list)
    sent: int = 0
    seconds: float = 0.0
    stopped: str | None = None  # why the run stopped before the end of the file
    stop_code: int = 0
    not_sent: int = 0  # read but held back by the stop (plus those the server refused with it)
    in_flight: list[int] = field(default_factory=list)  # lines cut while their request was out
    last_line: int = 0  # the last line read
    unrecorded: list[tuple[int, str]] = field(default_factory=list)  # the journal refused them
    reconciled: int = 0  # unknown rows --reconcile found created (counted in created too)
    resent: int = 0  # unknown rows --reconcile found absent and sent again
    settled: list[tuple[int, str]] = field(default_factory=list)  # what --reconcile did, per row

    @property
    def exit_code(self) -> int:
        if self.stopped is not None:
            return self.stop_code
        return 1 if self.failed or self.unknown else 0


ProgressCallback = Callable[[ImportSummary], None]
