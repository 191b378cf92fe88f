"""Test helpers: ``FakeCloseServer``, a realistic fake of Close on ``127.0.0.1``.

```python
from close_async.testing import FakeCloseServer

async with FakeCloseServer() as server:
    ...  # point AsyncCloseClient(base_url=server.base_url) at it; server.created holds the result
```

The fake lives in ``close_async._fake`` and imports nothing else of the SDK, so that an SDK bug
cannot hide behind shared code. (A package, not ``testing.py``, only so that git's rename
detection carries edits of the old ``testing.py`` to ``_fake/server.py``.)
"""

from .._fake.server import (
    ALGORITHMS,
    DIALECTS,
    FAULTS,
    LEAD_MISSING,
    LEAD_STATUSES,
    PRESETS,
    STATUS_MISSING,
    FakeCloseServer,
    FaultPlan,
    RateLimitModel,
    RequestRecord,
)

__all__ = [
    "ALGORITHMS",
    "DIALECTS",
    "FAULTS",
    "FakeCloseServer",
    "FaultPlan",
    "LEAD_MISSING",
    "LEAD_STATUSES",
    "PRESETS",
    "RateLimitModel",
    "RequestRecord",
    "STATUS_MISSING",
]
