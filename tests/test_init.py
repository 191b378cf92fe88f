"""The public surface: pinned so that a change to it is a deliberate one."""

from __future__ import annotations

from pathlib import Path

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


def test_version_matches_the_installed_distribution() -> None:
    from importlib.metadata import version

    assert close_async.__version__ == version("close-async")


def test_py_typed_is_shipped() -> None:
    from importlib.resources import files

    assert files("close_async").joinpath("py.typed").is_file()


def test_type_checkers_see_every_lazily_loaded_name() -> None:
    """The names load on first use (``__getattr__``); the ``if TYPE_CHECKING:`` imports are what
    mypy and editors see, so they must be exactly ``__all__``."""
    import ast
    from pathlib import Path

    tree = ast.parse(Path(close_async.__file__).read_text(encoding="utf-8"))
    [block] = [
        n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING"
    ]
    seen = {
        alias.name
        for node in ast.walk(block)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert seen | {"__version__"} == set(close_async.__all__)


def test_importing_the_package_does_not_import_aiohttp() -> None:
    import subprocess
    import sys

    check = (
        "import sys, close_async; assert 'aiohttp' not in sys.modules; "
        "close_async.AsyncCloseClient; assert 'aiohttp' in sys.modules"
    )
    assert subprocess.run([sys.executable, "-c", check], timeout=60).returncode == 0


def test_public_submodules_are_attributes_of_a_freshly_imported_package() -> None:
    import subprocess
    import sys

    check = (
        "import close_async; "
        "assert close_async.models.Opportunity is close_async.Opportunity; "
        "assert close_async.testing.FakeCloseServer"
    )
    assert subprocess.run([sys.executable, "-c", check], timeout=60).returncode == 0


def test_dir_lists_the_public_names_and_not_the_module_internals() -> None:
    listed = set(dir(close_async))
    assert set(close_async.__all__) <= listed
    assert {"models", "testing"} <= listed
    assert not {"TYPE_CHECKING", "Any", "annotations", "importlib", "_importlib"} & listed


def test_mypy_rejects_a_misspelled_public_name(tmp_path: Path) -> None:
    """The lazy ``__getattr__`` is hidden from type checkers: a typo is still an error."""
    from mypy import api as mypy_api

    snippet = tmp_path / "typo.py"
    snippet.write_text(
        "import close_async\nfrom close_async import AsyncCloseClinet\n"
        "x: int = close_async.NoSuchThing\n",
        encoding="utf-8",
    )
    out, _, status = mypy_api.run(
        ["--strict", "--no-incremental", "--cache-dir", str(tmp_path / ".mypy"), str(snippet)]
    )
    assert status == 1, out
    assert "AsyncCloseClinet" in out
    assert "NoSuchThing" in out
