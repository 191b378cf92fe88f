"""The package's layers, checked over its imports (every import: top level, lazy, TYPE_CHECKING).

```
faces (__init__, models, testing)   _tools/ (+ __main__)     import anything below them
_client                              composes a transport, attaches resources
_resources/<name>/                   one folder per resource: never another folder
_resources/ (base, custom, bulk)     shared by every resource: never a resource folder
_transport/                          the wire: only the bottom
_constants, _exceptions, _version    the bottom: only each other
_fake/                               nothing of the SDK but itself; reached through testing
```
No module imports a module that imports it back (no cycles), and nothing below the faces and
``_tools`` imports them.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import pytest

import close_async

PACKAGE = Path(close_async.__file__).parent
BOTTOM = {"close_async._constants", "close_async._exceptions", "close_async._version"}
FACES = {"close_async", "close_async.models", "close_async.testing"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, modules: Iterable[str]) -> Iterator[str]:
    """The package's modules that ``path`` imports (``from .x import y``: ``x.y`` if a module)."""
    known = set(modules)
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            targets = [f"{source}.{alias.name}" for alias in node.names]
            targets = [t if t in known else source for t in targets]
        else:
            continue
        for target in targets:
            if target in known and target != me:
                yield target


def import_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = [module_name(p) for p in paths]
    return {module_name(p): set(imports(p, modules)) for p in paths}


def layer(module: str) -> tuple[str, str]:
    """``(layer, folder)``: the folder tells resources apart."""
    parts = module.split(".")
    if module in BOTTOM:
        return "bottom", ""
    if module in FACES or module == "close_async.__main__" or parts[1:2] == ["_tools"]:
        return "top", ""
    if module == "close_async._client":
        return "client", ""
    if parts[1:2] == ["_fake"]:
        return "fake", ""
    if parts[1:2] == ["_transport"]:
        return "transport", ""
    if parts[1:2] == ["_resources"]:
        # close_async._resources.<folder>.<module>, or the folder's own __init__
        if len(parts) > 3 or (len(parts) == 3 and PACKAGE.joinpath(*parts[1:3]).is_dir()):
            return "resource", parts[2]
        return "resources", ""
    raise AssertionError(f"{module} is in no layer: add it to tests/test_layers.py")


ALLOWED = {
    "bottom": {"bottom"},
    "transport": {"bottom", "transport"},
    "resources": {"bottom", "transport", "resources"},
    "resource": {"bottom", "transport", "resources", "resource"},
    "client": {"bottom", "transport", "resources", "resource"},
    "top": {"bottom", "transport", "resources", "resource", "client", "top", "fake"},
    "fake": {"fake"},
}


def violations(graph: Mapping[str, set[str]]) -> list[str]:
    found = []
    for module, targets in sorted(graph.items()):
        (kind, folder) = layer(module)
        for target in sorted(targets):
            (target_kind, target_folder) = layer(target)
            if target_kind not in ALLOWED[kind]:
                found.append(f"{module} ({kind}) imports {target} ({target_kind})")
            elif kind == target_kind == "resource" and folder != target_folder:
                found.append(f"{module} imports another resource's module {target}")
            elif target_kind == "fake" and kind != "fake" and module != "close_async.testing":
                found.append(f"{module} imports {target}: the fake is reached through testing")
    return found


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """One cycle through each module that reaches itself (depth-first, in name order)."""
    found: list[list[str]] = []
    for start in sorted(graph):
        stack = [(start, [start])]
        seen: set[str] = set()
        while stack:
            node, path = stack.pop()
            for target in sorted(graph.get(node, ())):
                if target == start:
                    found.append([*path, start])
                    stack.clear()
                    break
                if target not in seen:
                    seen.add(target)
                    stack.append((target, [*path, target]))
    return found


def test_every_module_is_in_a_layer_and_imports_only_below_it() -> None:
    graph = import_graph()
    assert "close_async._transport.http" in graph
    assert violations(graph) == []


def test_no_module_imports_one_that_imports_it_back() -> None:
    assert cycles(import_graph()) == []


@pytest.mark.parametrize(
    ("module", "bad"),
    [
        ("close_async._transport.http", "close_async._client"),
        ("close_async._transport.pacer", "close_async._resources.custom"),
        ("close_async._resources.opportunities.resource", "close_async._client"),
        ("close_async._resources.bulk", "close_async._resources.opportunities.requests"),
        ("close_async._resources.custom", "close_async.models"),
        ("close_async._fake.server", "close_async._exceptions"),
        ("close_async._client", "close_async._tools.cli"),
        ("close_async._exceptions", "close_async._transport.redact"),
        ("close_async._tools.demo", "close_async._fake.server"),
    ],
)
def test_an_upward_import_is_caught(module: str, bad: str) -> None:
    graph = import_graph()
    graph[module] = {*graph[module], bad}
    assert violations(graph), (module, bad)


def test_a_resource_importing_another_resource_is_caught() -> None:
    graph = import_graph()
    other = "close_async._resources.notes.resource"  # a folder that does not exist (yet)
    graph[other] = {"close_async._resources.opportunities.codec"}
    assert violations(graph) == [
        f"{other} imports another resource's module close_async._resources.opportunities.codec"
    ]


def test_a_cycle_is_caught() -> None:
    graph = import_graph()
    graph["close_async._resources.custom"].add("close_async._resources.opportunities.responses")
    assert ["close_async._resources.custom", "close_async._resources.opportunities.responses",
            "close_async._resources.custom"] in cycles(graph)  # fmt: skip
