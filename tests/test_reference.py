"""The API reference (docs/reference.md) documents public paths only, and every public field of
what it documents has a description: a string statement under the field (``x: int`` then a
docstring, which mkdocstrings shows), under ``self.x = ...`` in ``__init__``, or a property's
own docstring."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

import close_async
import close_async.models
import close_async.testing

REFERENCE = Path(__file__).parent.parent / "docs" / "reference.md"
IDENTIFIER = re.compile(r"^::: (\S+)", re.MULTILINE)


FACES = (close_async, close_async.models, close_async.testing)


def _public_classes() -> list[type]:
    found = [getattr(face, n) for face in FACES for n in face.__all__]
    classes = {
        base
        for obj in found
        if inspect.isclass(obj)
        for base in obj.__mro__
        if base.__module__.startswith("close_async.")
    }
    return sorted(classes, key=lambda c: c.__qualname__)


def _is_doc(node: ast.stmt | None) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
        and bool(node.value.value.strip())
    )


def _undocumented(cls: type) -> list[str]:
    return _undocumented_in(Path(inspect.getfile(cls)).read_text(encoding="utf-8"), cls.__name__)


def _undocumented_in(source: str, name: str) -> list[str]:
    """The public fields, ``__init__`` attributes and properties of the class ``name`` defined
    in ``source`` without a docstring (an attribute documented at class level counts once)."""
    tree = ast.parse(source)
    [node] = [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == name]
    missing: list[str] = [] if ast.get_docstring(node) else [name]
    documented: set[str] = set()

    def check(body: list[ast.stmt], attr: str, i: int) -> None:
        if attr.startswith("_") or attr in documented:
            return
        if _is_doc(body[i + 1] if i + 1 < len(body) else None):
            documented.add(attr)
        else:
            missing.append(f"{name}.{attr}")

    for i, stmt in enumerate(node.body):
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            check(node.body, stmt.target.id, i)
        elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if any(ast.unparse(d) == "property" for d in stmt.decorator_list):
                if not stmt.name.startswith("_") and not ast.get_docstring(stmt):
                    missing.append(f"{name}.{stmt.name}")
            elif any(ast.unparse(d).endswith((".setter", ".deleter")) for d in stmt.decorator_list):
                continue  # documented by its property
            elif not stmt.name.startswith("_") and not ast.get_docstring(stmt):
                missing.append(f"{name}.{stmt.name}()")
            elif stmt.name == "__init__":
                for j, sub in enumerate(stmt.body):
                    for target in getattr(sub, "targets", [getattr(sub, "target", None)]):
                        if (
                            isinstance(target, ast.Attribute)
                            and isinstance(target.value, ast.Name)
                            and target.value.id == "self"
                        ):
                            check(stmt.body, target.attr, j)
    return sorted(set(missing) - {f"{name}.{a}" for a in documented})


# CreateOpportunityFields' keys are CreateOpportunity's fields, documented there (test_fields.py
# keeps the two equal).
MIRRORS = {"CreateOpportunityFields"}
CLASSES = [c for c in _public_classes() if c.__name__ not in MIRRORS]


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__qualname__)
def test_every_public_field_has_a_description(cls: type) -> None:
    assert _undocumented(cls) == []


def test_the_check_sees_classes_of_every_kind() -> None:
    names = {c.__name__ for c in CLASSES}
    assert {"CreateOpportunity", "Opportunity", "CloseError", "RetryPolicy"} <= names
    assert {"AsyncCloseClient", "Opportunities", "CustomFieldsModel"} <= names
    assert {"FakeCloseServer", "Answering", "FaultPlan", "RateLimitModel", "RequestRecord"} <= names


def test_the_check_finds_a_class_field_property_method_and_attribute_without_a_docstring() -> None:
    source = '''
class Model:
    """Documented."""

    a: int = 0
    """Documented."""
    b: int = 0
    _private: int = 0

    def __init__(self) -> None:
        self.a = 1
        self.c = 2
        self.d = 3
        """Documented."""

    @property
    def e(self) -> int:
        return 0

    async def f(self) -> None: ...

class Bare:
    pass
'''
    assert _undocumented_in(source, "Model") == ["Model.b", "Model.c", "Model.e", "Model.f()"]
    assert _undocumented_in(source, "Bare") == ["Bare"]


def test_the_reference_documents_public_paths_only() -> None:
    identifiers = IDENTIFIER.findall(REFERENCE.read_text(encoding="utf-8"))
    assert len(identifiers) > 30
    private = [i for i in identifiers if any(p.startswith("_") for p in i.split("."))]
    assert private == []
