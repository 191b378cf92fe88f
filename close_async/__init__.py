"""close-async: a fast, typed asyncio SDK for the Close CRM API.

```python
from close_async import AsyncCloseClient

async with AsyncCloseClient() as close:  # API key from $CLOSE_API_KEY
    opp = await close.opportunities.create(lead_id="lead_...", value=500000)
```
"""

from __future__ import annotations

import importlib as _importlib
from typing import TYPE_CHECKING, Any

from ._constants import __version__

# The public names load on first use (PEP 562): `close-async --version` and shell completion
# import this package, and aiohttp alone takes 0.2-0.3 s to import.
if TYPE_CHECKING:
    from ._client import AsyncCloseClient
    from ._exceptions import (
        APIConnectionError,
        APIStatusError,
        APITimeoutError,
        AuthenticationError,
        BadRequestError,
        CloseError,
        DecodeError,
        InvalidInputError,
        NotFoundError,
        PermissionDeniedError,
        RateLimitError,
        RedirectError,
        ServerError,
    )
    from ._resources.leads import CreateLead, Lead
    from ._resources.opportunities.codec import decode_opportunity
    from ._resources.opportunities.reconcile import Reconciled
    from ._resources.opportunities.resource import Opportunities
    from ._transport.limiter import Limiter, TokenBucket
    from ._transport.redis import RedisTokenBucket
    from ._transport.retry import RetryPolicy
    from .models import (
        ActionItem,
        AdjustCloseDateDetails,
        Attachment,
        AttachmentIn,
        ChangeStatusDetails,
        CloseModel,
        CommentSummary,
        ContactEmail,
        ContactPhone,
        CreateOpportunity,
        FollowUpCallDetails,
        FollowUpEmailDetails,
        FollowUpSMSDetails,
        IntegrationLink,
        Opportunity,
        StallStatus,
        SuggestedAction,
        SuggestedActionDetails,
        ValuePeriod,
    )

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "ActionItem",
    "AdjustCloseDateDetails",
    "AsyncCloseClient",
    "Attachment",
    "AttachmentIn",
    "AuthenticationError",
    "BadRequestError",
    "ChangeStatusDetails",
    "CloseError",
    "CloseModel",
    "CommentSummary",
    "ContactEmail",
    "ContactPhone",
    "CreateLead",
    "CreateOpportunity",
    "DecodeError",
    "FollowUpCallDetails",
    "FollowUpEmailDetails",
    "FollowUpSMSDetails",
    "IntegrationLink",
    "InvalidInputError",
    "Lead",
    "Limiter",
    "NotFoundError",
    "Opportunities",
    "Opportunity",
    "PermissionDeniedError",
    "RateLimitError",
    "Reconciled",
    "RedirectError",
    "RedisTokenBucket",
    "RetryPolicy",
    "ServerError",
    "StallStatus",
    "SuggestedAction",
    "SuggestedActionDetails",
    "TokenBucket",
    "ValuePeriod",
    "__version__",
    "decode_opportunity",
]

# The modules that hold the names of __all__, imported by the first use of any of them.
_MODULES = (
    "._client",
    "._resources.leads",
    "._resources.opportunities.codec",
    "._resources.opportunities.reconcile",
    "._exceptions",
    "._transport.limiter",
    "._transport.redis",
    "._transport.retry",
    ".models",
)
# Public submodules, bound as attributes on first use (``close_async.models.Opportunity``).
_SUBMODULES = ("models", "testing")

# Hidden from type checkers: a module-level ``__getattr__`` tells mypy and pyright that every
# attribute exists, and a misspelled ``from close_async import AsyncCloseClinet`` would pass.
if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        if name in _SUBMODULES:
            return _importlib.import_module(f".{name}", __name__)
        if name in __all__:
            for module in _MODULES:
                found = vars(_importlib.import_module(module, __name__))
                globals().update({n: found[n] for n in __all__ if n in found})
            if name in globals():
                return globals()[name]
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        dunders = {n for n in globals() if n.startswith("__") and n.endswith("__")}
        return sorted({*dunders, *__all__, *_SUBMODULES})
