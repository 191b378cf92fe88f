"""The builders written as code give what the walks they replace give, whatever the input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from close_async._tools import import_build, rows
from close_async._tools.import_build import build, walk
from close_async._tools.import_codegen import compile_line
from close_async._tools.rows import read_rows
from close_async.models import CreateOpportunity

from .test_import_build import _KEYS, _VALUE, _same, outcome

_LINE_KEYS = st.sampled_from(
    ["lead_id", "status_id", "note", "value", "confidence", "value_period", "custom.cf_tier",
     "custom.cf_products", "custom.cf_", "date_won", "vaule", "user_id"]
)  # fmt: skip
_JSON = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-5, max_value=200),
    st.integers(min_value=2**63, max_value=2**70),
    st.sampled_from(["", "x", "monthly", "weekly", "2026-12-01", "lead_a"]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.lists(st.sampled_from(["CRM", 1, None, 1.5]), max_size=3),
    st.dictionaries(st.sampled_from(["a", "url"]), st.sampled_from([1, "x"]), max_size=2),
)
_RAW = st.sampled_from(
    ['{"value": 1e999}', '{"value": 5.0}', '{"note": "a", "note": "b"}', "[1, 2]", "nope",
     '{"custom.cf_tier": ' + "[" * 2000 + "]" * 2000 + "}", '{"lead_id": "lead_a"}', "  "]
)  # fmt: skip
_LINES = st.lists(
    st.one_of(st.dictionaries(_LINE_KEYS, _JSON, max_size=6).map(json.dumps), _RAW), max_size=12
)


def _read(path: Path, *, creates: bool) -> list[tuple[int, Any]]:
    found: list[tuple[int, Any]] = []
    for row in read_rows(path, creates=creates):
        if row.error is not None:
            found.append((row.line, ("error", str(row.error))))
        elif isinstance(row.item, CreateOpportunity):
            found.append((row.line, ("built", row.item)))
        else:
            assert row.item is not None
            found.append((row.line, outcome(build, row.item)))
    return found


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_LINES)
def test_json_lines_decoded_typed_give_what_decoding_then_building_gives(
    tmp_path_factory: pytest.TempPathFactory, lines: list[str]
) -> None:
    path = tmp_path_factory.mktemp("jsonl") / "rows.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    typed, untyped = _read(path, creates=True), _read(path, creates=False)
    assert [line for line, _ in typed] == [line for line, _ in untyped]
    for (_, a), (_, b) in zip(typed, untyped, strict=True):
        assert (a[0] == "error" and a == b) or _same(a, b)


def test_rows_of_one_shape_are_decoded_typed_after_the_first(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    lines = [{"lead_id": "lead_a", "value": i, "custom.cf_t": ["x"]} for i in range(3)]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    items = [row.item for row in read_rows(path, creates=True)]
    assert isinstance(items[0], dict)  # the first shows the keys
    assert all(isinstance(item, CreateOpportunity) for item in items[1:])
    assert items[2] == build(lines[2])


def test_a_key_no_typed_field_is_for_leaves_the_file_untyped(tmp_path: Path) -> None:
    assert compile_line(["lead_id", "date_won"]) is None
    path = tmp_path / "rows.jsonl"
    path.write_text('{"date_won": "2026-12-01"}\n' * 3, encoding="utf-8")
    assert all(isinstance(row.item, dict) for row in read_rows(path, creates=True))


def test_a_file_of_too_many_shapes_reads_the_rest_untyped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rows, "_MAX_LINE_SHAPES", 2)
    path = tmp_path / "rows.jsonl"
    lines = [{f"custom.cf_{k}": k} for k in range(4)] * 2
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    items = [row.item for row in read_rows(path, creates=True)]
    # two shapes compiled (keys cf_0, then cf_0 and cf_1): only their later rows come typed
    typed = [isinstance(item, CreateOpportunity) for item in items]
    assert typed == [False] * 4 + [True] * 2 + [False] * 2
    assert [build(i) if isinstance(i, dict) else i for i in items] == [build(i) for i in lines]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_KEYS, _VALUE, max_size=6))
def test_a_dict_built_by_its_shape_s_code_is_what_the_walk_builds(item: dict[str, Any]) -> None:
    import_build._builders.clear()  # the code for this shape, not one from an earlier example
    assert _same(outcome(build, item), outcome(walk, item))
    assert tuple(item) in import_build._builders


def test_past_max_shapes_a_dict_is_walked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(import_build, "MAX_SHAPES", 0)
    monkeypatch.setattr(import_build, "_builders", {})
    assert build({"lead_id": "lead_a", "custom.cf_x": [1]}) == walk(
        {"lead_id": "lead_a", "custom.cf_x": [1]}
    )
    assert import_build._builders == {}


@pytest.mark.parametrize("key", ['custom.cf_a"b', "custom.cf_\\", "custom.cf_\n", "custom.cf_\x00"])
def test_a_custom_key_msgspec_cannot_name_a_field_is_read_untyped(tmp_path: Path, key: str) -> None:
    # msgspec renames no field to such a name (it raised ValueError mid-read): no typed shape
    assert compile_line(["note", key]) is None
    assert compile_line(["custom.cf_\ud800"]) is None  # UnicodeEncodeError (no file has it)
    path = tmp_path / "rows.jsonl"
    line = json.dumps({"note": "a", key: 1})
    path.write_text(f'{{"note": "a"}}\n{line}\n{line}\n', encoding="utf-8")
    items = [row.item for row in read_rows(path, creates=True)]
    assert items[1:] == [{"note": "a", key: 1}] * 2


def test_a_shape_of_too_many_keys_is_walked_not_written_as_code(tmp_path: Path) -> None:
    # compiling grows faster than its keys: 16 JSON Lines shapes of 5,000 new keys took 51 s
    wide = {f"custom.cf_{k}": k for k in range(300)}
    import_build._builders.clear()
    assert build(wide) == walk(wide)
    assert import_build._builders == {}
    assert compile_line(wide) is None
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps(wide) + "\n" + json.dumps(wide) + "\n", encoding="utf-8")
    assert [row.item for row in read_rows(path, creates=True)] == [wide, wide]
    csv_path = tmp_path / "rows.csv"
    csv_path.write_text(",".join(wide) + "\n" + ",".join(map(str, wide.values())) + "\n")
    (row,) = read_rows(csv_path, creates=True)
    assert row.item == {key: str(value) for key, value in wide.items()}
