"""The public surface: pinned so that a change to it is a deliberate one."""

from __future__ import annotations

import close_async

EXPECTED_ALL = [
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


def test_all_is_pinned_and_sorted() -> None:
    assert close_async.__all__ == EXPECTED_ALL
    assert close_async.__all__ == sorted(close_async.__all__)


def test_every_name_in_all_exists() -> None:
    for name in close_async.__all__:
        assert getattr(close_async, name) is not None, name


def test_models_module_is_public_and_shares_classes() -> None:
    from close_async import models

    for name in models.__all__:
        if name in close_async.__all__:
            assert getattr(models, name) is getattr(close_async, name)


def test_version_comes_from_package_metadata() -> None:
    from importlib.metadata import version

    assert close_async.__version__ == version("close-async")


def test_py_typed_is_shipped() -> None:
    from importlib.resources import files

    assert files("close_async").joinpath("py.typed").is_file()
