"""close-async: a fast, typed asyncio SDK for the Close CRM API.

```python
from close_async import AsyncCloseClient

async with AsyncCloseClient() as close:  # API key from $CLOSE_API_KEY
    opp = await close.opportunities.create(lead_id="lead_...", value=500000)
```
"""

from ._client import AsyncCloseClient
from ._codec import decode_opportunity
from ._constants import __version__
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
from ._limiter import Limiter, TokenBucket
from ._redis import RedisTokenBucket
from ._retry import RetryPolicy
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
    "CreateOpportunity",
    "DecodeError",
    "FollowUpCallDetails",
    "FollowUpEmailDetails",
    "FollowUpSMSDetails",
    "IntegrationLink",
    "InvalidInputError",
    "Limiter",
    "NotFoundError",
    "Opportunity",
    "PermissionDeniedError",
    "RateLimitError",
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
